"""Issue 12: the concept sets published as ValueSets say what screening evaluates (is-a for roots)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import unquote

from adapter.cli import main
from adapter.fhir.transaction import rewrite_references, transaction_bundle
from adapter.publish import plan, transaction_for
from mappings.criteria import load_criteria
from mappings.resources import build_study_resources, validate
from mappings.study import load_study
from mappings.valuesets import concept_valuesets
from tests.support.clinical import CRITERIA_PATH, ICD10CM, ICDO3, SCT


def _by_name() -> dict[str, dict]:
    return {
        vs["id"].removeprefix("nct06849401-"): vs for vs in concept_valuesets(load_criteria(CRITERIA_PATH))
    }


def test_every_valueset_is_valid_r4_and_roots_are_is_a_filters():
    sets = _by_name()
    for valueset in sets.values():
        validate(valueset)
    malignancy = sets["malignancy"]["compose"]
    filters = [(i["system"], f["op"], f["value"]) for i in malignancy["include"] for f in i.get("filter", ())]
    assert (SCT, "is-a", "363346000") in filters
    assert (ICDO3, "regex", "[0-9]{4}/3") in filters
    excluded = [(x["system"], x["filter"][0]["value"]) for x in malignancy["exclude"]]
    assert (ICD10CM, "C91.0") in excluded and (ICDO3, "9837/3") in excluded


def test_range_regex_matches_what_the_engine_matches():
    definition = load_criteria(CRITERIA_PATH)
    malignancy = definition.concept("malignancy")
    include = _by_name()["malignancy"]["compose"]["include"]
    [pattern] = [f["value"] for i in include if i["system"] == ICD10CM for f in i.get("filter", ())]
    for code in ("C00", "C50.911", "C96.9", "C97", "D00.0", "B99"):
        in_range = re.fullmatch(pattern, code) is not None
        assert in_range == malignancy.ranges[0].contains(code), code


def test_unverified_codes_are_not_published():
    definition = load_criteria(CRITERIA_PATH)
    unverified = {
        (code.system, code.code)
        for concept in definition.concepts.values()
        for code in concept.codes
        if not code.verified
    }
    assert unverified, "the criteria still mark some local choices unverified"
    published = {
        (include["system"], listed["code"])
        for valueset in _by_name().values()
        for include in valueset["compose"]["include"]
        for listed in include.get("concept", ())
    }
    assert not unverified & published


def test_map_writes_the_valuesets(tmp_path):
    assert main(["map", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in (tmp_path / "valuesets").iterdir())
    assert "ValueSet-nct06849401-t-all.json" in written and len(written) == len(_by_name())


# --- publishing the ValueSets with the study ----------------------------------------------------


def _bundle() -> dict[str, Any]:
    folder = CRITERIA_PATH.parent
    built = build_study_resources(load_study(folder / "study.json"), load_criteria(CRITERIA_PATH))
    return transaction_bundle(built.published())


class _Server:
    """What a FHIR server holds, answering the conditional searches ``plan`` makes (by canonical url for
    ValueSets, by identifier otherwise) and applying transactions as a server would: new resources get an
    id, ``urn:uuid`` references become ``Type/id``."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, Any]] = {}  # conditional search -> resource

    async def get_json(self, search: str) -> dict[str, Any]:
        found = self.held.get(unquote(search))
        return {
            "resourceType": "Bundle",
            "entry": [{"resource": found, "search": {"mode": "match"}}] if found else [],
        }

    def apply(self, tx: dict[str, Any], searches: dict[str, str]) -> None:
        ids = {}
        for n, entry in enumerate(tx["entry"]):
            url = entry["request"]["url"]
            ids[entry["fullUrl"]] = url if "?" not in url else f"{url.split('?')[0]}/{n + 1}"
        for entry in tx["entry"]:
            resource = rewrite_references(copy.deepcopy(entry["resource"]), ids)
            resource["id"] = ids[entry["fullUrl"]].split("/")[1]
            resource["meta"] = {**resource.get("meta", {}), "versionId": "1"}
            self.held[searches[entry["fullUrl"]]] = resource


def test_transaction_holds_every_valueset_as_a_conditional_update_on_its_url(tmp_path):
    assert main(["map", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "transaction.json").read_text(encoding="utf-8"))
    valuesets = {
        e["resource"]["url"]: e for e in written["entry"] if e["resource"]["resourceType"] == "ValueSet"
    }
    assert set(valuesets) == {vs["url"] for vs in _by_name().values()}
    t_all = valuesets["http://trial-adapter.org/fhir/ValueSet/nct06849401-t-all"]
    assert t_all["request"] == {
        "method": "PUT",
        "url": "ValueSet?url=http%3A%2F%2Ftrial-adapter.org%2Ffhir%2FValueSet%2Fnct06849401-t-all",
    }
    assert "id" not in t_all["resource"]  # the server keeps whatever id it holds for the canonical
    assert len(written["entry"]) == 4 + len(valuesets)


async def test_plan_creates_the_valuesets_then_a_second_run_changes_nothing():
    bundle, server = _bundle(), _Server()
    searches = {e["fullUrl"]: unquote(e["request"]["url"]) for e in bundle["entry"]}
    first = await plan(server, bundle)  # type: ignore[arg-type]  # only get_json is used
    assert {c.action for c in first} == {"create"}
    assert sum(c.resource_type == "ValueSet" for c in first) == len(_by_name())
    tx = transaction_for(first)
    assert tx is not None and len(tx["entry"]) == len(bundle["entry"])
    server.apply(tx, searches)

    again = await plan(server, bundle)  # type: ignore[arg-type]
    assert {c.action for c in again} == {"unchanged"}
    assert transaction_for(again) is None


async def test_plan_updates_a_changed_valueset_in_place():
    bundle, server = _bundle(), _Server()
    searches = {e["fullUrl"]: unquote(e["request"]["url"]) for e in bundle["entry"]}
    tx = transaction_for(await plan(server, bundle))  # type: ignore[arg-type]
    assert tx is not None
    server.apply(tx, searches)
    stale = next(r for r in server.held.values() if r.get("url", "").endswith("nct06849401-t-all"))
    stale["title"] = "An older title"

    changes = await plan(server, bundle)  # type: ignore[arg-type]
    [changed] = [c for c in changes if c.action != "unchanged"]
    assert (changed.resource_type, changed.changed) == ("ValueSet", ("title",))
    update = transaction_for(changes)
    assert update is not None
    assert [e["request"] for e in update["entry"]] == [{"method": "PUT", "url": f"ValueSet/{stale['id']}"}]
