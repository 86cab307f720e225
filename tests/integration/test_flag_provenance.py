"""Flag Provenance against HAPI: the same status change made twice keeps both records (issue 13)."""

from __future__ import annotations

import uuid
from datetime import date

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.patients import candidate_on_server, low_platelets
from tests.support.server import flags, load, on_server


def test_an_identical_repeated_status_change_keeps_the_earlier_provenance(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    pid = f"prov-{uuid.uuid4().hex[:10]}"
    low = low_platelets(pid, date.today())
    passes = iter(range(100))

    def full_pass() -> str:  # a fresh state each time: a full pass
        state = tmp_path / f"state-{next(passes)}.sqlite"
        assert main(["worker", "--fhir-url", hapi_url, "--once", "--state", str(state)]) == 0
        return flags(hapi_url, pid)[0][0]["status"]

    normal = low | {"valueQuantity": {**low["valueQuantity"], "value": 200}}

    load(hapi_url, candidate_on_server(pid, date.today()))
    assert full_pass() == "candidate"
    load(hapi_url, [low])
    assert full_pass() == "ineligible"
    load(hapi_url, [normal])  # corrected: a normal count
    assert full_pass() == "candidate"
    load(hapi_url, [low])
    assert full_pass() == "ineligible"  # the same change, with the same criteria results, again

    [subject], _ = flags(hapi_url, pid)

    async def provenance(client: FhirClient) -> list[dict]:
        return await client.search_resources("Provenance", {"target": f"ResearchSubject/{subject['id']}"})

    activities = sorted(p["activity"]["text"] for p in on_server(hapi_url, provenance))
    assert activities == ["flagged", "made-ineligible", "made-ineligible", "reopened"]
