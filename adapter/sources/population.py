"""The study population of a file export, found first: Conditions are few, so they are read first.

A patient is in the population when any of their Conditions *might* be the disease under study
(``PopulationSigns.is_sign``: the study's ``population`` section and diagnosis wording): conservative by design, because a patient outside it is counted, not
screened. Every Condition line of the export is read and checked here, exactly as the full path reads
it (same errors), whoever it is about.

``DecidingObservations`` keeps, while a patient's lines stream in, only the Observations that can
decide a result; the others are dropped before they are validated or held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from adapter.screening.reads import ScreeningReads, any_coding
from mappings.clinical.dates import day_of, effective_day
from mappings.clinical.record import normalise_reference, subject_key
from mappings.criteria import CriteriaDefinition
from mappings.kinds.diagnosis import DiagnosisClause, DiagnosisSigns
from mappings.kinds.observation import IGNORED_OBSERVATION, instant_key

from .files import parse_ndjson_line
from .ndjson_scan import chunks, lines_at

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CONDITION_START = re.compile(rb'\n\{\s*"resourceType"\s*:\s*"Condition"')  # offsets: text has \n in front
_ESCAPE = re.compile(rb"\\u")
_CONDITION_LINE = re.compile(rb'\{\s*"resourceType"\s*:\s*"Condition"')


class PopulationSigns:
    """The one question the population pass asks: might this Condition be a sign of the disease?"""

    def __init__(self, definition: CriteriaDefinition) -> None:
        diagnosis: DiagnosisClause = definition.diagnosis_clause()
        self._concepts = definition.population_concepts()
        if diagnosis.other_lineage:  # the disease of another lineage: screened (and said so), not hidden
            self._concepts.append(definition.concepts[diagnosis.other_lineage])
        # Free text that may name the disease: a Condition whose code carries it is a sign even when
        # no coding matches (the study's population.text).
        self._texts = [re.compile(p) for p in definition.population.text]
        self._signs = DiagnosisSigns(definition)  # the criteria's own wording and broader codes
        self._maps = definition.concept_maps  # a site's local codes

    def is_sign(self, condition: dict[str, Any]) -> bool:
        """True if any coding of the code or of an extension's CodeableConcept is in the diagnosis
        concept sets (matched by the concept sets themselves, so richer matching applies here
        unchanged), if its text names the disease, or if it is too malformed to tell."""
        concepts: list[Any] = [condition.get("code")]
        extensions = condition.get("extension")
        if extensions is not None:
            if not isinstance(extensions, list):
                return True
            concepts += [e.get("valueCodeableConcept") for e in extensions if isinstance(e, dict)]
        return any(self._concept_is_sign(concept) for concept in concepts)

    def patient_of(self, condition: dict[str, Any]) -> str | None:
        """The id of the patient a Condition puts in the population: a sign of the disease about a
        Patient with a valid id (another id is no valid Patient's: nobody to screen)."""
        if not self.is_sign(condition):
            return None
        key = subject_key(condition) or ""
        pid = key.removeprefix("Patient/")
        return pid if key.startswith("Patient/") and _ID.fullmatch(pid) else None

    def _concept_is_sign(self, concept: Any) -> bool:
        if concept is None:
            return False
        if not isinstance(concept, dict):
            return True
        concept = self._maps.translate_concept(concept)
        if self._signs.any_sign(concept):
            return True
        text = concept.get("text")
        if isinstance(text, str) and self._names_disease(text):
            return True
        return any_coding(concept, self._coding_is_sign)

    def _coding_is_sign(self, coding: dict[str, Any]) -> bool:
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        if not isinstance(system, str | None) or not isinstance(code, str | None):
            return True  # malformed: cannot tell
        if any(c.matches(system, code) for c in self._concepts):
            return True
        return isinstance(display, str) and self._names_disease(display)

    def _names_disease(self, text: str) -> bool:
        return any(pattern.search(text) is not None for pattern in self._texts)


def find_population(files: list[Path], reads: ScreeningReads, signs: PopulationSigns) -> list[str]:
    """Read every Condition of the export (checked as the full path checks them); the ids of the
    patients with a sign of the disease, sorted."""
    ids: set[str] = set()
    for path in files:
        for first, chunk, newlines in chunks(path):
            if b"Condition" not in chunk and b"\\u" not in chunk:
                continue
            for number, raw in lines_at(chunk, first, _condition_starts(chunk, newlines)):
                resource = parse_ndjson_line(raw, f"{path}:{number}", reads)
                if resource is None or resource["resourceType"] != "Condition":
                    continue
                pid = signs.patient_of(resource)
                if pid:
                    ids.add(pid)
    return sorted(ids)


def holds_conditions(path: Path) -> bool:
    """A file the population pass reads first: named for Conditions (Bulk Data writes one file per
    type, named by it) or starting with a Condition line. Other files are checked as they are read."""
    if path.name.startswith("Condition"):
        return True
    with path.open("rb") as handle:
        return _CONDITION_LINE.match(handle.read(256).lstrip()) is not None


def _condition_starts(chunk: bytes, newlines: int) -> list[int]:
    """Lines that are, or may be, Conditions: typed Condition, escaped, or not typed first."""
    lines = newlines + (0 if chunk.endswith(b"\n") else 1)
    if chunk.count(b'\n{"resourceType"') + chunk.startswith(b'{"resourceType"') == lines:
        # every line is typed first (a Claim naming a Condition is not one): C-speed searches only
        starts = {m.start() for m in _CONDITION_START.finditer(b"\n" + chunk)}
        starts.update(chunk.rfind(b"\n", 0, m.start()) + 1 for m in _ESCAPE.finditer(chunk))
        return sorted(starts)
    starts_list = []
    offset = 0
    for raw in chunk.splitlines(keepends=True):
        head = raw[:40]
        maybe = _CONDITION_LINE.match(head) or not head.startswith(b'{"resourceType"') or b"\\u" in raw
        if maybe and raw.strip():
            starts_list.append(offset)
        offset += len(raw)
    return starts_list


@dataclass
class DecidingObservations:
    """One patient's Observations, keeping only those that can decide a result.

    The engine judges an observation clause on the most recent dated result (on or before the as-of
    date, status not ignored) among the clause's codes, the first in record order on a tie. So for each
    criteria code only the results with its newest instant can be chosen; an older one, whose every
    criteria code has a newer result, cannot. Everything else is kept: undated, future-dated or ignored
    results, and Observations with no criteria code at the top level (e.g. one read by a component).
    """

    codes: frozenset[tuple[str, str]]
    as_of: date
    _best: dict[tuple[str, str], tuple[Any, list[Any]]] = field(default_factory=dict)
    _kept: dict[Any, tuple[dict[str, Any], str]] = field(default_factory=dict)
    _pinned: int = 0

    def add(self, seq: Any, obs: dict[str, Any], where: str) -> None:
        """``seq``: the result's place in record order (any comparable: ties go to the first)."""
        mine = self._criteria_codes(obs)
        day = effective_day(obs) if mine else None
        if not mine or _ignored(obs) or day is None or day > self.as_of:
            self._kept[seq] = (obs, where)
            self._pinned += 1
            return
        key = instant_key(obs, day)
        chosen = False
        for code in mine:
            best = self._best.get(code)
            if best is None or key > best[0]:
                self._best[code] = (key, [seq])
                chosen = True
            elif key == best[0]:
                best[1].append(seq)
                chosen = True
        if chosen:
            self._kept[seq] = (obs, where)
            if len(self._kept) > 2 * (self._pinned + len(self._best)) + 64:
                self._drop_beaten()

    def beats(self, key: Any, codes: Iterable[tuple[str, str]]) -> bool:
        """Whether, for each code, a result kept is strictly newer than ``key``: a result of those codes
        at that instant cannot decide."""
        seen = False
        for code in codes:
            best = self._best.get(code)
            if best is None or not best[0] > key:
                return False
            seen = True
        return seen

    def kept(self) -> Iterator[tuple[Any, dict[str, Any], str]]:
        self._drop_beaten()
        for seq in sorted(self._kept):
            obs, where = self._kept[seq]
            yield seq, obs, where

    def _drop_beaten(self) -> None:
        winners = {seq for _, seqs in self._best.values() for seq in seqs}
        for seq in [s for s, (obs, _) in self._kept.items() if s not in winners and self._prunable(obs)]:
            del self._kept[seq]

    def _prunable(self, obs: dict[str, Any]) -> bool:
        if not self._criteria_codes(obs) or _ignored(obs):
            return False
        day = effective_day(obs)
        return day is not None and day <= self.as_of

    def _criteria_codes(self, obs: dict[str, Any]) -> list[tuple[str, str]]:
        code = obs.get("code")
        codings = code.get("coding") if isinstance(code, dict) else None
        if not isinstance(codings, list):
            return []
        found = []
        for coding in codings:
            if isinstance(coding, dict):
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str) and (system, code) in self.codes:
                    found.append((system, code))
        return found


def _ignored(obs: dict[str, Any]) -> bool:
    """Status the engine ignores; a malformed one is kept (validation names it)."""
    status = obs.get("status")
    return not isinstance(status, str | None) or status in IGNORED_OBSERVATION


def observation_codes(definition: CriteriaDefinition) -> frozenset[tuple[str, str]]:
    return frozenset((c.system, c.code) for c in definition.observation_codes())


def population_of(resources: Iterable[dict[str, Any]], signs: PopulationSigns) -> set[str]:
    """Patient keys with a sign of the disease among parsed resources (Bundles, tests)."""
    out = set()
    for resource in resources:
        if resource.get("resourceType") == "Condition" and signs.is_sign(resource):
            key = subject_key(resource)
            if key:
                out.add(key)
    return out


class RawObservation:
    """What decides whether an Observation line can matter, read from its bytes without parsing it.

    ``facts`` answers for a plain Observation line without any backslash (no escape can hide a code or
    a date), without components or contained resources, with no date element but one
    ``effectiveDateTime``, and one patient reference, its ``subject``: the patient, the result's
    instant and the criteria (system, code) pairs whose code values it holds anywhere (a superset of its
    top-level codes). Such a line cannot decide while, for each pair, its patient has a result strictly
    newer (``DecidingObservations.beats``): the same argument as ``DecidingObservations``, on bytes.
    Anything else is parsed."""

    _START = (b'{"resourceType":"Observation",', b'{"resourceType": "Observation",')
    _UNSURE = re.compile(
        rb'"(?:contained|component|effectivePeriod|effectiveInstant|occurrenceDateTime|performedDateTime'
        rb'|performedPeriod|authoredOn|dateAsserted)"'
    )
    _EFFECTIVE = re.compile(rb'"effectiveDateTime"\s*:\s*"([^"]*)"')
    _PATIENT = re.compile(rb'Patient/([A-Za-z0-9\-.]{1,64})(?=["/])')
    _SUBJECT = re.compile(rb'"subject"\s*:\s*\{\s*"reference"\s*:\s*"([^"]*)"')

    def __init__(self, codes: frozenset[tuple[str, str]], as_of: date) -> None:
        self.as_of = as_of
        self._pairs: dict[bytes, list[tuple[str, str]]] = {}
        for system, code in codes:
            self._pairs.setdefault(code.encode(), []).append((system, code))
        values = sorted(self._pairs, key=len, reverse=True)
        self._code = re.compile(rb'"code"\s*:\s*"(' + b"|".join(re.escape(v) for v in values) + rb')"')

    def facts(self, raw: bytes) -> tuple[str, Any, list[tuple[str, str]]] | None:
        """(patient key, instant key, criteria pairs) of a dated result on or before the as-of date."""
        # cheapest tests first: most lines fail one of them
        if not raw.startswith(self._START) or b"\\" in raw or raw.count(b'"effectiveDateTime"') != 1:
            return None
        patients = set(self._PATIENT.findall(raw))
        if len(patients) != 1:
            return None
        subject = self._SUBJECT.search(raw)
        patient = f"Patient/{patients.pop().decode()}"
        if subject is None or normalise_reference(subject[1].decode()) != patient:
            return None
        values = set(self._code.findall(raw))
        if not values or self._UNSURE.search(raw):
            return None
        found = self._EFFECTIVE.search(raw)
        if found is None:
            return None
        value = found[1].decode()
        day = day_of(value)
        if day is None or day > self.as_of:
            return None
        pairs = [pair for v in values for pair in self._pairs[v]]
        return patient, instant_key({"effectiveDateTime": value}, day), pairs

    def beaten(self, raw: bytes, deciding: dict[str, DecidingObservations]) -> bool:
        """Whether a line is older, for each of its codes, than what its patient already has."""
        facts = self.facts(raw)
        if facts is None:
            return False
        mine = deciding.get(facts[0])
        return mine is not None and mine.beats(facts[1], facts[2])
