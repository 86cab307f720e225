"""Issue 17 item 4 and 5 shapes: the PlanDefinition against the Vulcan Schedule of Activities profile, the
NCIt phase code, the R5 export (validated with the official R5 definitions in ``fhir.resources``), and the
EvidenceVariable + CQL Library export.

The Vulcan SoA StructureDefinition (hl7.fhir.uv.vulcan-schedule) is not reachable from here (no FHIR
package registry), so its StudyProtocolSoa constraints (github.com/HL7/Vulcan-schedule-ig,
input/fsh/research.fsh: FHIR 4.0.1; every listed element must-support, no cardinality narrowed) are
tested one by one below.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from fhir.resources import get_fhir_model_class as r5_model

from adapter.cli import main
from mappings.criteria import load_criteria
from mappings.evidence import eligibility_export, library_url
from mappings.r5 import research_subject_r5, study_resources_r5
from mappings.resources import PROFILE_VULCAN_SOA_PROTOCOL, build_study_resources
from mappings.study import load_study, study_dir

NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"


@pytest.fixture(scope="module")
def criteria():
    return load_criteria(study_dir(None) / "criteria.yaml")


@pytest.fixture(scope="module")
def built(criteria):
    return build_study_resources(load_study(study_dir(None) / "study.json"), criteria)


# --- Vulcan Schedule of Activities (StudyProtocolSoa) -------------------------------------------


def test_plan_definition_has_the_vulcan_soa_protocol_elements(built):
    plan = built.plan_definition
    # Conforms without claiming: HAPI (without the Vulcan package) errors on an unknown meta.profile.
    assert PROFILE_VULCAN_SOA_PROTOCOL not in plan["meta"]["profile"]
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    # Must-support elements of StudyProtocolSoa, each populated.
    for element in ("url", "name", "title", "status", "description", "version", "action"):
        assert plan.get(element), element
    assert plan["subjectCodeableConcept"]["coding"][0]["code"] == "Patient"


def test_every_action_has_a_title_and_timing_or_an_offset(built):
    def walk(actions):
        for action in actions:
            yield action
            yield from walk(action.get("action", []))

    for action in walk(built.plan_definition["action"]):
        assert action["title"]
        timed = any(k.startswith("timing") for k in action) or any(
            "offsetDuration" in r for r in action.get("relatedAction", [])
        )
        grouping = "action" in action  # the dose-escalation group times its dose-level children
        assert timed or grouping, action["id"]


def test_doses_and_visits_are_actions_placed_by_timing_offsets(built):
    actions = {a["id"]: a for a in built.plan_definition["action"]}
    doses = actions["dose-escalation"]["action"]
    assert [d["timingTiming"]["repeat"]["count"] for d in doses] == [6, 6, 6]
    last_visit = actions["end-of-follow-up"]
    assert last_visit["requiredBehavior"] == "must"
    [related] = last_visit["relatedAction"]
    assert related["actionId"] == "dose-escalation"  # R4 relatedAction.actionId (R5: targetId)
    assert related["relationship"] == "after-end"
    assert related["offsetDuration"] == {
        "value": 12,
        "unit": "months",
        "system": "http://unitsofmeasure.org",
        "code": "mo",
    }
    ids = {a["id"] for a in built.plan_definition["action"]}
    for action in built.plan_definition["action"]:
        for rel in action.get("relatedAction", []):
            assert rel["actionId"] in ids  # every offset points at an action of this plan


# --- NCIt phase -----------------------------------------------------------------------------------


def test_research_study_phase_carries_ncit_beside_r4(built):
    codings = built.research_study["phase"]["coding"]
    assert [c["system"] for c in codings] == [
        "http://terminology.hl7.org/CodeSystem/research-study-phase",
        NCIT,
    ]
    assert codings[1]["code"] == "C54721"  # NCIt "Early Phase 1 Trial" (ICH M11 phase value set C217045)


# --- R5 -------------------------------------------------------------------------------------------


def test_r5_research_study_and_group_validate_against_r5_definitions(built):
    study, group = study_resources_r5(built)
    assert r5_model("ResearchStudy").__module__.startswith("fhir.resources.researchstudy")  # R5, not R4B
    for resource in (study, group):
        model = r5_model(resource["resourceType"]).model_validate(resource)
        assert json.loads(model.model_dump_json(exclude_none=True)) == resource
    assert study["recruitment"] == {
        "targetNumber": 9,
        "eligibility": {"reference": "Group/NCT06849401-eligibility"},
    }
    assert study["status"] == "active"  # publication status; the study's own status is progressStatus
    assert study["progressStatus"][0]["state"]["coding"][0] == {
        "system": "http://hl7.org/fhir/research-study-status",
        "code": "approved",
    }
    roles = [p["role"]["coding"][0]["code"] for p in study["associatedParty"]]
    assert roles[0] == "lead-sponsor"
    assert study["comparisonGroup"][0]["name"] == "VGO-Cs01p"
    assert group["membership"] == "definitional" and "actual" not in group
    assert group["characteristic"] == built.group["characteristic"]
    assert "meta" not in study or "profile" not in study["meta"]  # our R4 profiles do not apply to R5


def test_r5_research_study_refuses_an_unmapped_r4_element(built):
    from mappings.r5 import research_study_r5

    with pytest.raises(ValueError, match="no R5 mapping"):
        research_study_r5({**built.research_study, "site": [{"reference": "Location/x"}]}, built.group)


@pytest.mark.parametrize("status", ["candidate", "ineligible"])
def test_r5_research_subject_shape_of_flagging(status):
    r4 = {
        "resourceType": "ResearchSubject",
        "meta": {"profile": ["http://trial-adapter.org/fhir/StructureDefinition/candidate-research-subject"]},
        "identifier": [
            {"system": "http://trial-adapter.org/fhir/sid/research-subject", "value": "NCT06849401/p1"}
        ],
        "status": status,
        "study": {"reference": "ResearchStudy/NCT06849401"},
        "individual": {"reference": "Patient/p1"},
    }
    r5 = research_subject_r5(r4)
    r5_model("ResearchSubject").model_validate(r5)
    assert r5["status"] == "active"
    assert r5["subject"] == {"reference": "Patient/p1"}
    assert r5["progress"] == [
        {
            "subjectState": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/research-subject-state", "code": status}
                ]
            }
        }
    ]
    with pytest.raises(ValueError, match="arms"):
        research_subject_r5({**r4, "assignedArm": "A"})


def test_map_fhir_version_5_writes_r5(tmp_path: Path):
    assert main(["map", "--out", str(tmp_path), "--fhir-version", "5.0"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["Group-NCT06849401-eligibility.json", "ResearchStudy-NCT06849401.json"]
    study = json.loads((tmp_path / "ResearchStudy-NCT06849401.json").read_text())
    r5_model("ResearchStudy").model_validate(study)


# --- EvidenceVariable + CQL Library ------------------------------------------------------------------


def test_evidence_variable_points_computable_criteria_at_their_cql_defines(criteria):
    export = eligibility_export(criteria, "approved")
    characteristics = export.evidence_variable["characteristic"]
    assert len(characteristics) == len(criteria.criteria)
    for criterion, item in zip(criteria.criteria, characteristics, strict=True):
        assert item["exclude"] is (criterion.type == "exclusion")
        if criterion.id in export.cql.expressed:
            assert item["definitionExpression"] == {
                "language": "text/cql-identifier",
                "expression": criterion.id,
                "reference": f"{library_url(criteria)}|{export.cql.version}",
            }
            assert f'define "{criterion.id}":' in export.cql.text
        else:
            assert item["definitionCodeableConcept"] == {"text": criterion.text}
            assert f'define "{criterion.id}":' not in export.cql.text


def test_library_carries_the_same_cql_text(criteria):
    export = eligibility_export(criteria)
    library = export.library
    assert library["type"]["coding"][0]["code"] == "logic-library"
    [content] = library["content"]
    assert content["contentType"] == "text/cql"
    assert base64.b64decode(content["data"]).decode("utf-8") == export.cql.text
    assert library["name"] == export.cql.name and library["version"] == export.cql.version


def test_map_writes_the_eligibility_export(tmp_path: Path):
    assert main(["map", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "NCT06849401Eligibility.cql").read_text().startswith("// NCT06849401 eligibility")
    evidence = json.loads((tmp_path / "EvidenceVariable-NCT06849401-eligibility.json").read_text())
    assert evidence["resourceType"] == "EvidenceVariable"
    assert (tmp_path / "Library-NCT06849401-eligibility-cql.json").exists()
