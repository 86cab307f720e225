"""mCODE as input: an mCODE-shaped patient screens exactly as the equivalent plain-FHIR patient, the
histology-morphology-behavior extension counts as a code of its Condition, and performance status coded
as a LOINC answer (LA...) reads as its score (mappings/clinical/mcode.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.screening.run import screen_files
from mappings.clinical.mcode import ANSWER_SCORES, HISTOLOGY, answer_score, with_histology
from tests.support.clinical import (
    ALL_ANY_LINEAGE,
    ALL_RELAPSE,
    ECOG,
    ICDO3,
    ICDO3_B_ALL,
    ICDO3_T_ALL,
    KARNOFSKY,
    LOINC,
    T_ALL,
    candidate_resources,
    condition,
    definition,
    evaluate,
    obs,
    screen,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcode" / "brian-l-bundle.json"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


def histology(morphology: tuple[str, str]) -> dict[str, Any]:
    return {
        "url": HISTOLOGY,
        "valueCodeableConcept": {"coding": [{"system": morphology[0], "code": morphology[1]}]},
    }


def primary_cancer(code: tuple[str, str], morphology: tuple[str, str], **kwargs: Any) -> dict[str, Any]:
    """An mCODE PrimaryCancerCondition: the disease code, the morphology in the extension."""
    resource = condition(code, **kwargs)
    resource["meta"] = {"profile": [MCODE + "mcode-primary-cancer-condition"]}
    resource["extension"] = [histology(morphology)]
    return resource


def performance(code: tuple[str, str], answer: str, ago: int, id: str) -> dict[str, Any]:
    """An mCODE (STU1) performance status: the LOINC answer in valueCodeableConcept."""
    profile = "mcode-ecog-performance-status" if code == ECOG else "mcode-karnofsky-performance-status"
    resource = obs(code, answer=(LOINC, answer), ago=ago, id=id)
    resource["meta"] = {"profile": [MCODE + profile]}
    return resource


def _pair() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The candidate as plain FHIR (SNOMED T-ALL + ICD-O-3 9837/3 in code, ECOG as a number) and the
    same facts in mCODE shape (morphology in the extension, ECOG as the LOINC answer LA9623-5 = 1)."""
    base = candidate_resources()
    base = [
        r
        for r in base
        if not (r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == T_ALL[1])
    ]
    base = [
        r
        for r in base
        if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == ECOG[1])
    ]
    plain = [
        *copy.deepcopy(base),
        condition(ALL_ANY_LINEAGE, onset="2026-09-01", extra_codes=[ICDO3_T_ALL], id="dx"),
        obs(ECOG, 1, "{score}", ago=3, id="ecog"),
    ]
    mcode = [
        *copy.deepcopy(base),
        primary_cancer(ALL_ANY_LINEAGE, ICDO3_T_ALL, onset="2026-09-01", id="dx"),
        performance(ECOG, "LA9623-5", 3, "ecog"),
    ]
    return plain, mcode


def test_mcode_patient_screens_like_the_plain_fhir_patient() -> None:
    plain, mcode = _pair()
    a, b = screen(*plain), screen(*mcode)
    assert [(c.id, c.result, c.evidence) for c in a.criteria] == [
        (c.id, c.result, c.evidence) for c in b.criteria
    ]
    assert a.status == b.status == "candidate"
    assert next(c for c in b.criteria if c.id == "inclusion-2").result == "met"


def test_histology_decides_the_lineage_and_is_not_another_malignancy() -> None:
    relapse = condition(ALL_RELAPSE)
    # ALL of any lineage alone leaves the lineage open; the T morphology in the extension settles it.
    assert evaluate("inclusion-2", condition(ALL_ANY_LINEAGE), relapse).result == "unknown"
    assert evaluate("inclusion-2", primary_cancer(ALL_ANY_LINEAGE, ICDO3_T_ALL), relapse).result == "met"
    assert evaluate("inclusion-2", primary_cancer(ALL_ANY_LINEAGE, ICDO3_B_ALL), relapse).result == "not-met"
    # The ALL's own morphology (9837/3, behaviour /3) is excluded from "other malignancy" ...
    assert evaluate("exclusion-9", primary_cancer(T_ALL, ICDO3_T_ALL)).result == "not-met"
    # ... while another malignant morphology (infiltrating duct carcinoma, 8500/3) counts.
    assert (
        evaluate("exclusion-9", primary_cancer(T_ALL, (ICDO3, "8500/3"), onset="2025-01-01")).result == "met"
    )


def test_with_histology_reads_only_the_mcode_extension() -> None:
    other = {
        "url": "http://example.org/other",
        "valueCodeableConcept": {"coding": [{"system": ICDO3, "code": "8500/3"}]},
    }
    plain = condition(T_ALL)
    plain["extension"] = [other]
    assert with_histology(plain) is plain
    mcode = primary_cancer(T_ALL, ICDO3_T_ALL)
    read = with_histology(mcode)
    assert [c["code"] for c in read["code"]["coding"]] == [T_ALL[1], ICDO3_T_ALL[1]]
    assert [c["code"] for c in mcode["code"]["coding"]] == [T_ALL[1]]  # the resource itself is untouched


@pytest.mark.parametrize(
    ("question", "answer", "score", "expected"),
    [
        (ECOG, "LA9622-7", 0, "met"),
        (ECOG, "LA9623-5", 1, "met"),
        # ECOG 2 fails the ECOG branch; with no Karnofsky/Lansky result the criterion stays open.
        (ECOG, "LA9624-3", 2, "unknown"),
        (ECOG, "LA9627-6", 5, "unknown"),  # dead
        (KARNOFSKY, "LA29178-3", 70, "met"),
        (KARNOFSKY, "LA29179-1", 60, "unknown"),  # 60 is not > 60
        (KARNOFSKY, "LA9627-6", 0, "unknown"),  # dead
    ],
)
def test_performance_status_as_loinc_answer(
    question: tuple[str, str], answer: str, score: int, expected: str
) -> None:
    result = evaluate("inclusion-7", performance(question, answer, 3, "ps"))
    assert result.result == expected, result.reason
    label = "ECOG" if question == ECOG else "Karnofsky/Lansky"
    assert f"{label} {score} on " in result.reason
    # Both branches read and failed: not met.
    if expected == "unknown":
        other = (
            performance(KARNOFSKY, "LA29179-1", 3, "k")
            if question == ECOG
            else obs(ECOG, 2, "{score}", ago=3)
        )
        assert evaluate("inclusion-7", performance(question, answer, 3, "ps"), other).result == "not-met"


def test_unknown_or_conflicting_answers_are_unknown() -> None:
    assert evaluate("inclusion-7", performance(ECOG, "LA9999-9", 3, "ps")).result == "unknown"
    # An ECOG answer under the Karnofsky question is not read as a Karnofsky score.
    assert evaluate("inclusion-7", performance(KARNOFSKY, "LA9623-5", 3, "ps")).result == "unknown"
    conflicting = performance(ECOG, "LA9622-7", 3, "ps")
    conflicting["valueCodeableConcept"]["coding"].append({"system": LOINC, "code": "LA9626-8"})
    assert answer_score(conflicting) is None
    assert evaluate("inclusion-7", conflicting).result == "unknown"


def test_answer_table_is_whole() -> None:
    assert sorted(ANSWER_SCORES[ECOG[1]].values()) == [0, 1, 2, 3, 4, 5]
    assert sorted(ANSWER_SCORES[KARNOFSKY[1]].values()) == list(range(0, 101, 10))


def test_published_pediatric_example_screens_without_errors() -> None:
    """mCODE's extended pediatric example (B-ALL, Lansky 80): screened, no error, decided as it reads."""
    report = screen_files(FIXTURE, definition(), as_of=_date("2024-01-20"))
    assert report.summary.errors in (None, 0, [])
    (patient,) = report.patients
    results = {c.id: c for c in patient.criteria}
    assert patient.status != "error"
    # SNOMED 277571004 (B-cell ALL) is in no concept set today: named in words, so review, never excluded.
    assert results["inclusion-2"].result == "unknown"
    assert "not a recognised code" in results["inclusion-2"].reason
    assert results["inclusion-7"].result == "met"  # Lansky 80 on 2024-01-12 (> 60)
    assert json.loads(FIXTURE.read_text())["entry"][0]["resource"]["id"] == "cancer-patient-brian-l"


def _date(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


class _FakeServer:
    """Answers one read: the Group (unit test of the member reading; HAPI in tests/integration)."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource

    async def get_json(self, path: str) -> dict[str, Any]:
        return self.resource


def test_group_members_unreachable_ones_are_reported() -> None:
    import asyncio

    from adapter.errors import UsageError
    from adapter.sources.group import group_population, not_returned

    group = {
        "resourceType": "Group",
        "member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "http://example.org/fhir/Patient/b/_history/2"}},
            {"entity": {"reference": "Patient/c"}, "inactive": True},
            {"entity": {"reference": "Specimen/s1"}},
            {"entity": {"display": "name only"}},
        ],
    }
    found = asyncio.run(group_population(_FakeServer(group), "Group/g"))  # type: ignore[arg-type]
    assert found.patients == ["a", "b"]
    assert found.unreachable == ["Patient/c", "Specimen/s1", "(member without a reference)"]
    not_returned(found, {"a"})
    assert found.unreachable[-1] == "Patient/b"
    assert "5 unreachable members" not in found.method() and "4 unreachable members" in found.method()
    with pytest.raises(UsageError):
        asyncio.run(group_population(_FakeServer({"resourceType": "Patient"}), "Group/g"))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        asyncio.run(group_population(_FakeServer(group), "Group/../x"))  # type: ignore[arg-type]


def test_odd_histology_extensions_leave_the_condition_as_it_is_and_are_read_once():
    from mappings.clinical.mcode import HISTOLOGY, with_histology

    odd = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91857003"}]},
        "extension": [
            {"url": HISTOLOGY, "valueCodeableConcept": "9837/3"},
            {"url": HISTOLOGY, "valueCodeableConcept": {"coding": 5}},
            {"url": HISTOLOGY, "valueCodeableConcept": {"coding": ["9837/3"]}},
        ],
    }
    assert with_histology(odd) is odd
    icdo_t = {"system": ICDO3_T_ALL[0], "code": ICDO3_T_ALL[1]}
    good = {**odd, "extension": [{"url": HISTOLOGY, "valueCodeableConcept": {"coding": [icdo_t]}}]}
    once = with_histology(good)
    assert once["code"]["coding"] == [*odd["code"]["coding"], icdo_t]
    assert with_histology(once) == once  # a record rebuilt (ConceptMaps) does not add it again
