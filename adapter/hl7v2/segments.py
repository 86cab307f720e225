"""Segment maps after the "Version 2 to FHIR" IG (http://hl7.org/fhir/uv/v2mappings): PID -> Patient,
PV1 -> Encounter, OBR -> DiagnosticReport, OBX -> Observation, DG1/PRB -> Condition.

Only what screening and a reviewer need is mapped; every value that is present but unreadable is an
error naming its field (the message gets AE), never a silent guess.
"""

from __future__ import annotations

import re
from typing import Any

from mappings.clinical.units import is_ucum

from .datatypes import (
    UCUM,
    Context,
    code_system,
    codeable_concept,
    date_only,
    date_time,
    decimal,
    human_name,
    identifier,
)
from .message import DATA_TYPE, REQUIRED_MISSING, TABLE_VALUE, Segment, V2Error

# Table 0001 (administrative sex) -> AdministrativeGender (IG ConceptMap table-hl70001-to-administrative-gender,
# STU1); other codes leave gender absent (unknown to screening).
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}

# Table 0085 (observation result status) -> observation-status (IG ConceptMap
# table-hl70085-to-observation-status, STU1): B and N have no target and are refused.
OBSERVATION_STATUS = {
    "A": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "P": "preliminary",
    "W": "entered-in-error",
    "X": "cancelled",
}

# Table 0123 (result status, OBR-25) -> DiagnosticReport.status.
REPORT_STATUS = {
    "C": "corrected",
    "F": "final",
    "P": "preliminary",
    "A": "partial",
    "X": "cancelled",
    "I": "registered",
    "O": "registered",
    "R": "partial",
    "S": "partial",
}

# Table 0078 (abnormal flags) codes that exist with the same meaning in v3 ObservationInterpretation
# (terminology.hl7.org/CodeSystem-v3-ObservationInterpretation); any other flag keeps the v2 table.
V3_INTERPRETATION = frozenset(
    {"N", "A", "AA", "H", "HH", "L", "LL", "<", ">", "S", "R", "I", "NEG", "POS", "IND", "U", "D", "B", "W"}
)

# Table 0004 (patient class) -> v3 ActCode codes of the R4 encounter-class value set
# (terminology.hl7.org ValueSet-encounter-class); any other class keeps the v2 table code.
ENCOUNTER_CLASS = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC"}

_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*-\s*([+-]?\d+(?:\.\d+)?)\s*$")
_BOUND = re.compile(r"^\s*(<=|>=|<|>)\s*([+-]?\d+(?:\.\d+)?)\s*$")
SN_COMPARATORS = {"<", "<=", ">", ">="}


def _required(seg: Segment, n: int, what: str) -> str:
    value = seg.get(n)
    if not value:
        raise V2Error(
            REQUIRED_MISSING, f"{what} is required", segment=seg.name, sequence=seg.sequence, field=n
        )
    return value


def _dt(seg: Segment, n: int, ctx: Context) -> str | None:
    return date_time(seg.get(n), ctx, (seg.name, n))


def patient(seg: Segment, ctx: Context) -> dict[str, Any]:
    """PID: identifiers PID-3 (then PID-2, PID-4), name PID-5, birth PID-7, sex PID-8, death PID-29/30."""
    identifiers = []
    for n in (3, 2, 4):
        for rep in range(1, len(seg.reps(n)) + 1):
            found = identifier(seg, n, ctx, rep=rep, kind="patient-id")
            if found and found not in identifiers:
                identifiers.append(found)
    if not identifiers:
        raise V2Error(REQUIRED_MISSING, "PID-3 (patient identifier) is required", segment="PID", field=3)
    resource: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
    names = [name for r in range(1, len(seg.reps(5)) + 1) if (name := human_name(seg, 5, rep=r))]
    if names:
        resource["name"] = names
    if birth := date_only(seg.get(7), ctx, ("PID", 7)):
        resource["birthDate"] = birth
    sex = seg.get(8)
    if sex in GENDER:
        resource["gender"] = GENDER[sex]
    death = _dt(seg, 29, ctx)
    indicator = seg.get(30)
    if death:
        resource["deceasedDateTime"] = death
    elif indicator in ("Y", "N"):
        resource["deceasedBoolean"] = indicator == "Y"
    elif indicator:
        raise V2Error(TABLE_VALUE, "PID-30 (death indicator) must be Y or N", segment="PID", field=30)
    return resource


def encounter(seg: Segment, ctx: Context, event: str) -> dict[str, Any] | None:
    """PV1: class PV1-2, visit number PV1-19, period PV1-44/45. Without a visit number there is
    nothing to identify the encounter by across messages, so none is made."""
    visit = identifier(seg, 19, ctx, kind="visit")
    if visit is None:
        return None
    start, end = _dt(seg, 44, ctx), _dt(seg, 45, ctx)
    patient_class = seg.get(2)
    if patient_class in ENCOUNTER_CLASS:
        klass = {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": ENCOUNTER_CLASS[patient_class],
        }
    else:
        klass = {"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": patient_class or "U"}
    status = "finished" if end else "in-progress" if start or event in ("A01", "A04") else "unknown"
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [visit],
        "status": status,
        "class": klass,
    }
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        resource["period"] = period
    return resource


def report(seg: Segment, ctx: Context, order: list[dict[str, Any]]) -> dict[str, Any]:
    """OBR: the order's identifiers (filler first), code OBR-4, effective OBR-7, status OBR-25."""
    code = codeable_concept(seg, 4, ctx)
    if code is None:
        raise V2Error(
            REQUIRED_MISSING,
            "OBR-4 (universal service identifier) is required",
            segment="OBR",
            sequence=seg.sequence,
            field=4,
        )
    status_code = seg.get(25)
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": order,
        "status": REPORT_STATUS.get(status_code, "unknown") if status_code else "unknown",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        ],
        "code": code,
    }
    if effective := _dt(seg, 7, ctx):
        resource["effectiveDateTime"] = effective
    return resource


def _units(seg: Segment, ctx: Context) -> dict[str, Any]:
    """OBX-6: the v2 unit string as ``unit``; ``code``/``system`` only for a valid UCUM code (no conversion)."""
    code, text, system = seg.get(6, 1), seg.get(6, 2), seg.get(6, 3)
    unit = code or text
    if not unit:
        return {}
    out: dict[str, Any] = {"unit": unit}
    if code and system.upper() in ("", "UCUM", "ISO+", "ANSI+") and is_ucum(code):
        out |= {"system": UCUM, "code": code}
    elif code and system and system.upper() not in ("UCUM", "ISO+", "ANSI+"):
        out |= {"system": code_system(system, ctx), "code": code}  # a named non-UCUM system stays itself
    return out


def _value(seg: Segment, ctx: Context) -> dict[str, Any]:
    """OBX-5 by OBX-2: NM -> valueQuantity, ST/TX/FT -> valueString, CE/CWE -> valueCodeableConcept,
    SN -> valueQuantity (with comparator), valueRange or valueRatio; DT/TS/DTM -> valueDateTime."""
    kind = seg.get(2).upper()
    where = ("OBX", 5)
    if not seg.reps(5):
        return {}
    if kind == "NM":
        # "<5" in an NM field is a common deviation from SN: the comparator is kept, not dropped.
        if bound := _BOUND.match(seg.get(5)):
            quantity = {"value": decimal(bound[2], where), "comparator": bound[1], **_units(seg, ctx)}
            return {"valueQuantity": quantity}
        return {"valueQuantity": {"value": decimal(seg.get(5), where), **_units(seg, ctx)}}
    if kind in ("ST", "TX", "FT"):
        texts = ["^".join("&".join(c) for c in rep) for rep in seg.reps(5)]
        return {"valueString": "\n".join(texts)}
    if kind in ("CE", "CWE", "CNE"):
        concept = codeable_concept(seg, 5, ctx)
        return {"valueCodeableConcept": concept} if concept else {}
    if kind in ("DT", "TS", "DTM"):
        return {"valueDateTime": date_time(seg.get(5), ctx, where)}
    if kind == "SN":
        return _structured_numeric(seg, ctx)
    if not kind:
        raise V2Error(
            REQUIRED_MISSING,
            "OBX-2 (value type) is required when OBX-5 is valued",
            segment="OBX",
            sequence=seg.sequence,
            field=2,
        )
    raise V2Error(
        DATA_TYPE,
        f"OBX-2 value type {kind[:5]} is not supported (NM, ST, TX, FT, CE, CWE, SN, DT, TS)",
        segment="OBX",
        sequence=seg.sequence,
        field=2,
    )


def _structured_numeric(seg: Segment, ctx: Context) -> dict[str, Any]:
    comparator, num1, separator, num2 = (seg.get(5, n) for n in (1, 2, 3, 4))
    where = ("OBX", 5)
    units = _units(seg, ctx)
    if separator in ("-",) and num1 and num2:
        return {
            "valueRange": {
                "low": {"value": decimal(num1, where), **units},
                "high": {"value": decimal(num2, where), **units},
            }
        }
    if separator in (":", "/") and num1 and num2:
        return {
            "valueRatio": {
                "numerator": {"value": decimal(num1, where)},
                "denominator": {"value": decimal(num2, where)},
            }
        }
    if num1 and not separator and not num2 and comparator in ("", "=", *SN_COMPARATORS):
        quantity: dict[str, Any] = {"value": decimal(num1, where), **units}
        if comparator in SN_COMPARATORS:
            quantity["comparator"] = comparator
        return {"valueQuantity": quantity}
    raise V2Error(
        DATA_TYPE,
        "OBX-5 is not a structured numeric this mapping reads",
        segment="OBX",
        sequence=seg.sequence,
        field=5,
    )


def _reference_range(text: str, units: dict[str, Any]) -> dict[str, Any]:
    """OBX-7 as text, with low/high when it reads "a-b", "<b", "<=b", ">a" or ">=a"."""
    out: dict[str, Any] = {"text": text}
    if match := _RANGE.match(text):
        out["low"] = {"value": decimal(match[1], ("OBX", 7)), **units}
        out["high"] = {"value": decimal(match[2], ("OBX", 7)), **units}
    elif match := _BOUND.match(text):
        out["high" if match[1].startswith("<") else "low"] = {"value": decimal(match[2], ("OBX", 7)), **units}
    return out


def observation(seg: Segment, ctx: Context, fallback_effective: str | None) -> dict[str, Any]:
    """OBX: code OBX-3, value OBX-2/5/6, range OBX-7, flags OBX-8, status OBX-11, time OBX-14 (else OBR-7)."""
    code = codeable_concept(seg, 3, ctx)
    if code is None:
        raise V2Error(
            REQUIRED_MISSING,
            "OBX-3 (observation identifier) is required",
            segment="OBX",
            sequence=seg.sequence,
            field=3,
        )
    status_code = seg.get(11)
    if not status_code:
        raise V2Error(
            REQUIRED_MISSING,
            "OBX-11 (result status) is required",
            segment="OBX",
            sequence=seg.sequence,
            field=11,
        )
    if status_code not in OBSERVATION_STATUS:
        raise V2Error(
            TABLE_VALUE,
            f"OBX-11 result status {status_code[:3]} is not supported (A C D F I P W X)",
            segment="OBX",
            sequence=seg.sequence,
            field=11,
        )
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": OBSERVATION_STATUS[status_code],
        "code": code,
    }
    resource |= _value(seg, ctx)
    if text := seg.get(7):
        units = {k: v for k, v in _units(seg, ctx).items()}
        resource["referenceRange"] = [_reference_range(text, units)]
    flags = []
    for rep in range(1, len(seg.reps(8)) + 1):
        flag = seg.get(8, 1, rep=rep)
        if flag:
            system = (
                "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
                if flag in V3_INTERPRETATION
                else "http://terminology.hl7.org/CodeSystem/v2-0078"
            )
            flags.append({"coding": [{"system": system, "code": flag}]})
    if flags:
        resource["interpretation"] = flags
    effective = _dt(seg, 14, ctx) or fallback_effective
    if effective:
        resource["effectiveDateTime"] = effective
    return resource


def diagnosis(seg: Segment, ctx: Context) -> dict[str, Any]:
    """DG1: code DG1-3, onset DG1-5, recorded DG1-19; category encounter-diagnosis."""
    code = codeable_concept(seg, 3, ctx)
    if code is None:
        raise V2Error(
            REQUIRED_MISSING,
            "DG1-3 (diagnosis code) is required",
            segment="DG1",
            sequence=seg.sequence,
            field=3,
        )
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "code": code,
    }
    if onset := _dt(seg, 5, ctx):
        resource["onsetDateTime"] = onset
    if recorded := _dt(seg, 19, ctx):
        resource["recordedDate"] = recorded
    return resource


def problem(seg: Segment, ctx: Context) -> dict[str, Any]:
    """PRB: code PRB-3, onset PRB-16; action DE (delete) -> entered-in-error; category problem-list-item."""
    code = codeable_concept(seg, 3, ctx)
    if code is None:
        raise V2Error(
            REQUIRED_MISSING, "PRB-3 (problem id) is required", segment="PRB", sequence=seg.sequence, field=3
        )
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": code,
    }
    if seg.get(1) == "DE":
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error",
                }
            ]
        }
    if onset := _dt(seg, 16, ctx):
        resource["onsetDateTime"] = onset
    return resource
