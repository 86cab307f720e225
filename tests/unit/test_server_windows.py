"""Observation searches within each criterion's window (``ServerSource``), against a small fake
server (respx): which searches are sent, and that what the windows leave unsettled is asked again."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import respx

from adapter.fhir.client import FhirClient
from adapter.screening.reads import codes_by_widest_window, observation_reads
from adapter.sources.server import ServerSource, window_start
from mappings.criteria import load_criteria
from tests.support.clinical import CRITERIA_PATH

BASE = "https://fhir.example.test/fhir"
AS_OF = date(2026, 11, 23)
PLATELETS = ("http://loinc.org", "777-3")


def _obs(oid: str, pid: str, day: date | None, **extra: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": PLATELETS[0], "code": PLATELETS[1]}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 50, "system": "http://unitsofmeasure.org", "code": "10*9/L"},
    }
    if day is not None:
        obs["effectiveDateTime"] = f"{day.isoformat()}T08:00:00Z"
    return {**obs, **extra}


class FakeServer:
    """Answers batch Bundles of Patient/Observation searches over a list of resources (subject, code,
    ``date=ge``, ``date:missing``); every other search finds nothing."""

    def __init__(self, resources: list[dict[str, Any]], missing_supported: bool = True) -> None:
        self.resources = resources
        self.missing_supported = missing_supported
        self.searches: list[str] = []

    def probe(self, request: httpx.Request) -> httpx.Response:
        if "date:missing" in dict(request.url.params) and not self.missing_supported:
            return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "total": 0})

    def batch(self, request: httpx.Request) -> httpx.Response:
        entries = []
        for entry in json.loads(request.content)["entry"]:
            url = entry["request"]["url"]
            self.searches.append(url)
            found = [{"resource": r} for r in self._find(url)]
            page = {"resourceType": "Bundle", "type": "searchset", "entry": found}
            entries.append({"resource": page, "response": {"status": "200 OK"}})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    def _find(self, url: str) -> list[dict[str, Any]]:
        rtype, _, raw = url.partition("?")
        params = dict(parse_qsl(raw))
        if rtype == "Patient":
            ids = params["_id"].split(",")
            return [{"resourceType": "Patient", "id": pid} for pid in ids]
        if rtype != "Observation":
            return []
        subjects = set(params["subject"].split(","))
        codes = set(params["code"].split(","))
        out = []
        for obs in self.resources:
            coding = obs["code"]["coding"][0]
            if (
                obs["subject"]["reference"] not in subjects
                or f"{coding['system']}|{coding['code']}" not in codes
            ):
                continue
            day = obs.get("effectiveDateTime", "")[:10]
            if "date" in params and not (day and day >= params["date"].removeprefix("ge")):
                continue
            if params.get("date:missing") == "true" and day:
                continue
            out.append(obs)
        return out


def _source(client: FhirClient) -> ServerSource:
    return ServerSource(client, load_criteria(CRITERIA_PATH), as_of=AS_OF)


def test_codes_are_grouped_by_their_widest_window():
    reads = observation_reads(load_criteria(CRITERIA_PATH))
    groups = codes_by_widest_window(reads)
    assert set(groups) == {7, 30, 90}
    assert PLATELETS in groups[7]
    # a code read by a 7-day and a 90-day clause is asked over 90 days
    widest = {
        code: max(r.window_days or 0 for r in reads if code in r.codes) for r in reads for code in r.codes
    }
    for window, codes in groups.items():
        assert all(widest[code] == window for code in codes)


def test_windowed_searches_ask_from_a_day_before_each_window_and_for_undated_results():
    source = ServerSource(None, load_criteria(CRITERIA_PATH))  # type: ignore[arg-type]  # only builds strings
    plain = [q for q in source._batch_requests(["a"]) if q.startswith("Observation?")]
    assert len(plain) == 1 and "date" not in dict(parse_qsl(plain[0].split("?", 1)[1]))
    windowed = [q for q in source._batch_requests(["a"], AS_OF, undated=True) if q.startswith("Observation?")]
    params = [dict(parse_qsl(q.split("?", 1)[1])) for q in windowed]
    starts = sorted(p["date"] for p in params if "date" in p)
    assert starts == sorted(f"ge{AS_OF - timedelta(days=w + 1)}" for w in (7, 30, 90))
    assert window_start(AS_OF, 7) == date(2026, 11, 15)
    assert sum(p.get("date:missing") == "true" for p in params) == 3
    every_code = {c for p in params for c in p["code"].split(",")}
    assert every_code == set(dict(parse_qsl(plain[0].split("?", 1)[1]))["code"].split(","))


@respx.mock
async def test_what_the_window_does_not_settle_is_asked_again_over_all_history():
    edge = AS_OF - timedelta(days=7)
    resources = [
        _obs("in", "p1", edge),  # exactly the window's first day: settles p1's platelets
        _obs("old1", "p1", AS_OF - timedelta(days=40)),  # older: never needed for p1
        _obs("old2", "p2", edge - timedelta(days=1)),  # p2's newest, one day out: asked again
        _obs("future", "p3", AS_OF + timedelta(days=2)),  # p3: only a future one (ignored)
        _obs("undated", "p3", None),
    ]
    server = FakeServer(resources)
    respx.get(f"{BASE}/Observation").mock(side_effect=server.probe)
    respx.post(BASE).mock(side_effect=server.batch)
    async with FhirClient(BASE) as client:
        records = {
            r.key.removeprefix("Patient/"): r async for r in _source(client).records(["p1", "p2", "p3"])
        }
    ids = {pid: {o["id"] for o in rec.of_type("Observation")} for pid, rec in records.items()}
    assert ids["p1"] == {"in"}
    assert ids["p2"] == {"old2"}
    assert ids["p3"] == {"future", "undated"}
    again = [dict(parse_qsl(s.split("?", 1)[1])) for s in server.searches if s.startswith("Observation?")]
    again = [p for p in again if "date" not in p and "date:missing" not in p]
    platelets = "|".join(PLATELETS)
    # p1's platelets are settled by the window: never asked again; p2's and p3's are
    assert not any("Patient/p1" in p["subject"] and platelets in p["code"] for p in again)
    assert any("Patient/p2" in p["subject"] and platelets in p["code"] for p in again)
    assert any("Patient/p3" in p["subject"] and platelets in p["code"] for p in again)


@respx.mock
async def test_a_server_without_missing_date_search_gets_no_windows():
    server = FakeServer([_obs("old", "p1", AS_OF - timedelta(days=400))], missing_supported=False)
    respx.get(f"{BASE}/Observation").mock(side_effect=server.probe)
    respx.post(BASE).mock(side_effect=server.batch)
    async with FhirClient(BASE) as client:
        records = [r async for r in _source(client).records(["p1"])]
    assert [o["id"] for o in records[0].of_type("Observation")] == ["old"]
    observation_searches = [s for s in server.searches if s.startswith("Observation?")]
    assert len(observation_searches) == 1 and "date" not in observation_searches[0]


def test_odd_observation_shapes_settle_nothing_and_never_abort_the_batch():
    """A malformed Observation from a lax server leaves its patient to be asked over all history (the
    pipeline then judges the record), and an absolute subject reference still settles its patient."""
    source = ServerSource.__new__(ServerSource)
    source._reads = observation_reads(load_criteria(CRITERIA_PATH))
    day = AS_OF - timedelta(days=1)
    odd = [
        _obs("s1", "p1", day, subject="Patient/p1"),
        _obs("s2", "p1", day, code="777-3"),
        _obs("s3", "p1", day, code={"coding": ["777-3", 5]}),
        _obs("s4", "p1", day, subject={"reference": 7}),
        _obs("abs", "p2", day, subject={"reference": "https://fhir.example.test/fhir/Patient/p2"}),
    ]
    again = source._unsettled(["p1", "p2"], odd, AS_OF)
    assert PLATELETS[:2] in again["p1"]  # nothing odd settled p1's platelets
    assert PLATELETS[:2] not in again.get("p2", set())  # the absolute reference counted for p2
