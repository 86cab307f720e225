"""The study mapping: every registry fact of NCT06849401 carried into FHIR, and nothing invented.

Registry facts are checked against the registry record itself (shared/seed) when it is available, else
against study.json's v2 eligibility text, never against the mapping's own output.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir.transaction import conditional_url, transaction_bundle
from mappings.criteria import load_criteria
from mappings.group import EXT_ELIGIBILITY_CRITERION
from mappings.resources import (
    EXT_ACTION_DOSE,
    EXT_TARGET_ENROLLMENT,
    StudyResources,
    build_study_resources,
)
from mappings.study import (
    DEFAULT_STUDY,
    StudyDefinitionError,
    load_study,
    parse_eligibility_text,
    parse_study,
    study_dir,
)

REPO = Path(__file__).resolve().parents[2]
STUDY_DIR = REPO / "mappings" / "studies" / "NCT06849401"
REGISTRY_RECORD = Path("/work/shared/seed/NCT06849401-registry-record.txt")
PROFILES = REPO / "fhir_profiles" / "fsh-generated" / "resources"

BASE = "http://trial-adapter.org/fhir"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL = f"{BASE}/CodeSystem/trial-adapter-local"
STUDY_RESOURCE_SID = f"{BASE}/sid/study-resource"


# --- fixtures -----------------------------------------------------------------------------------


def _build() -> StudyResources:
    return build_study_resources(
        load_study(STUDY_DIR / "study.json"), load_criteria(STUDY_DIR / "criteria.yaml")
    )


@pytest.fixture(scope="module")
def built() -> StudyResources:
    return _build()


@pytest.fixture(scope="module")
def study_resource(built: StudyResources) -> dict[str, Any]:
    return built.research_study


@pytest.fixture(scope="module")
def plan(built: StudyResources) -> dict[str, Any]:
    return built.plan_definition


@pytest.fixture(scope="module")
def group(built: StudyResources) -> dict[str, Any]:
    return built.group


@pytest.fixture(scope="module")
def bundle(built: StudyResources) -> dict[str, Any]:
    return transaction_bundle(built.published())


def _registry_section(text: str, start: str, end: str) -> dict[int, str]:
    body = text.split(f"\n{start}\n", 1)[1].split(f"\n{end}\n", 1)[0]
    items = {}
    for line in body.splitlines():
        match = re.match(r"^\s*(\d+)\.\s(.*)$", line)
        if match:
            items[int(match.group(1))] = match.group(2).strip()
    return items


def _registry_criteria() -> dict[str, str]:
    """criterion id -> verbatim text, from the registry record (else from study.json's v2 text)."""
    if REGISTRY_RECORD.exists():
        text = REGISTRY_RECORD.read_text(encoding="utf-8")
        inclusion = _registry_section(text, "Inclusion criteria", "Exclusion criteria")
        exclusion = _registry_section(text, "Exclusion criteria", "Trial design")
        return {
            **{f"inclusion-{n}": t for n, t in inclusion.items()},
            **{f"exclusion-{n}": t for n, t in exclusion.items()},
        }
    raw = json.loads((STUDY_DIR / "study.json").read_text(encoding="utf-8"))
    return parse_eligibility_text(raw["protocolSection"]["eligibilityModule"]["eligibilityCriteria"])


REGISTRY_CRITERIA = _registry_criteria()
CRITERION_IDS = [f"inclusion-{n}" for n in range(1, 14)] + [f"exclusion-{n}" for n in range(1, 21)]


def _registry_line(label: str) -> str | None:
    """The line after a heading of the registry record ('Enrollment' -> '9 estimated patients'), or None
    when the record is not available (the mapping assertions still run)."""
    if not REGISTRY_RECORD.exists():
        return None
    lines = [ln.strip() for ln in REGISTRY_RECORD.read_text(encoding="utf-8").splitlines()]
    following = lines[lines.index(label) + 1 :]
    return next(ln for ln in following if ln)


def _criterion_ext(characteristic: dict[str, Any]) -> dict[str, Any]:
    (ext,) = [e for e in characteristic["extension"] if e["url"] == EXT_ELIGIBILITY_CRITERION]
    out = {}
    for part in ext["extension"]:
        value_key = next(k for k in part if k.startswith("value"))
        out[part["url"]] = part[value_key]
    return out


def _by_criterion(group: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for characteristic in group["characteristic"]:
        out.setdefault(_criterion_ext(characteristic)["id"], []).append(characteristic)
    return out


def _codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", ())}


def _walk(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    yield path, value


# --- registry facts: ResearchStudy --------------------------------------------------------------


def test_registry_record_parsed_into_33_criteria():
    assert sorted(REGISTRY_CRITERIA) == sorted(CRITERION_IDS)


def test_identifiers_nct_and_sponsor_protocol_id(study_resource):
    assert study_resource["identifier"][0] == {"system": "https://clinicaltrials.gov", "value": "NCT06849401"}
    org_id = study_resource["identifier"][1]
    assert org_id["system"] == f"{BASE}/sid/org-study-id"
    assert org_id["value"] == "VGO-Cs01p-001"
    assert org_id["type"]["text"] == "Sponsor protocol id"
    if REGISTRY_RECORD.exists():
        text = REGISTRY_RECORD.read_text(encoding="utf-8")
        assert "\nNCT06849401\nVGO-Cs01p-001\n" in text


def test_resource_identifiers(built):
    assert built.group["identifier"] == [{"system": STUDY_RESOURCE_SID, "value": "NCT06849401/eligibility"}]
    assert built.plan_definition["identifier"] == [
        {"system": STUDY_RESOURCE_SID, "value": "NCT06849401/protocol"}
    ]
    assert built.organization["identifier"] == [
        {"system": STUDY_RESOURCE_SID, "value": "NCT06849401/sponsor"}
    ]


def test_title(study_resource):
    expected = (
        "The Safety and Efficacy of VGO-Cs01p in Patients With CD7-positive Relapsed/Refractory "
        "Acute T-lymphoblastic Leukemia"
    )
    assert study_resource["title"] == expected
    if REGISTRY_RECORD.exists():
        assert expected in REGISTRY_RECORD.read_text(encoding="utf-8")


def test_status_not_yet_recruiting_is_approved(study_resource, plan):
    assert _registry_line("Status and phase") in (None, "Not yet enrolling")
    assert study_resource["status"] == "approved"
    assert plan["status"] == "active"  # the registered protocol is fixed once the study is approved


def test_phase_early_phase_1(study_resource):
    assert _registry_line("Not yet enrolling") in (None, "Early Phase 1")
    assert study_resource["phase"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/research-study-phase",
            "code": "early-phase-1",
            "display": "Early Phase 1",
        },
        # NCIt beside the R4 code (NCIt C54721 "Early Phase 1 Trial", ICH M11 phase value set C217045).
        {
            "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
            "code": "C54721",
            "display": "Early Phase 1 Trial",
        },
    ]


def test_category_interventional(study_resource):
    assert _registry_line("Study type") in (None, "Interventional")
    assert study_resource["category"] == [{"text": "Interventional"}]


def test_primary_purpose_treatment(study_resource):
    assert _registry_line("Primary purpose") in (None, "Treatment")
    assert _codes(study_resource["primaryPurposeType"]) == {
        ("http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type", "treatment")
    }


def test_condition_t_all(study_resource):
    assert _registry_line("Conditions") in (None, "T-ALL")
    (condition,) = study_resource["condition"]
    assert condition["text"] == "T-ALL"
    assert _codes(condition) == {(SCT, "277575008")}


def test_focus_is_the_intervention(study_resource):
    assert _registry_line("Treatments") in (None, "Biological: VGO-Cs01p")
    assert study_resource["focus"] == [{"text": "VGO-Cs01p"}]


def test_target_enrollment_9(study_resource):
    assert _registry_line("Enrollment") in (None, "9 estimated patients")
    ext = [e for e in study_resource["extension"] if e["url"] == EXT_TARGET_ENROLLMENT]
    assert ext == [{"url": EXT_TARGET_ENROLLMENT, "valueUnsignedInt": 9}]


def test_sponsor(built, study_resource):
    sponsor = "Shanghai Jiao Tong University School of Medicine"
    if REGISTRY_RECORD.exists():
        assert sponsor in REGISTRY_RECORD.read_text(encoding="utf-8")
    assert built.organization["name"] == sponsor
    assert study_resource["sponsor"] == {"reference": "Organization/NCT06849401-sponsor", "display": sponsor}


def test_central_contact_without_telecom(study_resource):
    assert _registry_line("Central trial contact") in (None, "Hui Zhang")
    assert study_resource["contact"] == [{"name": "Hui Zhang"}]


def test_arm_verbatim(study_resource):
    (arm,) = study_resource["arm"]
    assert arm["name"] == "VGO-Cs01p"
    assert arm["type"]["coding"][0]["code"] == "experimental"
    description = (
        "Up to three sequential VGO-Cs01p dose levels (4e7、1.2e8、3.6e8 CAR-NK cells/kg)are planned. "
        "Each subject will accept six doses of VGO-Cs01p"
    )
    assert arm["description"] == description
    if REGISTRY_RECORD.exists():
        assert description in REGISTRY_RECORD.read_text(encoding="utf-8")


def test_description_holds_summary_details_and_criteria(study_resource):
    description = study_resource["description"]
    assert "To learn if the VGO-Cs01p can help to control" in description
    assert "All subjects will be followed up to 12 months after infusion." in description
    for text in REGISTRY_CRITERIA.values():
        assert text in description


def test_registry_url_and_no_invented_facts(study_resource, plan):
    url = "https://clinicaltrials.gov/study/NCT06849401"
    assert study_resource["relatedArtifact"][0]["url"] == url
    assert plan["relatedArtifact"] == [
        {
            "type": "documentation",
            "label": "ClinicalTrials.gov",
            "display": "NCT06849401 on ClinicalTrials.gov",
            "url": url,
        }
    ]
    for absent in ("period", "site", "location", "principalInvestigator", "keyword"):
        assert absent not in study_resource
    assert "date" not in plan


def test_references_between_resources(built, study_resource):
    assert study_resource["enrollment"] == [{"reference": "Group/NCT06849401-eligibility"}]
    assert study_resource["protocol"] == [{"reference": "PlanDefinition/NCT06849401-protocol"}]
    assert built.group["id"] == "NCT06849401-eligibility"
    assert built.plan_definition["id"] == "NCT06849401-protocol"


# --- registry facts: PlanDefinition -------------------------------------------------------------


def test_plan_definition_header(plan):
    assert plan["url"] == f"{BASE}/PlanDefinition/NCT06849401-protocol"
    assert plan["version"] == "1"
    assert _codes(plan["type"]) == {
        ("http://terminology.hl7.org/CodeSystem/plan-definition-type", "clinical-protocol")
    }
    assert plan["title"]


def test_three_sequential_dose_levels(plan):
    dosing = plan["action"][0]
    assert dosing["title"] == "Sequential dose escalation"
    assert dosing["groupingBehavior"] == "logical-group"
    assert dosing["selectionBehavior"] == "exactly-one"
    levels = dosing["action"]
    assert [a["title"] for a in levels] == ["Dose level 1", "Dose level 2", "Dose level 3"]
    doses = []
    for action in levels:
        (ext,) = action["extension"]
        assert ext["url"] == EXT_ACTION_DOSE
        quantity = ext["valueQuantity"]
        assert (quantity["unit"], quantity["system"], quantity["code"]) == (
            "CAR-NK cells/kg",
            UCUM,
            "{cells}/kg",
        )
        doses.append(quantity["value"])
    assert doses == [4e7, 1.2e8, 3.6e8]


def test_six_doses_per_subject_without_interval(plan):
    for action in plan["action"][0]["action"]:
        assert action["timingTiming"] == {"repeat": {"count": 6}}


def test_follow_up_12_months_after_dosing(plan):
    follow_up = plan["action"][1]
    assert follow_up["title"] == "Follow-up"
    assert follow_up["timingDuration"] == {"value": 12, "unit": "months", "system": UCUM, "code": "mo"}
    assert follow_up["relatedAction"] == [{"actionId": plan["action"][0]["id"], "relationship": "after-end"}]
    assert "after infusion" in follow_up["description"]


# --- registry facts: Group ----------------------------------------------------------------------


def test_group_header(group):
    assert group["type"] == "person"
    assert group["actual"] is False
    assert group["name"] == "Eligibility criteria of NCT06849401"


def test_age_range_2_to_18_years(group):
    assert _registry_line("Ages") in (None, "2 to 18 years old")
    (age,) = _by_criterion(group)["inclusion-1"]
    assert _codes(age["code"]) == {(LOINC, "30525-0")}
    low, high = age["valueRange"]["low"], age["valueRange"]["high"]
    assert (low["value"], low["system"], low["code"]) == (2, UCUM, "a")
    assert (high["value"], high["system"], high["code"]) == (18, UCUM, "a")


def test_every_criterion_appears(group):
    assert list(_by_criterion(group)) == CRITERION_IDS


@pytest.mark.parametrize("criterion_id", CRITERION_IDS)
def test_criterion_text_is_verbatim_registry_text(group, criterion_id):
    for characteristic in _by_criterion(group)[criterion_id]:
        assert _criterion_ext(characteristic)["text"] == REGISTRY_CRITERIA[criterion_id]


@pytest.mark.parametrize("criterion_id", CRITERION_IDS)
def test_exclude_flag(group, criterion_id):
    expected = criterion_id.startswith("exclusion-")
    for characteristic in _by_criterion(group)[criterion_id]:
        assert characteristic["exclude"] is expected


def test_characteristics_follow_the_criteria_definition(group):
    criteria = load_criteria(STUDY_DIR / "criteria.yaml")
    by_id = _by_criterion(group)
    for criterion in criteria.criteria:
        leaves = criterion.leaves()
        characteristics = by_id[criterion.id]
        assert len(characteristics) == len(leaves)
        for leaf, characteristic in zip(leaves, characteristics, strict=True):
            ext = _criterion_ext(characteristic)
            assert ext["computable"] is (criterion.computable == "full")
            if len(leaves) > 1:
                assert ext["clause"] == leaf.label
            else:
                assert "clause" not in ext
            if leaf.kind == "manual":
                assert _codes(characteristic["code"]) == {(LOCAL, "manual-review")}
                assert characteristic["valueBoolean"] is True


def test_non_computable_criteria_are_manual_review(group):
    by_id = _by_criterion(group)
    for criterion_id in ("inclusion-12", "inclusion-13", "exclusion-11", "exclusion-12", "exclusion-16"):
        (characteristic,) = by_id[criterion_id]
        assert _codes(characteristic["code"]) == {(LOCAL, "manual-review")}
        assert characteristic["valueBoolean"] is True
        assert _criterion_ext(characteristic)["computable"] is False


def test_diagnosis_uses_the_lineage_codes(group):
    characteristic = _by_criterion(group)["inclusion-2"][0]
    assert _codes(characteristic["code"]) == {(SCT, "439401001")}
    codes = _codes(characteristic["valueCodeableConcept"])
    assert (SCT, "277575008") in codes
    assert (SCT, "91857003") not in codes  # lineage not stated is not T-ALL


def test_cd7_threshold(group):
    (characteristic,) = _by_criterion(group)["inclusion-5"]
    assert (LOCAL, "cd7-positive-blasts") in _codes(characteristic["code"])
    quantity = characteristic["valueQuantity"]
    assert (quantity["comparator"], quantity["value"], quantity["code"]) == (">", 80, "%")


def test_lab_thresholds_relative_to_uln(group):
    quantities = {
        _criterion_ext(c)["clause"]: c["valueQuantity"] for c in _by_criterion(group)["inclusion-10"]
    }
    assert quantities["total bilirubin"] == {
        "value": 3,
        "comparator": "<=",
        "unit": "x ULN",
        "system": UCUM,
        "code": "{ULN}",
    }
    assert quantities["AST"]["value"] == quantities["ALT"]["value"] == 5
    assert quantities["creatinine"] == {
        "value": 1.6,
        "comparator": "<=",
        "unit": "mg/dL",
        "system": UCUM,
        "code": "mg/dL",
    }


def test_alive_keeps_exclude_false(group):
    alive = _by_criterion(group)["inclusion-6"][0]
    assert _codes(alive["code"]) == {(SCT, "419099009")}
    assert alive["valueBoolean"] is False
    assert alive["exclude"] is False


def test_unverified_codes_are_not_published(group):
    criteria = load_criteria(STUDY_DIR / "criteria.yaml")
    unverified = {(c.system, c.code) for s in criteria.concepts.values() for c in s.codes if not c.verified}
    published = {
        (v["system"], v["code"])
        for _, v in _walk(group)
        if isinstance(v, dict) and "system" in v and "code" in v and v["system"] != UCUM
    }
    assert not published & unverified


def test_narrative_lists_all_33_criteria_escaped(group):
    assert group["text"]["status"] == "generated"
    div = group["text"]["div"]
    root = ET.fromstring(div)  # well-formed XHTML
    assert root.tag == "{http://www.w3.org/1999/xhtml}div"
    cells = [td.text for td in root.iter("{http://www.w3.org/1999/xhtml}td")]
    for criterion_id, text in REGISTRY_CRITERIA.items():
        assert criterion_id in cells
        assert text in cells
    assert "subject's risk" in div and "&gt;80%" in div  # &, <, > escaped; quotes kept as HAPI stores them


# --- conformance --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["organization", "research_study", "plan_definition", "group"])
def test_resource_validates_with_r4b(built, name):
    resource = getattr(built, name)
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert json.loads(model.model_dump_json(exclude_none=True)) == resource


def test_bundle_validates_with_r4b(bundle):
    get_fhir_model_class("Bundle").model_validate(bundle)


def test_profiles_and_extensions_exist(built):
    definitions = {json.loads(p.read_text())["url"] for p in PROFILES.glob("StructureDefinition-*.json")}
    assert built.research_study["meta"]["profile"] == [f"{BASE}/StructureDefinition/trial-research-study"]
    assert built.plan_definition["meta"]["profile"] == [f"{BASE}/StructureDefinition/trial-protocol"]
    assert built.group["meta"]["profile"] == [f"{BASE}/StructureDefinition/eligibility-group"]
    used = {v for r in built.all() for path, v in _walk(r) if path.endswith((".url", ".profile[0]"))}
    ours = {u for u in used if u.startswith(f"{BASE}/StructureDefinition/")}
    assert ours and ours <= definitions


def test_local_codes_exist_in_our_code_system(built):
    code_system = json.loads((PROFILES / "CodeSystem-trial-adapter-local.json").read_text())
    defined = {c["code"] for c in code_system["concept"]}
    used = {
        v["code"]
        for r in built.all()
        for _, v in _walk(r)
        if isinstance(v, dict) and v.get("system") == LOCAL
    }
    assert used and used <= defined


def test_profile_required_elements(built):
    study = built.research_study
    for element in [
        "identifier",
        "title",
        "status",
        "phase",
        "category",
        "primaryPurposeType",
        "condition",
        "focus",
        "description",
        "sponsor",
        "arm",
        "enrollment",
        "protocol",
    ]:
        assert study.get(element), element
    plan = built.plan_definition
    for element in ("url", "title", "type", "action"):
        assert plan.get(element), element
    for characteristic in built.group["characteristic"]:
        ext = _criterion_ext(characteristic)
        assert {"id", "text", "computable"} <= set(ext)
        assert "code" in characteristic and "exclude" in characteristic
        assert sum(k.startswith("value") for k in characteristic) == 1


def test_no_empty_or_null_values(built, bundle):
    for resource in [*built.all(), bundle]:
        for path, value in _walk(resource):
            assert value is not None and value != "" and value != [] and value != {}, path


# --- transaction bundle -------------------------------------------------------------------------


def test_bundle_conditional_urls(bundle):
    assert bundle["type"] == "transaction"
    types = []
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        types.append(resource["resourceType"])
        assert request["method"] == "PUT"
        split = urlsplit(request["url"])
        assert split.path == resource["resourceType"]
        if resource["resourceType"] == "ValueSet":
            assert parse_qs(split.query) == {"url": [resource["url"]]}  # matched on its canonical
        else:
            identifier = resource["identifier"][0]
            assert parse_qs(split.query) == {"identifier": [f"{identifier['system']}|{identifier['value']}"]}
        assert "id" not in resource  # matched by identifier or canonical, never by a client id
    assert types[:4] == ["Organization", "ResearchStudy", "PlanDefinition", "Group"]
    assert set(types[4:]) == {"ValueSet"}
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    assert by_type["ResearchStudy"]["request"]["url"] == (
        "ResearchStudy?identifier=https%3A%2F%2Fclinicaltrials.gov%7CNCT06849401"
    )


def test_bundle_full_urls_are_uuid5_of_business_identifiers(bundle):
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "ValueSet":
            expected = uuid.uuid5(uuid.NAMESPACE_URL, entry["resource"]["url"])
        else:
            identifier = entry["resource"]["identifier"][0]
            expected = uuid.uuid5(uuid.NAMESPACE_URL, f"{identifier['system']}|{identifier['value']}")
        assert entry["fullUrl"] == f"urn:uuid:{expected}"
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


def test_bundle_references_resolve_to_entries(bundle):
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    references = [v for e in bundle["entry"] for p, v in _walk(e["resource"]) if p.endswith(".reference")]
    assert len(references) == 3  # sponsor, protocol, enrollment
    assert set(references) <= full_urls
    by_type = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    study = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")
    assert study["sponsor"]["reference"] == by_type["Organization"]
    assert study["protocol"] == [{"reference": by_type["PlanDefinition"]}]
    assert study["enrollment"] == [{"reference": by_type["Group"]}]


def test_conditional_url_escapes_search_separators():
    resource = {
        "resourceType": "Group",
        "identifier": [{"system": "http://example.org/sid", "value": r"a|b,c$d\e"}],
    }
    url = conditional_url(resource)
    assert url == "Group?identifier=http%3A%2F%2Fexample.org%2Fsid%7Ca%5C%7Cb%5C%2Cc%5C%24d%5C%5Ce"
    assert parse_qs(urlsplit(url).query)["identifier"] == [r"http://example.org/sid|a\|b\,c\$d\\e"]


def test_build_is_deterministic(built, bundle):
    again = _build()
    for first, second in zip(built.all(), again.all(), strict=True):
        assert json.dumps(first, ensure_ascii=False) == json.dumps(second, ensure_ascii=False)
    assert json.dumps(transaction_bundle(again.published())) == json.dumps(bundle)


def test_no_study_facts_in_mapping_code():
    source = (REPO / "mappings" / "resources.py").read_text(encoding="utf-8")
    for fact in (
        "NCT06849401",
        "VGO-Cs01p",
        "Hui Zhang",
        "Shanghai",
        "T-ALL",
        "40000000",
        "4e7",
        "1.2e8",
        "3.6e8",
    ):
        assert fact not in source, fact


# --- study files --------------------------------------------------------------------------------


def test_study_dir_default_and_unknown():
    assert DEFAULT_STUDY == "NCT06849401"
    assert study_dir() == STUDY_DIR
    assert study_dir("NCT06849401") == STUDY_DIR
    with pytest.raises(StudyDefinitionError, match="no study folder"):
        study_dir("NCT00000000")
    with pytest.raises(StudyDefinitionError, match="invalid study name"):
        study_dir("../NCT06849401")


MINIMAL_CRITERIA = """
study: NCT01234567
version: 3
manual_review_reason: requires manual review
systems: {sct: http://snomed.info/sct}
concepts: {}
criteria:
  - id: inclusion-1
    type: inclusion
    text: "Age 18 to 65 years;"
    computable: full
    rule: {kind: age, min_years: 18, max_years: 65}
  - id: exclusion-1
    type: exclusion
    text: "Investigator judgement."
    computable: none
    rule: {kind: manual, label: investigator judgement}
"""


def _minimal_study() -> dict[str, Any]:
    return {
        "protocolSection": {
            "identificationModule": {
                "nctId": "NCT01234567",
                "orgStudyIdInfo": {"id": "ORG-1"},
                "briefTitle": "A second study",
            },
            "statusModule": {"overallStatus": "RECRUITING"},
            "sponsorCollaboratorsModule": {"leadSponsor": {"name": "Example Sponsor", "class": "INDUSTRY"}},
            "conditionsModule": {"conditions": ["Asthma"], "keywords": ["airway"]},
            "designModule": {
                "studyType": "INTERVENTIONAL",
                "phases": ["PHASE2", "PHASE3"],
                "designInfo": {"primaryPurpose": "PREVENTION"},
                "enrollmentInfo": {"count": 120, "type": "ESTIMATED"},
            },
            "armsInterventionsModule": {
                "armGroups": [
                    {"label": "Drug A", "type": "ACTIVE_COMPARATOR", "description": "Drug A daily."}
                ],
                "interventions": [{"type": "DRUG", "name": "Drug A"}],
            },
            "eligibilityModule": {
                "eligibilityCriteria": (
                    "Inclusion Criteria:\n\n1. Age 18 to 65 years;\n\nExclusion Criteria:\n\n1. Investigator judgement."
                )
            },
            "contactsLocationsModule": {"centralContacts": [{"name": "A. Person", "email": "a@example.org"}]},
            "derivedSection": {"anything": "v2 carries more than we read"},
        }
    }


@pytest.fixture
def second_study(tmp_path: Path) -> Path:
    folder = tmp_path / "NCT01234567"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps(_minimal_study()), encoding="utf-8")
    (folder / "criteria.yaml").write_text(MINIMAL_CRITERIA, encoding="utf-8")
    return folder


def test_second_study_maps_without_code_changes(second_study: Path):
    folder = study_dir("NCT01234567", root=second_study.parent)
    built = build_study_resources(load_study(folder / "study.json"), load_criteria(folder / "criteria.yaml"))
    study = built.research_study
    assert study["identifier"][0]["value"] == "NCT01234567"
    assert study["status"] == "active"
    assert study["phase"]["coding"][0]["code"] == "phase-2-phase-3"
    assert study["primaryPurposeType"]["coding"][0]["code"] == "prevention"
    assert study["condition"] == [{"text": "Asthma"}]  # no diagnosis clause: text only
    assert study["keyword"] == [{"text": "airway"}]
    assert study["contact"] == [
        {"name": "A. Person", "telecom": [{"system": "email", "value": "a@example.org", "use": "work"}]}
    ]
    assert built.plan_definition["version"] == "3"
    assert built.plan_definition["action"] == [
        {"id": "intervention-1", "title": "Drug A", "requiredBehavior": "must"}
    ]
    characteristics = built.group["characteristic"]
    assert [c["exclude"] for c in characteristics] == [False, True]
    assert characteristics[0]["valueRange"]["low"]["value"] == 18
    assert _codes(characteristics[1]["code"]) == {(LOCAL, "manual-review")}
    bundle = transaction_bundle(built.published())
    assert {e["request"]["url"].split("?")[0] for e in bundle["entry"]} == {
        "Organization",
        "ResearchStudy",
        "PlanDefinition",
        "Group",
    }


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    assert "Traceback" not in message
    return message


def test_broken_study_json_is_one_line_error(tmp_path: Path):
    path = tmp_path / "study.json"
    path.write_text('{"protocolSection": {', encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as exc:
        load_study(path)
    assert "not valid JSON" in _one_line(exc) and str(path) in str(exc.value)


def test_invalid_study_json_is_one_line_error(tmp_path: Path):
    data = _minimal_study()
    del data["protocolSection"]["identificationModule"]["briefTitle"]
    data["protocolSection"]["identificationModule"]["nctId"] = "NCT123"
    path = tmp_path / "study.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as exc:
        load_study(path)
    message = _one_line(exc)
    assert "2 problem(s)" in message and "identificationModule" in message


def test_missing_or_non_object_study_file(tmp_path: Path):
    with pytest.raises(StudyDefinitionError) as exc:
        load_study(tmp_path / "absent.json")
    assert "not found" in _one_line(exc)
    path = tmp_path / "list.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as exc:
        load_study(path)
    assert "JSON object" in _one_line(exc)


def test_unknown_annotation_key_is_rejected(tmp_path: Path):
    data = _minimal_study()
    data["adapterAnnotations"] = {"doseLevel": []}  # typo of doseLevels
    path = tmp_path / "study.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as exc:
        load_study(path)
    assert "adapterAnnotations.doseLevel" in _one_line(exc)


def test_unmapped_status_is_a_study_error(second_study: Path):
    data = _minimal_study()
    data["protocolSection"]["statusModule"]["overallStatus"] = "UNKNOWN"
    (second_study / "study.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as exc:
        build_study_resources(
            load_study(second_study / "study.json"), load_criteria(second_study / "criteria.yaml")
        )
    assert "UNKNOWN" in _one_line(exc)


def test_criteria_text_must_match_registry_text(second_study: Path):
    (second_study / "criteria.yaml").write_text(
        MINIMAL_CRITERIA.replace("Age 18 to 65 years;", "Age 18 to 65 years"), encoding="utf-8"
    )
    with pytest.raises(StudyDefinitionError) as exc:
        build_study_resources(
            load_study(second_study / "study.json"), load_criteria(second_study / "criteria.yaml")
        )
    assert "inclusion-1" in _one_line(exc)


def test_criteria_for_another_study_are_rejected(second_study: Path):
    study = load_study(STUDY_DIR / "study.json")
    with pytest.raises(StudyDefinitionError, match=r"criteria\.yaml is for NCT01234567"):
        build_study_resources(study, load_criteria(second_study / "criteria.yaml"))


def test_study_model_keeps_v2_extras():
    study = parse_study(_minimal_study())
    assert study.protocolSection.model_extra == {
        "derivedSection": {"anything": "v2 carries more than we read"}
    }
