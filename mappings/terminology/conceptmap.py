"""A site's local codes, translated to standard ones with its FHIR R4 ConceptMaps before matching.

Only a mapping that makes the source mean the target is evidence: R4 ``equivalence`` ``equivalent``,
``equal``, ``wider`` (the target is wider than the source, so the source is a kind of it) and
``subsumes``. ``relatedto``, ``narrower``, ``specializes``, ``inexact``, ``unmatched`` and ``disjoint``
prove nothing and are not used.

A translated coding is added beside the original (never replacing it) and carries an extension naming
the original code and the map, so a result can say what matched and through which map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import TerminologyError

TRANSLATED_FROM = "http://trial-adapter.org/fhir/StructureDefinition/translated-from"
PROVES = frozenset({"equivalent", "equal", "wider", "subsumes"})
_EQUIVALENCES = PROVES | {"relatedto", "narrower", "specializes", "inexact", "unmatched", "disjoint"}
# The CodeableConcepts screening reads, per resource type.
_ELEMENTS = {
    "Condition": ("code", "bodySite"),
    "Observation": ("code", "valueCodeableConcept", "interpretation"),
    "Procedure": ("code", "category"),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "Medication": ("code",),
}


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)
    system: str
    code: str
    display: str = ""
    via: str  # "local-system|code via ConceptMap/<id> (equivalence)"


class ConceptMaps(BaseModel):
    """Source ``system|code`` -> the standard codings it means."""

    model_config = ConfigDict(frozen=True)
    targets: dict[str, tuple[Target, ...]] = {}
    names: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.targets)

    def sources_for(self, wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Local (system, code) pairs that map to any of ``wanted``."""
        wanted = set(wanted)
        out = []
        for key, targets in self.targets.items():
            if any((t.system, t.code) in wanted for t in targets):
                system, _, code = key.rpartition("|")
                out.append((system, code))
        return out

    def translate_concept(self, concept: Any) -> Any:
        """The CodeableConcept with the standard codings its local codings map to appended, or itself."""
        if not isinstance(concept, dict):
            return concept
        codings = concept.get("coding")
        if not isinstance(codings, list):
            return concept
        added = []
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            for target in self.targets.get(f"{coding.get('system')}|{coding.get('code')}", ()):
                added.append(
                    {
                        "system": target.system,
                        "code": target.code,
                        "display": target.display or coding.get("display") or "",
                        "extension": [{"url": TRANSLATED_FROM, "valueString": target.via}],
                    }
                )
        return {**concept, "coding": [*codings, *added]} if added else concept

    def translate_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A shallow copy with translated CodeableConcepts (components too), or the resource itself."""
        changed: dict[str, Any] = {}
        for element in _ELEMENTS.get(str(resource.get("resourceType")), ()):
            value = resource.get(element)
            new = (
                [self.translate_concept(v) for v in value]
                if isinstance(value, list)
                else self.translate_concept(value)
            )
            if new is not value and new != value:
                changed[element] = new
        components = resource.get("component")
        if resource.get("resourceType") == "Observation" and isinstance(components, list):
            new_components = [
                {**c, "code": self.translate_concept(c.get("code"))} if isinstance(c, dict) else c
                for c in components
            ]
            if new_components != components:
                changed["component"] = new_components
        return {**resource, **changed} if changed else resource


def translated_from(coding: dict[str, Any]) -> str | None:
    """For a coding added by a ConceptMap: the original code and the map; else None."""
    for ext in coding.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == TRANSLATED_FROM:
            return str(ext.get("valueString"))
    return None


def parse_concept_map(data: Any, where: str) -> dict[str, list[Target]]:
    if not isinstance(data, dict) or data.get("resourceType") != "ConceptMap":
        raise TerminologyError(f"{where}: not a FHIR ConceptMap")
    name = f"ConceptMap/{data['id']}" if data.get("id") else str(data.get("url") or data.get("name") or where)
    out: dict[str, list[Target]] = {}
    for g, group in enumerate(data.get("group") or ()):
        if not isinstance(group, dict) or not group.get("source") or not group.get("target"):
            raise TerminologyError(f"{where}: group[{g}] needs source and target code systems")
        for e, element in enumerate(group.get("element") or ()):
            if not isinstance(element, dict) or not isinstance(element.get("code"), str):
                raise TerminologyError(f"{where}: group[{g}].element[{e}] needs a code")
            for t, target in enumerate(element.get("target") or ()):
                equivalence = target.get("equivalence") if isinstance(target, dict) else None
                if equivalence not in _EQUIVALENCES:
                    raise TerminologyError(
                        f"{where}: group[{g}].element[{e}].target[{t}]: equivalence missing or not R4"
                    )
                if equivalence not in PROVES or not isinstance(target.get("code"), str):
                    continue  # the source does not mean the target: no evidence
                source = f"{group['source']}|{element['code']}"
                out.setdefault(source, []).append(
                    Target(
                        system=str(group["target"]),
                        code=target["code"],
                        display=str(target.get("display") or ""),
                        via=f"{source} via {name} ({equivalence})",
                    )
                )
    return out


def load_concept_maps(paths: Iterable[Path]) -> ConceptMaps:
    """Read ConceptMap JSON files (a ConceptMap, or a Bundle of them)."""
    merged: dict[str, list[Target]] = {}
    names = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TerminologyError(f"{path}: cannot read ConceptMap: {exc}".splitlines()[0]) from None
        resources = (
            [e.get("resource") for e in data.get("entry") or () if isinstance(e, dict)]
            if isinstance(data, dict) and data.get("resourceType") == "Bundle"
            else [data]
        )
        for resource in resources:
            for source, targets in parse_concept_map(resource, str(path)).items():
                merged.setdefault(source, []).extend(targets)
            names.append(str(path))
    return ConceptMaps(targets={k: tuple(v) for k, v in merged.items()}, names=tuple(names))
