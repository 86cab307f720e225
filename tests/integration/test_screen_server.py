"""Screening from HAPI gives the same answers as screening the same data from files."""

from __future__ import annotations

import asyncio
import json

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.fhir_data import SAMPLE_BUNDLE, as_transaction, sample_bundle

AS_OF = "2026-11-23"


def test_server_and_file_sources_agree_on_the_sample_population(hapi_url, tmp_path):
    bundle = sample_bundle()

    async def load() -> None:
        async with FhirClient(hapi_url) as client:
            await client.transaction(as_transaction(bundle), idempotent=True)

    asyncio.run(load())

    from_server = tmp_path / "server.json"
    from_files = tmp_path / "files.json"
    assert (
        main(["screen", "--fhir-url", hapi_url, "--as-of", AS_OF, "--output", str(from_server), "--quiet"])
        == 0
    )
    assert (
        main(
            [
                "screen",
                "--source",
                str(SAMPLE_BUNDLE),
                "--as-of",
                AS_OF,
                "--output",
                str(from_files),
                "--quiet",
            ]
        )
        == 0
    )
    server = {p["patient"]: p for p in json.loads(from_server.read_text())["patients"]}
    files = {p["patient"]: p for p in json.loads(from_files.read_text())["patients"]}

    sample_ids = {
        f"Patient/{e['resource']['id']}"
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Patient"
    }
    screened_from_server = set(server) & sample_ids
    # The server screens its ALL population; file screening covers everyone, so a no-ALL patient is
    # only in the file report (and not eligible there).
    missing = sample_ids - screened_from_server
    assert all(files[p]["status"] == "not-eligible" for p in missing)
    assert all(
        next(c for c in files[p]["criteria"] if c["id"] == "inclusion-2")["reason"].startswith("no record")
        for p in missing
    )
    assert len(screened_from_server) >= 20
    for patient in sorted(screened_from_server):
        assert server[patient] == files[patient], patient
