"""How a clause is written as a FHIR Group characteristic: the shared builders and code systems.

Each kind's ``characteristic`` uses these; ``mappings.resources`` uses the small builders too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mappings.concepts import ConceptSet

from .base import Clause, Definitions

BASE = "http://trial-adapter.org/fhir"
LOCAL = f"{BASE}/CodeSystem/trial-adapter-local"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# SNOMED CT 439401001 is "Diagnosis (observable entity)": the observable whose value is the diagnosis,
# which is what a characteristic code (the thing being described) needs. Used for diagnosis and condition.
DIAGNOSIS = (SCT, "439401001", "Diagnosis")

SYSTEM_NAMES = {
    SCT: "SNOMED CT",
    LOINC: "LOINC",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "ICD-O-3",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.whocc.no/atc": "ATC",
    "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt",
    LOCAL: "local",
}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return clean({"system": system, "code": code, "display": display or None})


def concept(code: tuple[str, str, str], text: str | None = None) -> dict[str, Any]:
    return clean({"coding": [coding(*code)], "text": text})


def number(value: float | int) -> float | int:
    """Integral numbers as JSON integers (2e3 -> 2000); others unchanged (1.6 stays 1.6)."""
    return int(value) if float(value).is_integer() else value


def clean(value: Any) -> Any:
    """Drop None, empty strings and empty containers, recursively (FHIR forbids empty elements)."""
    if isinstance(value, dict):
        out = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != "" and v != [] and v != {}}
    if isinstance(value, list):
        return [v for v in (clean(v) for v in value) if v is not None and v != "" and v != [] and v != {}]
    return value


def system_name(system: str, criteria: Definitions) -> str:
    if system in SYSTEM_NAMES:
        return SYSTEM_NAMES[system]
    return next((key for key, url in criteria.systems.items() if url == system), system)


def codes_of(sets: Iterable[ConceptSet]) -> list[dict[str, Any]]:
    """Exact codes of the sets, in order, without duplicates. Codes marked ``verified: false`` in the
    criteria are local screening choices no public source confirmed: they are not published."""
    seen: set[tuple[str, str]] = set()
    codings = []
    for concept_set in sets:
        for code in concept_set.codes:
            if code.verified and (code.system, code.code) not in seen:
                seen.add((code.system, code.code))
                codings.append(coding(code.system, code.code, code.display))
    return codings


def set_text(concept_set: ConceptSet, criteria: Definitions) -> str:
    """The set's display plus what a CodeableConcept cannot hold: roots with their descendants, code
    ranges, prefixes, ICD-O-3 behaviours, exclusions (the ValueSet in ``mappings.valuesets`` says the
    same as a compose)."""
    extra = [f"{system_name(r.system, criteria)} {r.code} and descendants" for r in concept_set.roots]
    extra += [
        f"{system_name(r.system, criteria)} {r.first}" + (f"-{r.last}" if r.last != r.first else "")
        for r in concept_set.ranges
    ]
    extra += [f"{system_name(p.system, criteria)} {p.prefix}*" for p in concept_set.prefixes]
    extra += [f"{system_name(b.system, criteria)} */{b.behaviour}" for b in concept_set.behaviours]
    text = concept_set.display
    if extra:
        text += f" (also {', '.join(extra)}"
        if concept_set.exclude:
            text += "; except " + ", ".join(
                f"{system_name(x.system, criteria)} {x.prefix} and descendants" for x in concept_set.exclude
            )
        text += ")"
    return text


def value_concept(sets: list[ConceptSet], criteria: Definitions, suffix: str = "") -> dict[str, Any]:
    text = "; ".join(set_text(s, criteria) for s in sets) + suffix
    return clean({"coding": codes_of(sets), "text": text})


def with_qualifiers(text: str, clause: Clause, qualifiers: list[str]) -> str:
    """Timing and scope of a clause, in words. R4 Group.characteristic.period is an absolute Period, so
    relative windows ("within 7 days") cannot be structured: they go into the code's text (and are in
    the verbatim registry text of the criterion extension where the registry states them)."""
    if clause.only_for_sex:
        qualifiers = [*qualifiers, f"{clause.only_for_sex} patients only"]
    return f"{text} ({'; '.join(qualifiers)})" if qualifiers else text
