"""The B-ALL fixture study finds its own population on HAPI: by its codes, and by its own wording
(the "B-ALL" prefix of its population.text_search), with no code written for it."""

from __future__ import annotations

import asyncio
import json
import uuid

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.ball import FIXTURE, ball_bundle
from tests.support.fhir_data import as_transaction

AS_OF = "2026-11-23"


def test_the_b_all_fixture_screens_its_population_on_a_server(hapi_url, tmp_path):
    prefix = f"ball{uuid.uuid4().hex[:8]}-"

    async def load() -> None:
        async with FhirClient(hapi_url) as client:
            await client.transaction(as_transaction(ball_bundle(prefix)), idempotent=True)

    asyncio.run(load())
    out = tmp_path / "ball.json"
    argv = ["screen", "--study", str(FIXTURE), "--fhir-url", hapi_url, "--as-of", AS_OF, "--output", str(out)]
    assert main([*argv, "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["study"] == "NCT00000000"
    mine = {
        p["patient"].removeprefix(f"Patient/{prefix}"): p
        for p in report["patients"]
        if p["patient"].startswith(f"Patient/{prefix}")
    }
    # b-lbl has no coding and no diagnosis wording; asthma is nobody's population.
    assert set(mine) == {"b-coded", "b-words", "t-coded"}
    assert "text search for ALL wording" in report["summary"]["population"]

    def reason(pid: str) -> str:
        return next(c for c in mine[pid]["criteria"] if c["id"] == "inclusion-2")["reason"]

    assert reason("b-coded").startswith("B-lineage ALL recorded")
    assert 'ALL named in text only ("B-ALL, second relapse")' in reason("b-words")
    assert reason("t-coded").startswith("ALL recorded with T lineage, no B-lineage record")
