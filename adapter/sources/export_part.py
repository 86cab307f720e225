"""One part of a Bulk Data export (a byte range of one file), read by one task of ``export``.

A part parses only the lines that may be about the patients screened (``ndjson_scan.LineFilter``).
A plain, dated Observation line of such a patient is not parsed as it is read: its raw facts
(``RawObservation``) are kept, and at the end (or when they fill ``PENDING_BYTES``) each patient's are
parsed newest first, each only if no strictly newer result already settles every code it may carry.
So a long history costs a byte scan per result, whatever its order in the file, and a patient's
record holds what can decide.

A part never raises for a line: it stops at the first *error* (a line every reader must parse), and
a pending line that turns out broken is a *doubt*, raised by the merge only if no newer result of
the whole export settles its codes. Both carry the line counted from the part's start; the merge
counts it from the file's start, so errors are the same for any number of parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from adapter.collector import collector_paused
from adapter.screening.reads import ScreeningReads
from mappings.clinical.record import resource_key, subject_key
from mappings.clinical.resource_types import SUBJECT_ELEMENT
from mappings.criteria import CriteriaDefinition

from .files import SourceError, check_resource, parse_ndjson_line
from .ndjson_scan import LineFilter, chunks, lines_at
from .population import (
    DecidingObservations,
    PopulationSigns,
    RawObservation,
    observation_codes,
)

#: Raw Observation lines held per part before the patient holding most of them is settled.
PENDING_BYTES = 64 << 20


@dataclass(frozen=True)
class Part:
    """A byte range of one file (at line starts)."""

    path: Path
    start: int
    end: int
    conditions: bool  # read every Condition too: a file the population pass did not read


@dataclass(frozen=True)
class Scan:
    """What every part of one pass shares."""

    definition: CriteriaDefinition
    as_of: date
    patient_ids: frozenset[str] | None  # None: every patient of the export


@dataclass(frozen=True)
class Doubt:
    """A pending line that could not be parsed: an error unless newer results settle its codes."""

    seq: int
    key: Any
    codes: list[tuple[str, str]]
    where: str
    message: str


@dataclass
class Found:
    """What one part found, merged by ``export`` in export order."""

    newlines: int = 0
    patient_lines: int = 0  # Patient lines seen typed first (to count those not screened)
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = field(default_factory=dict)
    observations: dict[str, list[tuple[int, dict[str, Any], str]]] = field(default_factory=dict)
    doubts: dict[str, list[Doubt]] = field(default_factory=dict)
    late: set[str] = field(default_factory=set)  # outside the population, with a sign of the disease
    error: str | None = None  # the first error, at ``error_where``
    error_where: str = ""


_Pending = tuple[Any, int, bytes, str, list[tuple[str, str]]]  # instant key, seq, line, where, codes


class PartReader:
    def __init__(self, scan: Scan, part: Part) -> None:
        self.scan = scan
        self.part = part
        self.reads = ScreeningReads(scan.definition)
        self.filter = LineFilter(scan.patient_ids, conditions=part.conditions, coded=self.reads.criteria_code)
        self.signs = PopulationSigns(scan.definition) if part.conditions else None
        self.codes = observation_codes(scan.definition)
        self.raw = RawObservation(self.codes, scan.as_of)
        self.found = Found()
        self.observations: dict[str, DecidingObservations] = {}
        self.pending: dict[str, list[_Pending]] = {}
        self.pending_bytes = 0
        self.seq = 0

    def read(self) -> Found:
        """The part's findings; an error stops the reading and is returned, never raised."""
        with collector_paused():
            try:
                self._read()
            except SourceError as exc:
                self.found.error = str(exc)
            return self.found

    def _read(self) -> None:
        part = self.part
        try:
            for first, chunk, newlines in chunks(part.path, start=part.start, end=part.end):
                for number, raw in lines_at(chunk, first, self.filter.wanted_starts(chunk, newlines)):
                    self.found.error_where = where = f"{part.path}:{number}"
                    self._line(raw, where)
                self.found.newlines += newlines
        except OSError as exc:
            self.found.error_where = str(part.path)
            raise SourceError(f"{part.path}: cannot read: {exc.strerror}") from None
        for patient in list(self.pending):
            self._settle(patient)
        self.found.patient_lines = self.filter.patient_lines
        self.found.observations = {key: list(d.kept()) for key, d in self.observations.items()}

    def _mine(self, key: str) -> bool:
        """Whether this pass screens the patient ``Patient/<id>``."""
        ids = self.scan.patient_ids
        return ids is None or key.removeprefix("Patient/") in ids

    def _line(self, raw: bytes, where: str) -> None:
        if self.reads.skippable_line(raw):
            return  # a resource no criterion reads (as the full path skips it)
        facts = self.raw.facts(raw)
        if facts is not None and self._mine(facts[0]):
            patient, key, codes = facts
            deciding = self.observations.get(patient)
            if deciding is not None and deciding.beats(key, codes):
                return  # older than what its patient already has for each of its codes
            self.seq += 1
            self.pending.setdefault(patient, []).append((key, self.seq, raw, where, codes))
            self.pending_bytes += len(raw)
            if self.pending_bytes > PENDING_BYTES:
                self._settle(max(self.pending, key=lambda p: len(self.pending[p])))
            return
        self.seq += 1
        resource = parse_ndjson_line(raw, where, self.reads, defer=True, skip_unread=False)
        if resource is not None:
            self._resource(resource, where, self.seq)

    def _resource(self, resource: dict[str, Any], where: str, seq: int) -> None:
        rtype = resource["resourceType"]
        key = resource_key(resource)
        if rtype == "Patient":
            if key and self._mine(key):
                self.found.patients[key] = resource
            return
        if rtype == "Medication":
            if key:
                self.found.medications[key] = resource
            return
        if rtype not in SUBJECT_ELEMENT:
            return
        patient = subject_key(resource)
        if not patient or not self._mine(patient):
            if rtype == "Observation":
                check_resource(resource, where, self.reads)  # as the full path does for every line read
            elif rtype == "Condition" and self.signs is not None:
                late = self.signs.patient_of(resource)
                if late:
                    self.found.late.add(late)
            return
        if rtype == "Observation" and self.reads.reads(resource):
            deciding = self.observations.get(patient)
            if deciding is None:
                deciding = self.observations[patient] = DecidingObservations(self.codes, self.scan.as_of)
            deciding.add(seq, resource, where)
        else:
            by_type = self.found.resources.setdefault(patient, {})
            by_type.setdefault(rtype, []).append((seq, resource))

    def _settle(self, patient: str) -> None:
        """Parse a patient's pending lines newest first, each only if it may still decide."""
        lines = self.pending.pop(patient)
        self.pending_bytes -= sum(len(raw) for _, _, raw, _, _ in lines)
        lines.sort(key=lambda line: line[0], reverse=True)
        for key, seq, raw, where, codes in lines:
            self.found.error_where = where
            deciding = self.observations.get(patient)
            if deciding is not None and deciding.beats(key, codes):
                continue
            try:
                resource = parse_ndjson_line(raw, where, self.reads, defer=True, skip_unread=False)
            except SourceError as exc:
                self.found.doubts.setdefault(patient, []).append(Doubt(seq, key, codes, where, str(exc)))
                continue
            if resource is not None:
                self._resource(resource, where, seq)
