"""What changed between two results of a patient (worker state), and who reviewed a patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import respx

from adapter.fhir.client import FhirClient
from adapter.screening.resolve import with_resolve
from adapter.worker.changes import FULL_PASS_STARTED, render, what_changed
from adapter.worker.reviewed import NOT_RECORDED, reviewed_by
from adapter.worker.state import WorkerState, result_digest
from tests.support.clinical import PLATELETS, candidate_resources, obs, record_of, screener

BASE = "http://fhir.test/r4"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
STUDY = "NCT06849401"


def result(*resources):
    record = record_of(*resources)
    return with_resolve(screener(), record, screener().screen(record))


def without_platelets():
    return [r for r in candidate_resources() if "777-3" not in str(r.get("code"))]


def test_new_candidate_unknown_resolved_newly_ineligible_and_reviewed(tmp_path):
    state = WorkerState(tmp_path / "s.sqlite")
    stale = result(*without_platelets(), obs(PLATELETS, 85, "10*9/L", ago=10))
    fresh = result(*without_platelets(), obs(PLATELETS, 85, "10*9/L", ago=1))
    low = result(*without_platelets(), obs(PLATELETS, 5, "10*9/L", ago=0))
    assert stale.status == fresh.status == "candidate" and low.status == "not-eligible"
    state.put(FULL_PASS_STARTED, T0.isoformat())
    state.record(STUDY, stale, result_digest(stale, "d"), "flagged", T0 + timedelta(minutes=1))
    first = what_changed(state)
    assert [i["firstScreened"] for i in first["newCandidates"]] == [True]
    assert any(i.startswith("platelets dated 2026-11-16") for i in first["newCandidates"][0]["collectNext"])

    state.record(STUDY, fresh, result_digest(fresh, "d"), "task-updated", T0 + timedelta(minutes=10))
    second = what_changed(state, T0 + timedelta(minutes=5), {STUDY: {"exclusion-13": "Platelets too low"}})
    assert second["newCandidates"] == []
    [item] = second["unknownsResolved"]
    assert item["criteria"] == [
        {
            "id": "exclusion-13",
            "title": "Platelets too low",
            "result": "not-met",
            "reason": "platelets 85 x10^9/L on 2026-11-22 (< 10 x10^9/L)",
        }
    ]
    reviewed = {"status": "on-study", "by": "Dr Li", "at": "2026-11-23T09:00:00Z"}
    state.record(STUDY, low, result_digest(low, "d"), "left-alone", T0 + timedelta(minutes=20), reviewed)
    third = what_changed(state, T0 + timedelta(minutes=15))
    assert [c["id"] for c in third["newlyIneligible"][0]["ruledOutBy"]] == ["exclusion-13"]
    assert third["reviewed"][0]["by"] == "Dr Li" and third["reviewed"][0]["status"] == "on-study"
    text = render(third, "text")
    assert "Newly ineligible (1)" in text and "reviewed, status on-study set by Dr Li" in text
    page = render({**third, "reviewed": [{**reviewed, "patient": "<b>x</b>"}]}, "html")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<caption>" in page
    state.close()


def test_the_digest_changes_when_what_to_collect_changes():
    stale = result(*without_platelets(), obs(PLATELETS, 85, "10*9/L", ago=10))
    older = result(*without_platelets(), obs(PLATELETS, 85, "10*9/L", ago=12))
    assert [c.result for c in stale.criteria] == [c.result for c in older.criteria]
    assert result_digest(stale, "d") != result_digest(older, "d")  # "latest 2026-11-13" vs "-11"


def bundle(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


@respx.mock
async def test_reviewer_from_the_latest_provenance_not_by_the_adapter():
    respx.get(f"{BASE}/ResearchSubject/7").mock(
        return_value=httpx.Response(
            200, json={"resourceType": "ResearchSubject", "id": "7", "status": "on-study"}
        )
    )
    ours = {
        "resourceType": "Provenance",
        "recorded": "2026-11-23T10:00:00Z",
        "agent": [{"who": {"reference": "Device/ta"}}],
    }
    human = {
        "resourceType": "Provenance",
        "recorded": "2026-11-23T09:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/p1", "display": "Dr Li"}}],
    }
    respx.get(f"{BASE}/Provenance").mock(return_value=httpx.Response(200, json=bundle(ours, human)))
    async with FhirClient(BASE) as client:
        found = await reviewed_by(client, "ResearchSubject/7", "Device/ta")
    assert found == {"status": "on-study", "by": "Dr Li", "at": "2026-11-23T09:00:00Z"}


@respx.mock
async def test_reviewer_falls_back_to_meta_source_then_says_not_recorded():
    subject = {
        "resourceType": "ResearchSubject",
        "id": "7",
        "status": "screening",
        "meta": {"source": "ehr#42"},
    }
    respx.get(f"{BASE}/ResearchSubject/7").mock(return_value=httpx.Response(200, json=subject))
    respx.get(f"{BASE}/Provenance").mock(return_value=httpx.Response(200, json=bundle()))
    async with FhirClient(BASE) as client:
        assert (await reviewed_by(client, "ResearchSubject/7", "Device/ta"))["by"] == "ehr#42"
    respx.get(f"{BASE}/ResearchSubject/8").mock(
        return_value=httpx.Response(404, json={"resourceType": "OperationOutcome"})
    )
    async with FhirClient(BASE) as client:
        assert (await reviewed_by(client, "ResearchSubject/8", "Device/ta"))["by"] == NOT_RECORDED
