"""Pushed data: the service screens a touched patient when a Condition might be a sign of ALL, by the
same test as the files path (issue 12's classes: wording, header codes, a site's local codes)."""

from __future__ import annotations

import json
from typing import Any

from adapter.service.rescreen import Rescreener
from tests.support.clinical import ICD10CM, SCT, condition, definition

LOCAL = "http://hospital.example/dx"


def rescreener(defn: Any) -> Rescreener:
    return Rescreener(client=None, definitions=defn, flaggers={})  # type: ignore[arg-type]


def test_text_only_header_coded_and_local_coded_all_are_in_the_population(tmp_path):
    from mappings.terminology.conceptmap import load_concept_maps

    site_map = tmp_path / "map.json"
    element = {"code": "TALL", "target": [{"code": "277575008", "equivalence": "equivalent"}]}
    group = {"source": LOCAL, "target": SCT, "element": [element]}
    site_map.write_text(json.dumps({"resourceType": "ConceptMap", "status": "active", "group": [group]}))
    plain = rescreener(definition())
    mapped = rescreener(definition().with_concept_maps(load_concept_maps([site_map])))
    text_only = {
        "resourceType": "Condition",
        "code": {"text": "Relapsed T-cell acute lymphoblastic leukaemia"},
    }
    local = {"resourceType": "Condition", "code": {"coding": [{"system": LOCAL, "code": "TALL"}]}}
    assert plain.in_population(text_only) and plain.in_population(condition((ICD10CM, "C91.0")))
    assert mapped.in_population(local) and not plain.in_population(local)
    assert plain.in_population(condition((SCT, "277575008")))
    assert not plain.in_population(condition((SCT, "38341003")))  # hypertension
