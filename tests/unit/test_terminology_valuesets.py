"""Issue 12: the concept sets published as ValueSets say what screening evaluates (is-a for roots)."""

from __future__ import annotations

import re

from adapter.cli import main
from mappings.criteria import load_criteria
from mappings.resources import validate
from mappings.valuesets import concept_valuesets

from .conftest import CRITERIA_PATH, ICD10CM, ICDO3, SCT


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
