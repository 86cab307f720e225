"""Patients for server tests: the unit-test builders, made unique per patient and dated relative to today."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from tests.support.clinical import AS_OF, PLATELETS, candidate_resources, obs

_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    if isinstance(value, str) and (match := _DAY.match(value)) and len(value) <= 35:
        shifted = (date.fromisoformat(match[1]) + delta).isoformat()
        return shifted + value[10:]
    return value


def localise(resources: list[dict[str, Any]], patient_id: str, today: date) -> list[dict[str, Any]]:
    """Give every resource an id under ``patient_id``, point them at that patient, move dates to today."""
    out = []
    for index, resource in enumerate(resources):
        resource = _shift(resource, today - AS_OF)
        if resource["resourceType"] == "Patient":
            resource["id"] = patient_id
        else:
            resource["id"] = f"{patient_id}-{index}"
            element = "patient" if resource["resourceType"] == "Immunization" else "subject"
            resource[element] = {"reference": f"Patient/{patient_id}"}
        out.append(resource)
    return out


def candidate_on_server(patient_id: str, today: date, gender: str = "female") -> list[dict[str, Any]]:
    return localise(candidate_resources(gender=gender), patient_id, today)


def low_platelets(patient_id: str, today: date) -> dict[str, Any]:
    """A platelet count of 5 x10^9/L today: exclusion-13 met."""
    return localise([obs(PLATELETS, 5, "10*9/L", ago=0)], patient_id, today)[0] | {
        "id": f"{patient_id}-plt-low"
    }


def put_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


LOCAL_DX = "http://hospital.example/fhir/CodeSystem/dx"
ALL_CODES = {"277575008", "12301000132103"}  # the SNOMED T-ALL and relapse codes of the candidate


def recoded(patient_id: str, diagnosis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A complete candidate whose ALL Conditions are replaced by ``diagnosis`` (code elements)."""
    resources = candidate_on_server(patient_id, date.today())
    conditions = [
        r
        for r in resources
        if r["resourceType"] == "Condition"
        and any(c.get("code") in ALL_CODES for c in r["code"].get("coding") or ())
    ]
    assert len(conditions) == len(diagnosis) == 2
    for resource, code in zip(conditions, diagnosis, strict=True):
        resource["code"] = code
    return resources
