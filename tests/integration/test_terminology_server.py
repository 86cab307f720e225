"""Issue 12 against HAPI: a T-ALL patient recorded in words only, and one coded with the site's local
codes (translated by its ConceptMap), are found by the population search, screened and flagged."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.flagging import SUBJECT_SYSTEM
from tests.support.patients import LOCAL_DX, put_transaction, recoded

NCT = "NCT06849401"
SCT = "http://snomed.info/sct"


def on_server(hapi_url: str, work: Any) -> Any:
    async def go() -> Any:
        async with FhirClient(hapi_url) as client:
            return await work(client)

    return asyncio.run(go())


def concept_map(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "resourceType": "ConceptMap",
                "id": "site-dx",
                "status": "active",
                "group": [
                    {
                        "source": LOCAL_DX,
                        "target": SCT,
                        "element": [
                            {"code": "TALL", "target": [{"code": "277575008", "equivalence": "equivalent"}]},
                            {"code": "REL", "target": [{"code": "12301000132103", "equivalence": "wider"}]},
                        ],
                    }
                ],
            }
        )
    )
    return path


def test_text_only_and_local_coded_t_all_are_screened_and_flagged(hapi_url, tmp_path):
    run = uuid.uuid4().hex[:8]
    words, local = f"term-words-{run}", f"term-local-{run}"
    resources = recoded(
        words,
        [{"text": "Relapsed T-cell acute lymphoblastic leukaemia"}, {"text": "ALL, second relapse"}],
    ) + recoded(
        local,
        [
            {"coding": [{"system": LOCAL_DX, "code": "TALL", "display": "T-ALL"}]},
            {"coding": [{"system": LOCAL_DX, "code": "REL", "display": "ALL relapse"}]},
        ],
    )
    on_server(hapi_url, lambda c: c.transaction(put_transaction(resources), idempotent=True))
    cm = concept_map(tmp_path / "cm.json")

    out = tmp_path / "screening.json"
    args = ["screen", "--fhir-url", hapi_url, "--concept-map", str(cm), "--output", str(out), "--quiet"]
    assert main(args) == 0
    report = json.loads(out.read_text())
    by_patient = {p["patient"]: p for p in report["patients"]}
    assert f"Patient/{words}" in by_patient and f"Patient/{local}" in by_patient
    diagnosis = {
        key: next(c for c in by_patient[f"Patient/{key}"]["criteria"] if c["id"] == "inclusion-2")
        for key in (words, local)
    }
    assert diagnosis[words]["result"] == "unknown" and "text only" in diagnosis[words]["reason"]
    assert diagnosis[local]["result"] == "met" and "ConceptMap/site-dx" in diagnosis[local]["reason"]
    assert by_patient[f"Patient/{words}"]["status"] == by_patient[f"Patient/{local}"]["status"] == "candidate"
    assert "ALL codes" in report["summary"]["population"]

    assert main(["publish", "--fhir-url", hapi_url]) == 0
    state = tmp_path / "state.sqlite"
    assert (
        main(["worker", "--fhir-url", hapi_url, "--concept-map", str(cm), "--once", "--state", str(state)])
        == 0
    )
    for patient_id in (words, local):
        subjects = on_server(
            hapi_url,
            lambda c, pid=patient_id: c.search_resources(
                "ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{NCT}/{pid}"}
            ),
        )
        assert [s["status"] for s in subjects] == ["candidate"], patient_id
