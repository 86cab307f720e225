"""A dense population (months of daily labs) screened from HAPI, where Observations are asked within
each criterion's window, gives the same patient results as the same data screened from NDJSON files.

Edges on purpose: results exactly at a window's first day (written in a +05:00 offset, so the day in
UTC is the one before), one day outside, none in the window, only a future-dated one, an undated one
and one dated only by ``issued`` (which ``date=ge`` cannot find on a server)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.samples.vocabulary import PLATELETS
from bench.dense import leukaemia_patient
from bench.synth import AS_OF, Options, transaction_bundles
from mappings.criteria import load_criteria

CRITERIA_PATH = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
INDEXES = [0, 1, 2, 3, 4, 5, 40]


def _code(obs: dict[str, Any]) -> str:
    return str(obs["code"]["coding"][0]["code"])


def _day(obs: dict[str, Any]) -> str:
    return str(obs.get("effectiveDateTime", ""))[:10]


def _extra(pid: str, name: str, code: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-{name}",
        "status": "final",
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {"reference": f"Patient/{pid}"},
        **fields,
    }


def population() -> list[dict[str, Any]]:
    opts = Options()
    as_of = AS_OF
    edge = as_of - timedelta(days=7)
    hiv = next(iter(load_criteria(CRITERIA_PATH).concepts["hiv_test"].codes))
    hiv_code = (hiv.system, hiv.code)
    platelets = (PLATELETS[0], PLATELETS[1])
    positive = {"valueCodeableConcept": {"text": "positive"}}
    low = {
        "valueQuantity": {
            "value": 5,
            "unit": "10*9/L",
            "system": "http://unitsofmeasure.org",
            "code": "10*9/L",
        }
    }
    out: list[dict[str, Any]] = []
    for n, index in enumerate(INDEXES):
        resources = json.loads(
            json.dumps(leukaemia_patient(index, opts)).replace('"p00', '"swp00').replace("/p00", "/swp00")
        )
        pid = resources[0]["id"]
        # every third result of the months of daily labs: still a long history, loaded in seconds
        history = [r for r in resources if "-h" in r["id"]]
        resources = [r for r in resources if "-h" not in r["id"]] + history[::3]
        recent = str(edge - timedelta(days=1))
        if n in (3, 4, 5):  # no platelets inside the 7-day window (n=5: none at all)
            resources = [
                r
                for r in resources
                if not (
                    r["resourceType"] == "Observation"
                    and _code(r) == PLATELETS[1]
                    and (n == 5 or _day(r) > recent)
                )
            ]
        if n == 0:  # undated positive HIV test: the engine says "only undated results"
            resources.append(_extra(pid, "hiv-undated", hiv_code, **positive))
        if n == 1:  # dated only by issued, yesterday: the engine reads it as yesterday's
            resources.append(
                _extra(
                    pid, "hiv-issued", hiv_code, issued=f"{as_of - timedelta(days=1)}T09:00:00Z", **positive
                )
            )
        if n in (2, 5):  # future-dated: ignored by the engine, still fetched
            resources.append(
                _extra(
                    pid,
                    "plt-future",
                    platelets,
                    effectiveDateTime=f"{as_of + timedelta(days=3)}T08:00:00Z",
                    **low,
                )
            )
        if n == 3:  # exactly the window's first day, in an offset whose UTC day is the one before
            resources.append(
                _extra(pid, "plt-edge", platelets, effectiveDateTime=f"{edge}T01:30:00+05:00", **low)
            )
        if n == 4:  # one day outside the window: "most recent platelets is 8 days old"
            resources.append(
                _extra(
                    pid,
                    "plt-out",
                    platelets,
                    effectiveDateTime=f"{edge - timedelta(days=1)}T23:30:00Z",
                    **low,
                )
            )
        out.extend(resources)
    return out


def test_windowed_server_searches_give_the_file_answers_on_dense_data(hapi_url: str, tmp_path: Path) -> None:
    resources = population()

    async def load() -> None:
        async with FhirClient(hapi_url) as client:
            for bundle in transaction_bundles(iter(resources), 500):
                await client.transaction(bundle, idempotent=True)

    asyncio.run(load())
    export = tmp_path / "export"
    export.mkdir()
    by_type: dict[str, list[str]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for rtype, lines in by_type.items():
        (export / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")

    from_server, from_files = tmp_path / "server.json", tmp_path / "files.json"
    common = ["--as-of", AS_OF.isoformat(), "--quiet"]
    assert main(["screen", "--fhir-url", hapi_url, *common, "--output", str(from_server)]) == 0
    assert main(["screen", "--source", str(export), *common, "--output", str(from_files)]) == 0
    ours = {f"Patient/{r['id']}" for r in resources if r["resourceType"] == "Patient"}
    server = {
        p["patient"]: p for p in json.loads(from_server.read_text())["patients"] if p["patient"] in ours
    }
    files = {p["patient"]: p for p in json.loads(from_files.read_text())["patients"] if p["patient"] in ours}
    assert set(server) == set(files) == ours
    for patient in sorted(ours):
        assert server[patient] == files[patient], patient
