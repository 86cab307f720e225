"""A patient's record: the Patient and the clinical resources the criteria read, grouped by patient.

Sources (files, a FHIR server, pushed bundles) all produce resources as plain dicts; ``RecordBuilder``
groups them by the patient they are about. Screening reads dicts, not pydantic models: validation has
already happened at the edge, and dicts keep screening fast.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .mcode import with_histology
from .resource_types import SUBJECT_ELEMENT

_LITERAL_REF = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def normalise_reference(reference: str | None, aliases: dict[str, str] | None = None) -> str | None:
    """``Type/id`` for relative or absolute literal references; a Bundle fullUrl alias when known."""
    if not reference:
        return None
    if aliases and reference in aliases:
        return aliases[reference]
    match = _LITERAL_REF.search(reference)
    if match:
        return f"{match['type']}/{match['id']}"
    return reference  # urn:uuid:... with no alias: still a stable key


def resource_key(resource: dict[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid}" if rid else None


@dataclass
class PatientRecord:
    key: str
    patient: dict[str, Any]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    _obs_index: dict[tuple[str, str], list[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        # mCODE: a cancer's morphology (histology-morphology-behavior extension) is a code of its
        # Condition, read here once so that every kind sees it.
        conditions = self.resources.get("Condition")
        if conditions:
            self.resources["Condition"] = [with_histology(c) for c in conditions]

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return self.resources.get(resource_type, [])

    def observations_coded(self, codes: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """Observations carrying any of these (system, code) pairs, each once. A code found on a
        component (a flow-cytometry panel's CD7) gives that component as an Observation of its own."""
        if self._obs_index is None:
            index: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for obs in self.of_type("Observation"):
                for coding in (obs.get("code") or {}).get("coding") or ():
                    index[(coding.get("system"), coding.get("code"))].append(obs)
                for component in obs.get("component") or ():
                    if not isinstance(component, dict):
                        continue
                    view: dict[str, Any] | None = None
                    for coding in (component.get("code") or {}).get("coding") or ():
                        view = view or component_view(obs, component)
                        index[(coding.get("system"), coding.get("code"))].append(view)
            self._obs_index = index
        seen: dict[int, dict[str, Any]] = {}
        for code in codes:
            for obs in self._obs_index.get(code, ()):
                seen.setdefault(id(obs), obs)
        return list(seen.values())

    def count(self) -> int:
        return sum(len(v) for v in self.resources.values())


_COMPONENT_ELEMENTS = ("code", "interpretation", "dataAbsentReason", "referenceRange")


def component_view(obs: dict[str, Any], component: dict[str, Any]) -> dict[str, Any]:
    """An Observation component read as an Observation: the parent's id, status and dates, the
    component's code, value, interpretation and reference range."""
    view = {k: v for k, v in obs.items() if k != "component" and not k.startswith("value")}
    for key in _COMPONENT_ELEMENTS:
        view.pop(key, None)
    view.update({k: v for k, v in component.items() if k.startswith("value") or k in _COMPONENT_ELEMENTS})
    return view


class RecordBuilder:
    """Collects resources from any order of arrival and yields one record per Patient."""

    def __init__(self) -> None:
        self._patients: dict[str, dict[str, Any]] = {}
        self._by_patient: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        self._medications: dict[str, dict[str, Any]] = {}
        self._aliases: dict[str, str] = {}
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def add_alias(self, full_url: str, resource: dict[str, Any]) -> None:
        """A Bundle entry's fullUrl (urn:uuid:...) names the same resource as ``Type/id``."""
        key = resource_key(resource)
        if full_url and key:
            self._aliases[full_url] = key

    def add(self, resource: dict[str, Any], full_url: str | None = None) -> None:
        rtype = resource.get("resourceType")
        key = resource_key(resource) or full_url
        if full_url:
            self.add_alias(full_url, resource)
        if rtype == "Patient" and key:
            self._patients[key] = resource
        elif rtype == "Medication":
            if key:
                self._medications[key] = resource
        elif rtype in SUBJECT_ELEMENT:
            ref = ((resource.get(SUBJECT_ELEMENT[rtype]) or {}).get("reference")) or ""
            # Resolve aliases at the end: a Bundle may list the Patient after its Observations.
            self._pending.append((ref, resource))

    def add_all(self, resources: Iterable[dict[str, Any]]) -> None:
        for resource in resources:
            self.add(resource)

    def _flush(self) -> None:
        for ref, resource in self._pending:
            patient = normalise_reference(ref, self._aliases)
            if patient:
                self._by_patient[patient][resource["resourceType"]].append(resource)
        self._pending.clear()

    def patient_keys(self) -> list[str]:
        return list(self._patients)

    def records(self) -> Iterator[PatientRecord]:
        self._flush()
        # References were normalised through the fullUrl aliases, so each patient has a single key.
        for key, patient in self._patients.items():
            resources = self._by_patient.get(key) or defaultdict(list)
            yield PatientRecord(key=key, patient=patient, resources=resources, medications=self._medications)

    def resolve(self, reference: str | None) -> str | None:
        return normalise_reference(reference, self._aliases)


def subject_key(resource: dict[str, Any]) -> str | None:
    """The reference (``Type/id``) in a clinical resource's subject element (``subject``, ``patient``):
    whom it is about; None for another type or a missing or malformed reference."""
    element = SUBJECT_ELEMENT.get(str(resource.get("resourceType")))
    subject = resource.get(element) if element else None
    ref = subject.get("reference") if isinstance(subject, dict) else None
    return normalise_reference(ref) if isinstance(ref, str) else None


def patients_in(resources: Iterable[dict[str, Any]]) -> set[str]:
    """Ids of the patients these resources are about (or are)."""
    out = set()
    for resource in resources:
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            out.add(resource["id"])
            continue
        ref = subject_key(resource)
        if ref and ref.startswith("Patient/"):
            out.add(ref.removeprefix("Patient/"))
    return out


def resources_in(value: Any) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries, or the resource itself (e.g. a notification payload)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry") or ()
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    return [value]
