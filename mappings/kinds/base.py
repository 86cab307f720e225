"""What every criterion kind shares: the clause base, the outcome, the evaluation context and the
kind's entry in the registry (``Kind``).

A kind module (``mappings/kinds/<kind>.py``) holds one kind whole: its schema (a ``Clause``), its
evaluation, what it reads and how it is published as a Group characteristic. ``registry`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import model_validator

from mappings.clinical.dates import day_of
from mappings.clinical.record import PatientRecord, resource_key
from mappings.clinical.signs import Wording
from mappings.clinical.tri import MET, UNKNOWN, Tri
from mappings.concepts import Analyte, ConceptSet, Model, Result
from mappings.terminology.conceptmap import ConceptMaps, translated_from


class Clause(Model):
    """What every clause may say: a label, and a sex gate with the result for the other sex."""

    if TYPE_CHECKING:
        kind: str  # each kind's schema declares its own Literal (the union's discriminator)

    label: str | None = None
    only_for_sex: Literal["female", "male"] | None = None
    otherwise: Result | None = None

    @model_validator(mode="after")
    def _sex_gate_has_fallback(self) -> Clause:
        if self.only_for_sex and self.otherwise is None:
            raise ValueError("only_for_sex needs `otherwise` (the result for the other sex)")
        return self

    def concept_names(self) -> Iterator[str]:
        return iter(())


@dataclass(frozen=True)
class Outcome:
    result: Tri
    reason: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reads:
    """What a clause reads: resource types, concept sets read by their exact codes (Observations), the
    wording it looks for (text signals) and its window. Sources use it to skip what nothing reads."""

    resource_types: tuple[str, ...] = ()
    exact_concepts: tuple[str, ...] = ()
    text_signals: tuple[str, ...] = ()
    window_days: int | None = None
    window_years: int | None = None
    patient: bool = False  # the answer depends on the Patient resource itself


class Definitions(Protocol):
    """The part of a criteria definition a kind reads (the loader's ``CriteriaDefinition``)."""

    @property
    def concepts(self) -> Mapping[str, ConceptSet]: ...
    @property
    def analytes(self) -> Mapping[str, Analyte]: ...
    @property
    def systems(self) -> Mapping[str, str]: ...
    @property
    def manual_review_reason(self) -> str: ...
    @property
    def concept_maps(self) -> ConceptMaps: ...
    def concept(self, name: str) -> ConceptSet: ...


Characteristic = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """One criterion kind, whole. ``characteristic`` gives (code, {value[x]: ...}) of a Group
    characteristic; a combination has none (its leaves are published)."""

    name: str
    schema: type[Clause]
    evaluate: Callable[[Any, Context, PatientRecord], Outcome]
    reads: Callable[[Any], Reads]
    characteristic: Callable[[Any, Definitions], Characteristic] | None
    combination: bool = False


_IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
# A suspected diagnosis is a reason to look, not a fact: it makes a criterion unknown, never met.
_SUSPECTED_VERIFICATION = {"provisional", "differential", "unconfirmed"}


@dataclass
class Context:
    """What an evaluation reads beyond the record: the as-of date, the definition and caches shared by
    the kinds (worked out once per screener or once per record)."""

    definition: Definitions
    as_of: date
    # Set by the screener: how a combination evaluates its children (sex gate and dispatch included).
    evaluate: Callable[[Any, PatientRecord], Outcome] = field(repr=False)
    concepts: Mapping[str, ConceptSet] = field(init=False, repr=False)
    maps: ConceptMaps = field(init=False, repr=False)
    # Each concept set's exact (system, code) pairs: Observations are looked up by them.
    exact_codes: dict[str, list[tuple[str, str]]] = field(init=False, repr=False)
    _usable_conditions: tuple[PatientRecord, list[dict[str, Any]]] | None = field(default=None, repr=False)
    _wordings: dict[tuple[str, ...], Wording] = field(default_factory=dict, repr=False)
    _shared: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.concepts = self.definition.concepts
        self.maps = self.definition.concept_maps
        self.exact_codes = {
            name: [(c.system, c.code) for c in concept.codes] for name, concept in self.concepts.items()
        }

    def new_record(self) -> None:
        self._usable_conditions = None

    def shared(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """A value a kind builds once per screener (a diagnosis clause's signs)."""
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = build()
        return found

    def wording(self, patterns: tuple[str, ...]) -> Wording:
        found = self._wordings.get(patterns)
        if found is None:
            found = self._wordings[patterns] = Wording(patterns)
        return found

    def conditions(self, record: PatientRecord) -> list[dict[str, Any]]:
        """The record's Conditions that count (worked out once per record, read by many criteria)."""
        cached = self._usable_conditions
        if cached is not None and cached[0] is record:
            return cached[1]
        usable = []
        for condition in record.of_type("Condition"):
            if status_code(condition.get("verificationStatus")) in _IGNORED_VERIFICATION:
                continue
            onset = day_of(condition.get("onsetDateTime")) or day_of(condition.get("recordedDate"))
            if onset is not None and onset > self.as_of:
                continue  # future-dated
            usable.append(condition)
        self._usable_conditions = (record, usable)
        return usable


# --- helpers the kinds share ---------------------------------------------------------------------


def ref(resource: dict[str, Any]) -> str:
    return resource_key(resource) or f"{resource.get('resourceType')}/(no id)"


def code_of(resource: dict[str, Any], element: str = "code") -> dict[str, Any]:
    return resource.get(element) or {}


def status_code(concept: dict[str, Any] | None) -> str | None:
    for coding in (concept or {}).get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return None


def suspected(condition: dict[str, Any]) -> bool:
    return status_code(condition.get("verificationStatus")) in _SUSPECTED_VERIFICATION


def verification(condition: dict[str, Any]) -> str:
    return status_code(condition.get("verificationStatus")) or "unconfirmed"


def via(found: list[dict[str, Any]], *sets: ConceptSet, element: str = "code") -> str:
    """Where a match came through a site's ConceptMap: which local code, which map."""
    for resource in found:
        for coding in code_of(resource, element).get("coding") or ():
            local = translated_from(coding)
            if local and any(s.matches_coding(coding) for s in sets):
                return f" (local code {local})"
    return ""


def presence(
    label: str | None, when_absent: Tri, present: list[dict[str, Any]], uncertain: list[dict[str, Any]]
) -> Outcome:
    what = label or "matching record"
    if present:
        return Outcome(MET, f"{what} on record", tuple(map(ref, present)))
    if uncertain:
        return Outcome(UNKNOWN, f"{what}: record with unclear date", tuple(map(ref, uncertain)))
    return Outcome(when_absent, "no matching record")
