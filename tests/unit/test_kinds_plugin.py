"""A kind defined outside mappings/kinds (here, in this test) is one module and one ``register`` call:
criteria files can use it, the engine screens with it, the Group publishes it. Nothing else changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from adapter.screening.engine import Screener
from mappings.clinical.record import PatientRecord, RecordBuilder
from mappings.clinical.tri import MET, NOT_MET, UNKNOWN
from mappings.criteria import CriteriaDefinitionError, parse_criteria
from mappings.kinds import registry
from mappings.kinds.base import Characteristic, Clause, Context, Definitions, Kind, Outcome, Reads
from mappings.resources import build_study_resources
from mappings.study import load_study

STUDY = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401"
AS_OF = date(2026, 11, 23)


# --- the new kind: one module's worth -----------------------------------------------------------


class SexClause(Clause):
    kind: Literal["recorded_sex"]
    sex: Literal["female", "male"]


def evaluate(clause: SexClause, ctx: Context, record: PatientRecord) -> Outcome:
    gender = record.patient.get("gender")
    if gender not in ("female", "male"):
        return Outcome(UNKNOWN, "no sex recorded", (record.key,))
    return Outcome(MET if gender == clause.sex else NOT_MET, f"recorded sex {gender}", (record.key,))


def reads(clause: SexClause) -> Reads:
    return Reads(resource_types=("Patient",), patient=True)


def characteristic(clause: SexClause, criteria: Definitions) -> Characteristic:
    # Text only: a test fixture publishes no code it has not verified.
    return {"text": "Recorded sex"}, {"valueCodeableConcept": {"text": clause.sex}}


KIND = Kind("recorded_sex", SexClause, evaluate, reads, characteristic)


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[None]:
    registry.register(KIND)
    try:
        yield
    finally:
        registry.unregister(KIND.name)


def _criteria(rule: dict[str, Any]) -> Any:
    data = yaml.safe_load((STUDY / "criteria.yaml").read_text(encoding="utf-8"))
    data["criteria"][0]["rule"] = rule  # inclusion-1, its registry text unchanged
    return parse_criteria(data, "test")


def _record(gender: str | None) -> PatientRecord:
    builder = RecordBuilder()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "2014-06-15"}
    if gender:
        patient["gender"] = gender
    builder.add(patient)
    return next(builder.records())


def test_a_registered_kind_is_read_screened_and_published(registered: None) -> None:
    rule = {
        "all_of": [
            {"kind": "age", "min_years": 2, "max_years": 18},
            {"kind": "recorded_sex", "sex": "female"},
        ]
    }
    definition = _criteria(rule)
    screener = Screener(definition, AS_OF)

    def inclusion_1(gender: str | None) -> Any:
        return next(c for c in screener.screen(_record(gender)).criteria if c.id == "inclusion-1")

    assert inclusion_1("female").result == MET
    assert inclusion_1("male").result == NOT_MET
    assert inclusion_1(None).result == UNKNOWN
    assert "recorded_sex: no sex recorded" in inclusion_1(None).reason

    group = build_study_resources(load_study(STUDY / "study.json"), definition).group
    published = [
        ch
        for ch in group["characteristic"]
        if any(p.get("valueString") == "inclusion-1" for e in ch["extension"] for p in e["extension"])
    ]
    assert [ch["code"].get("text") for ch in published] == ["Age", "Recorded sex"]
    assert published[1]["valueCodeableConcept"] == {"text": "female"}


def test_an_unregistered_kind_is_a_clear_error() -> None:
    with pytest.raises(CriteriaDefinitionError, match="recorded_sex"):
        _criteria({"kind": "recorded_sex", "sex": "female"})
    assert "recorded_sex" not in {k.name for k in registry.kinds()}


def test_shipped_kinds_cannot_be_replaced_or_removed() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.kind_of("age"))
    with pytest.raises(ValueError, match="shipped"):
        registry.unregister("age")
