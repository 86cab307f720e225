"""What changed, on HAPI across two worker passes with new labs in between: the report (CLI and
GET /report), the Task's "collect next" updated in place, and a person's review shown, never overwritten."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.worker.http import build_app
from adapter.worker.loop import Worker
from adapter.worker.state import WorkerState
from mappings.criteria import load_criteria
from tests.support.clinical import CRITERIA_PATH, PLATELETS, candidate_resources, obs
from tests.support.patients import candidate_on_server, localise, low_platelets
from tests.support.server import flags, load, new_id, on_server, worker_once


def stale_platelets_candidate(pid: str, today: date) -> list[dict]:
    """A candidate whose only platelet count is 10 days old: exclusion-13 unknown."""
    resources = [r for r in candidate_resources() if "777-3" not in json.dumps(r.get("code"))]
    return localise([*resources, obs(PLATELETS, 85, "10*9/L", ago=10)], pid, today)


def fresh_platelets(pid: str, today: date) -> dict:
    return localise([obs(PLATELETS, 120, "10*9/L", ago=0)], pid, today)[0] | {"id": f"{pid}-plt-new"}


def report(state: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["report", "--state", str(state), "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_two_passes_with_new_labs_between(hapi_url, tmp_path, capsys):
    today = date.today()
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    waiting, falling, reviewed = new_id("rp-wait"), new_id("rp-fall"), new_id("rp-human")
    load(hapi_url, stale_platelets_candidate(waiting, today))
    load(hapi_url, candidate_on_server(falling, today))
    load(hapi_url, candidate_on_server(reviewed, today))
    state = tmp_path / "state.sqlite"

    worker_once(hapi_url, state)  # pass 1 (full)
    first = report(state, capsys)
    new = {i["patient"]: i for i in first["newCandidates"]}
    assert {f"Patient/{p}" for p in (waiting, falling, reviewed)} <= set(new)
    since = new[f"Patient/{waiting}"]
    assert since["firstScreened"] is True
    cutoff = date.fromordinal(today.toordinal() - 7).isoformat()
    assert any(item.startswith(f"platelets dated {cutoff} or later") for item in since["collectNext"])
    [_], [task] = flags(hapi_url, waiting)
    assert f"Collect next: platelets dated {cutoff} or later" in task["description"]
    assert "Criteria still unknown:" in task["description"] and "exclusion-13" in task["description"]

    # A person takes one patient on, recorded with a Provenance naming them.
    [subject], _ = flags(hapi_url, reviewed)
    moved = on_server(
        hapi_url,
        lambda c: c.request(
            "PUT", f"ResearchSubject/{subject['id']}", json_body={**subject, "status": "on-study"}
        ),
    ).json()
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": f"ResearchSubject/{moved['id']}"}],
        "recorded": f"{today.isoformat()}T09:00:00Z",
        "agent": [{"who": {"display": "Dr Li (study coordinator)"}}],
    }
    on_server(hapi_url, lambda c: c.request("POST", "Provenance", json_body=provenance))

    # New labs: a fresh platelet count settles exclusion-13; a low one rules a patient out; and the
    # reviewed patient's new lab would rule them out too, but a person's status is never overwritten.
    load(
        hapi_url,
        [fresh_platelets(waiting, today), low_platelets(falling, today), low_platelets(reviewed, today)],
    )
    between = datetime.now(UTC).isoformat()
    worker_once(hapi_url, state)  # pass 2 (incremental)

    second = report(state, capsys)
    resolved = {i["patient"]: i["criteria"] for i in second["unknownsResolved"]}
    [settled] = [c for c in resolved[f"Patient/{waiting}"] if c["id"] == "exclusion-13"]
    assert settled["result"] == "not-met" and settled["title"].startswith("Platelets")
    assert "120" in settled["reason"]
    [gone] = [i for i in second["newlyIneligible"] if i["patient"] == f"Patient/{falling}"]
    assert [c["id"] for c in gone["ruledOutBy"]] == ["exclusion-13"]
    [human] = [i for i in second["reviewed"] if i["patient"] == f"Patient/{reviewed}"]
    assert human["status"] == "on-study" and human["by"] == "Dr Li (study coordinator)"
    assert flags(hapi_url, reviewed)[0][0]["status"] == "on-study"

    # The Task was updated in place: one Task, no platelet request any more.
    [_], [task2] = flags(hapi_url, waiting)
    assert task2["id"] == task["id"] and task2["meta"]["versionId"] != task["meta"]["versionId"]
    assert "platelets" not in task2["description"] and "exclusion-13" not in task2["description"]

    # Only what changed after a point: the first pass's news are gone, the second's remain.
    later = report(state, capsys, "--since", between)
    assert later["newCandidates"] == [] and later["unknownsResolved"] == second["unknownsResolved"]

    capsys.readouterr()
    assert main(["report", "--state", str(state)]) == 0
    text = capsys.readouterr().out
    assert "Unknowns resolved" in text and f"Patient/{waiting}: exclusion-13 Platelets" in text
    assert f"Patient/{reviewed}: reviewed, status on-study set by Dr Li (study coordinator)" in text

    # GET /report on the worker's listener serves the same report.
    worker_state = WorkerState(state)

    async def served() -> tuple[dict, httpx.Response, int]:
        worker = Worker(FhirClient(hapi_url), load_criteria(CRITERIA_PATH), worker_state)
        transport = httpx.ASGITransport(app=build_app(worker, "secret"))
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as http:
            body = (await http.get("/report")).json()
            page = await http.get("/report", params={"format": "html"})
            bad = (await http.get("/report", params={"since": "yesterday"})).status_code
        return body, page, bad

    try:
        body, page, bad = asyncio.run(served())
    finally:
        worker_state.close()
    assert body["unknownsResolved"] == second["unknownsResolved"]
    assert page.headers["content-type"].startswith("text/html") and "Unknowns resolved" in page.text
    assert bad == 400


def test_report_command_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    try:
        main(["report", "--state", str(missing)])
    except SystemExit as exc:
        assert exc.code == 1
    assert "no worker state at" in capsys.readouterr().err
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    try:
        main(["report", "--state", str(junk)])
    except SystemExit as exc:
        assert exc.code == 1
    assert "is not a worker state file" in capsys.readouterr().err
