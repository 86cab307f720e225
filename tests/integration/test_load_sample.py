"""`trial-adapter load-sample` against HAPI: the sample population lands once, however often it runs."""

from __future__ import annotations

import asyncio

from adapter.cli import SAMPLE_MRN_SYSTEM, main
from adapter.fhir.client import FhirClient
from adapter.service.sources import SOURCE_URI


def test_load_sample_twice_gives_each_sample_patient_once(hapi_url):
    assert main(["load-sample", "--fhir-url", hapi_url]) == 0
    assert main(["load-sample", "--fhir-url", hapi_url]) == 0

    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources(
                "Patient", {"identifier": f"{SAMPLE_MRN_SYSTEM}|", "_count": "100"}
            )

    patients = asyncio.run(go())
    assert len(patients) == 26
    assert len({p["identifier"][0]["value"] for p in patients}) == 26
    assert all(p["meta"]["source"].startswith(f"{SOURCE_URI}/sample") for p in patients)
