"""Issue 12: no silent exclusion by terminology; concept sets by meaning (ICD hierarchy, ICD-O-3
behaviour, SNOMED/NCIt descendant tables, RxNorm ingredients), suspected diagnoses."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.screening.engine import Screener
from adapter.screening.reads import ScreeningReads
from mappings import terminology
from mappings.criteria import load_criteria
from mappings.terminology import Terminology, load_terminology, names_ingredient
from tests.support.clinical import (
    ALL_RELAPSE,
    AS_OF,
    CRITERIA_PATH,
    ICD10CM,
    ICDO3,
    PLATELETS,
    RXNORM,
    SCT,
    T_ALL,
    condition,
    days_ago,
    evaluate,
    medication,
    obs,
    patient,
    record_of,
    result_of,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOCAL_DX = "http://hospital.example/dx"


def text_condition(text: str, coding: list[dict[str, str]] | None = None, **kw: str) -> dict:
    resource = condition((LOCAL_DX, "placeholder"), **kw)
    resource["code"] = {"text": text, **({"coding": coding} if coding else {})}
    return resource


# --- inclusion-2: never not-met while the record shows a sign of ALL ----------------------------


@pytest.mark.parametrize(
    ("code", "expected", "fragment"),
    [
        ((ICD10CM, "C91.0"), "unknown", "without lineage"),  # the header, no 5th character
        ((ICD10CM, "C9100"), "unknown", "without lineage"),  # written without the dot
        ((ICD10CM, "C91.00"), "unknown", "without lineage"),  # listed descendant
        ((ICD10, "C91.0"), "unknown", "without lineage"),
        ((ICD10CM, "C91"), "unknown", "broader code (ICD-10-CM C91)"),  # ancestor of the listed codes
        ((ICD10CM, "C91.1"), "not-met", "no record"),  # a sibling (CLL): not ALL
        ((ICD10CM, "C92.00"), "not-met", "no record"),  # AML
    ],
)
def test_icd_header_ancestor_and_sibling_codes(code, expected, fragment):
    result = evaluate("inclusion-2", condition(code))
    assert result.result == expected, result.reason
    assert fragment in result.reason


@pytest.mark.parametrize(
    "text",
    [
        "Relapsed T-cell acute lymphoblastic leukaemia",
        "T-ALL, second relapse",
        "Acute lymphocytic leukemia",
        "leucemia linfoblástica aguda",
        "ALL relapse",
    ],
)
def test_text_only_all_is_unknown_never_not_met(text):
    result = evaluate("inclusion-2", text_condition(text))
    assert result.result == "unknown", result.reason
    assert "text only" in result.reason and text[:20] in result.reason
    assert result.evidence


def test_text_naming_t_lineage_is_still_only_unknown_but_a_display_counts_as_a_sign():
    local = text_condition("", coding=[{"system": LOCAL_DX, "code": "TALL", "display": "T-ALL relapse"}])
    del local["code"]["text"]
    assert evaluate("inclusion-2", local).result == "unknown"


@pytest.mark.parametrize("text", ["Asthma", "Fall from bicycle", "all good", "Allergic rhinitis"])
def test_no_sign_of_all_is_not_met(text):
    result = evaluate("inclusion-2", text_condition(text))
    assert result.result == "not-met"
    assert result.reason == "no record of acute lymphoblastic leukaemia"


def test_a_text_only_all_patient_is_not_screened_as_bare():
    """The shortcut for records nothing reads must see the text-only Condition."""
    reads = ScreeningReads(load_criteria(CRITERIA_PATH))
    assert reads.reads(text_condition("Relapsed T-cell acute lymphoblastic leukaemia"))
    assert reads.reads(condition((ICD10CM, "C91")))
    assert not reads.reads(text_condition("Asthma"))
    result = result_of(
        Screener(load_criteria(CRITERIA_PATH), AS_OF).screen(
            record_of(patient(), text_condition("T-cell ALL"))
        ),
        "inclusion-2",
    )
    assert result.result == "unknown"


def test_b_lineage_coded_with_t_all_in_words_elsewhere_goes_to_review():
    b_all = condition((ICDO3, "9811/3"))
    assert evaluate("inclusion-2", b_all).result == "not-met"
    both = evaluate("inclusion-2", b_all, text_condition("Relapsed T-ALL"))
    assert both.result == "unknown" and "B lineage" in both.reason and len(both.evidence) == 2


def test_coded_t_all_still_met_and_text_does_not_weaken_it():
    result = evaluate(
        "inclusion-2", condition(T_ALL), condition(ALL_RELAPSE), text_condition("acute lymphoblastic")
    )
    assert result.result == "met"


# --- suspected diagnoses ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["provisional", "differential", "unconfirmed"])
def test_a_suspected_exclusion_is_unknown_not_met(status):
    dic = (SCT, "67406007")
    suspected = evaluate("exclusion-4", condition(dic, verification=status))
    assert suspected.result == "unknown"
    assert status in suspected.reason and "review" in suspected.reason
    assert evaluate("exclusion-4", condition(dic, verification="confirmed")).result == "met"
    assert evaluate("exclusion-4", condition(dic, verification="refuted")).result == "not-met"


def test_a_suspected_all_in_words_only_is_unknown():
    result = evaluate("inclusion-2", text_condition("T-ALL relapse?", verification="differential"))
    assert result.result == "unknown" and "suspected" in result.reason


def test_a_suspected_t_all_is_unknown():
    result = evaluate(
        "inclusion-2",
        condition(T_ALL, verification="provisional"),
        condition(ALL_RELAPSE, verification="provisional"),
    )
    assert result.result == "unknown"
    assert "suspected" in result.reason


# --- exclusions by meaning ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ((ICD10CM, "C50.911"), "met"),  # breast cancer: other malignancy
        ((ICD10CM, "C71.9"), "met"),
        ((ICD10, "C71.9"), "met"),
        ((ICD10CM, "C91.00"), "not-met"),  # the ALL under study
        ((ICD10CM, "C83.50"), "not-met"),  # T-lymphoblastic lymphoma, the same disease
        ((ICDO3, "8500/3"), "met"),  # infiltrating duct carcinoma: behaviour 3
        ((ICDO3, "9500/3"), "met"),  # neuroblastoma
        ((ICDO3, "8500/2"), "not-met"),  # in situ: behaviour 2
        ((ICDO3, "9837/3"), "not-met"),  # T-ALL morphology
        ((ICDO3, "9811/3"), "not-met"),  # B-ALL morphology
        ((ICD10CM, "D48.1"), "not-met"),  # uncertain behaviour
    ],
)
def test_other_malignancy_by_icd_and_icdo3_behaviour(code, expected):
    assert evaluate("exclusion-9", condition(code)).result == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ((ICD10CM, "M32.14"), "unknown"),  # lupus glomerular disease: a descendant of M32
        ((ICD10CM, "M32"), "unknown"),
        ((ICD10CM, "D83.9"), "unknown"),  # CVID
        ((ICD10CM, "M31.0"), "not-met"),  # a sibling category (vasculopathy) not listed
        ((ICD10CM, "D89.810"), "not-met"),  # GVHD is not "immunodeficiency" here
    ],
)
def test_autoimmune_and_immunodeficiency_by_icd10cm_hierarchy(code, expected):
    assert evaluate("exclusion-5", condition(code)).result == expected


def test_stroke_descendants_and_brain_injury():
    assert evaluate("exclusion-2", condition((ICD10CM, "I63.50"))).result == "met"
    assert evaluate("exclusion-2", condition((ICD10, "I63.5"))).result == "met"
    injury = evaluate("exclusion-2", condition((ICD10CM, "S06.0X0A")))
    assert injury.result == "unknown" and "brain injury" in injury.reason
    assert evaluate("exclusion-2", condition((ICD10CM, "S02.0XXA"))).result == "not-met"  # skull fracture


def test_pregnancy_as_synthea_records_it_and_urine_hcg():
    assert evaluate("exclusion-19", condition((SCT, "72892002"))).result == "met"
    assert evaluate("exclusion-19", condition((ICD10CM, "Z33.1"))).result == "met"
    positive = (SCT, "10828004")
    negative = (SCT, "260385009")
    urine = ("http://loinc.org", "2106-3")
    assert evaluate("exclusion-19", obs(urine, answer=positive, ago=2)).result == "met"
    assert evaluate("exclusion-19", obs(urine, answer=negative, ago=2)).result == "not-met"
    # the most recent of serum or urine decides
    serum = ("http://loinc.org", "2118-8")
    both = [obs(serum, answer=negative, ago=5), obs(urine, answer=positive, ago=1)]
    assert evaluate("exclusion-19", *both).result == "met"


# --- SNOMED CT / NCIt descendant tables, RxNorm ingredients --------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """Small descendant and ingredient tables in the agreed format, used as the shipped ones."""
    _write(
        tmp_path / "snomed-descendants.tsv",
        "# test fixture: codes under 9000000 are made up for the test\n"
        "ancestor\tcode\tdisplay\tsource\n"
        "387713003\t9000001\tTest surgery\tfixture\n"
        "230690007\t9000002\tTest ischaemic stroke\tfixture\n"
        "363346000\t9000003\tTest malignant neoplasm\tfixture\n"
        "363346000\t9000004\tTest ALL subtype\tfixture\n"
        "91857003\t9000004\tTest ALL subtype\tfixture\n",
    )
    _write(
        tmp_path / "ncit-descendants.tsv", "ancestor\tcode\tdisplay\tsource\nC126102\tC9999\tTest\tfixture\n"
    )
    _write(
        tmp_path / "rxnorm-ingredients.tsv",
        "drug\tingredient\tdrug_name\tsource\n9100001\t32968\tclopidogrel 75 MG Oral Tablet\tfixture\n",
    )
    loaded = load_terminology(tmp_path)
    monkeypatch.setattr(terminology, "default_terminology", lambda: loaded)
    return loaded


def test_tables_load_and_answer_is_a(tables: Terminology):
    assert tables.is_a(SCT, "9000001", "387713003")
    assert not tables.is_a(SCT, "387713003", "9000001")  # an ancestor is not a descendant
    assert not tables.is_a(SCT, "9000002", "387713003")  # a sibling subtree
    assert tables.is_a(terminology.NCIT, "C9999", "C126102")
    assert tables.expand(SCT, "387713003") == ["387713003", "9000001"]
    assert tables.ingredients_of("9100001") == {"32968"}


def test_descendants_count_for_conditions_and_procedures(tables):
    definition = load_criteria(CRITERIA_PATH)  # fresh concept-set memos
    screener = Screener(definition, AS_OF)

    def run(criterion: str, *resources: dict) -> str:
        return result_of(screener.screen(record_of(*resources)), criterion).result

    assert run("exclusion-2", condition((SCT, "9000002"))) == "met"
    assert run("exclusion-9", condition((SCT, "9000003"))) == "met"
    assert run("exclusion-9", condition((SCT, "9000004"))) == "not-met"  # ALL is excluded with descendants
    surgery = {
        "resourceType": "Procedure",
        "id": "surg1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": SCT, "code": "9000001"}]},
        "performedDateTime": days_ago(10),
    }
    assert run("exclusion-17", surgery) == "met"  # no category: the code is a surgical procedure
    assert run("exclusion-17", {**surgery, "performedDateTime": days_ago(40)}) == "not-met"


def test_rxnorm_drug_counts_for_its_ingredient(tables):
    definition = load_criteria(CRITERIA_PATH)
    screener = Screener(definition, AS_OF)
    by_table = medication((RXNORM, "9100001"))
    assert result_of(screener.screen(record_of(by_table)), "exclusion-7").result == "met"


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("clopidogrel 75 MG Oral Tablet", "met"),
        ("clopidogrel 75 MG Oral Tablet [Plavix]", "met"),
        ("warfarin sodium 5 MG Oral Tablet", "met"),
        ("24 HR tacrolimus 1 MG Extended Release Oral Tablet", "unknown"),  # exclusion-8: needs review
        # exclusion-7 also has a manual part: without the drug it is unknown, never met
        ("acetaminophen 325 MG Oral Tablet", "unknown"),
    ],
)
def test_rxnorm_drug_name_names_the_ingredient(display, expected):
    drug = medication((RXNORM, "0"))
    drug["medicationCodeableConcept"]["coding"][0]["display"] = display
    criterion = "exclusion-8" if "tacrolimus" in display else "exclusion-7"
    result = evaluate(criterion, drug)
    assert result.result == expected, display
    assert bool(result.evidence) == (expected != "unknown" or criterion == "exclusion-8"), display


def test_ingredient_names_parse_rxnorm_names():
    assert names_ingredient("aspirin 81 MG / dipyridamole 200 MG Extended Release Oral Capsule", "aspirin")
    assert names_ingredient("Heparin sodium, porcine 1000 UNT/ML Injectable Solution", "heparin")
    assert not names_ingredient("prednisolone 5 MG Oral Tablet", "prednisone")
    assert not names_ingredient("clopidogrel", "aspirin")


def test_a_malformed_table_is_a_clear_error(tmp_path):
    _write(tmp_path / "snomed-descendants.tsv", "ancestor\tcode\n1\t2\n")
    with pytest.raises(terminology.TerminologyError, match="header lacks display, source"):
        load_terminology(tmp_path)


def test_icd10cm_expansion_comes_from_the_cms_tabular_list():
    assert terminology.icd10cm_descendants("C91.0") == ["C91.00", "C91.01", "C91.02"]
    assert terminology.icd10cm_descendants("X99.99") == []


def test_platelets_just_below_and_at_the_threshold_in_everyday_units():
    assert evaluate("exclusion-13", obs(PLATELETS, 5, "K/uL")).result == "met"
    assert evaluate("exclusion-13", obs(PLATELETS, 9.99, "x10E9/L")).result == "met"
    assert evaluate("exclusion-13", obs(PLATELETS, 10, "10^9/L")).result == "not-met"
    assert evaluate("exclusion-13", obs(PLATELETS, 9999, "/uL")).result == "met"
    assert evaluate("exclusion-13", obs(PLATELETS, 10000, "cells/µL")).result == "not-met"


def test_the_shipped_tables_load_and_every_row_names_its_source():
    """Whatever mappings/terminology/data holds (curated separately) must load and say where each row
    was verified: a broken table would otherwise fail in the middle of a screening."""
    loaded = load_terminology()
    for name in loaded.sources:
        columns = ("drug", "ingredient", "drug_name", "source") if "rxnorm" in name else (
            "ancestor", "code", "display", "source")  # fmt: skip
        for row in terminology.read_tsv(terminology.DATA_DIR / name, columns):
            assert row["source"], f"{name}: {row}"


def test_a_broader_code_than_a_listed_one_is_unknown_not_a_match_nor_absent():
    assert evaluate("exclusion-19", condition((ICD10CM, "Z39.1"))).result == "met"
    header = evaluate("exclusion-19", condition((ICD10CM, "Z39")))
    assert header.result == "unknown" and "broader code (Z39)" in header.reason
    assert evaluate("exclusion-19", condition((ICD10CM, "Z39.2"))).result == "not-met"  # a sibling
    reads = ScreeningReads(load_criteria(CRITERIA_PATH))
    assert reads.reads(condition((ICD10CM, "Z39")))
    assert not reads.reads(condition((ICD10CM, "Z39.2")))


def test_gvhd_header_counts_as_gvhd():
    prednisone = medication((RXNORM, "8640"))
    assert evaluate("exclusion-6", condition((ICD10CM, "D89.81")), prednisone).result == "met"


# --- everyday units at the inclusion-10 boundaries -------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # ULN 1.2 mg/dL = 20.5246 umol/L (584.66 g/mol), so 3 x ULN = 61.57 umol/L
        ({"bilirubin": ("14631-6", 61.57, "µmol/L", 1.2, "mg/dl")}, "met"),
        ({"bilirubin": ("14631-6", 61.60, "umol/L", 1.2, "mg/dl")}, "not-met"),
        # 1.6 mg/dL creatinine = 141.44 umol/L (113.12 g/mol)
        ({"creatinine": ("14682-9", 141.4, "µmol/L", None, None)}, "met"),
        ({"creatinine": ("14682-9", 141.5, "umol/l", None, None)}, "not-met"),
        ({"creatinine": ("2160-0", 1.6, "MG/DL", None, None)}, "met"),
        # AST in IU/L against a ULN in U/L: the same enzyme unit
        ({"ast": ("1920-8", 200, "IU/L", 40, "U/L")}, "met"),
        ({"ast": ("1920-8", 201, "IU/L", 40, "U/L")}, "not-met"),
    ],
)
def test_lab_units_from_feeds_convert_at_the_thresholds(override, expected):
    labs = {
        "bilirubin": obs(("http://loinc.org", "1975-2"), 0.5, "mg/dL", uln=1.2),
        "ast": obs(("http://loinc.org", "1920-8"), 30, "U/L", uln=40),
        "alt": obs(("http://loinc.org", "1742-6"), 30, "U/L", uln=40),
        "creatinine": obs(("http://loinc.org", "2160-0"), 0.5, "mg/dL"),
    }
    for name, (code, value, unit, uln, uln_unit) in override.items():
        labs[name] = obs(("http://loinc.org", code), value, unit, uln=uln, uln_unit=uln_unit)
    result = evaluate("inclusion-10", *labs.values())
    assert result.result == expected, result.reason


def test_unit_alias_table_reads_feed_units_and_nothing_else():
    from mappings.clinical.units import convert, normalise_unit, ucum_code

    assert normalise_unit("K/uL") == normalise_unit("x10E3/uL") == "10*3/uL"
    assert normalise_unit("x10E9/L") == normalise_unit("10^9/L") == normalise_unit("10*9/L") == "10*9/L"
    assert normalise_unit("µmol/L") == normalise_unit("μmol/L") == normalise_unit("umol/L") == "umol/L"
    assert normalise_unit("mg/dl") == "mg/dL" and normalise_unit("cells/µL") == "/uL"
    assert normalise_unit("bricks/uL") is None and normalise_unit("G/L") is None
    assert convert(5, ucum_code({"value": 5, "unit": "K/uL"}), "10*9/L") == 5
    # a code from another unit system is not trusted, whatever its display says
    assert (
        ucum_code({"value": 5, "unit": "K/uL", "system": "http://example.org/units", "code": "KUL"}) is None
    )
