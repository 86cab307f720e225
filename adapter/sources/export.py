"""Screening a Bulk Data export whose cost grows with the study population, on every core.

1. Population (``population.find_population``): every Condition is read and checked; patients with a
   sign of the disease form the population. With ``all_patients`` every Patient is screened instead.
2. Each worker takes a share of those patients (by a stable hash of the id) and reads every file once
   more, parsing only the lines that may be about its patients (``ndjson_scan``); within a patient only
   the Observations that can decide are kept and validated (``DecidingObservations``).
3. Results come back sorted by patient, so the report is byte-identical for any number of workers.

Memory holds the screened patients' deciding data, never the export: a line is dropped as it is read.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from adapter.collector import collector_paused
from adapter.pipeline import Pipeline
from adapter.screening.engine import Screener
from adapter.screening.reads import ScreeningReads
from adapter.screening.results import PatientResult
from adapter.screening.unmapped import UnmappedCollector
from mappings.clinical.record import PatientRecord, normalise_reference, resource_key
from mappings.clinical.resource_types import SUBJECT_ELEMENT
from mappings.clinical.units import convert
from mappings.criteria import CriteriaDefinition

from .files import SourceError, check_resource, ndjson_files, parse_ndjson_line
from .ndjson_scan import LineFilter, chunks, lines_at
from .population import (
    DecidingObservations,
    PopulationSigns,
    RawBeaten,
    find_population,
    observation_codes,
)

log = logging.getLogger(__name__)


PATIENTS_PER_WORKER = 200


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def owner(patient_id: str, workers: int) -> int:
    """The worker that screens a patient: stable across runs and processes."""
    return zlib.crc32(patient_id.encode()) % workers


@dataclass
class ExportResults:
    results: list[PatientResult]
    outside_population: int | None  # None with all_patients
    unmapped: UnmappedCollector  # terminology gaps seen on the screened patients, every worker's


@dataclass(frozen=True)
class _Job:
    files: tuple[Path, ...]
    definition: CriteriaDefinition
    as_of: date
    patient_ids: frozenset[str] | None  # None: every patient of the export
    share: int
    workers: int


def screen_export(
    path: Path,
    definition: CriteriaDefinition,
    as_of: date,
    *,
    all_patients: bool = False,
    workers: int | None = None,
) -> ExportResults:
    files = tuple(ndjson_files(path))
    asked = workers
    with collector_paused():
        ids: frozenset[str] | None = None
        if not all_patients:
            ids = frozenset(
                find_population(list(files), ScreeningReads(definition), PopulationSigns(definition))
            )
            log.info("screening population found", extra={"patients": len(ids)})
        # Every worker reads the whole export for its share of the patients: by default, only as many
        # workers as the population keeps busy (one per PATIENTS_PER_WORKER), so a small population is
        # not paid for with one extra scan per core.
        workers = max(1, asked or default_workers())
        if asked is None and ids is not None:
            workers = min(workers, max(1, len(ids) // PATIENTS_PER_WORKER))
        jobs = [_Job(files, definition, as_of, ids, share, workers) for share in range(workers)]
        if workers == 1:
            shares = [_screen_share(jobs[0])]
        else:
            if ids is None or ids:
                convert(1.0, "mg/dL", "umol/L", 113.12)  # build the UCUM registry (~1 s) once, before forking
            # fork: the workers inherit the loaded criteria and modules instead of importing them again
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                shares = list(pool.map(_screen_share, jobs))
    results = [result for share, _, _ in shares for result in share]
    results.sort(key=lambda r: r.patient)
    outside = None if all_patients else max(0, shares[0][1] - len(results))
    unmapped = UnmappedCollector(definition)
    for _, _, gaps in shares:
        unmapped.absorb(gaps)
    return ExportResults(results, outside, unmapped)


def _screen_share(job: _Job) -> tuple[list[PatientResult], int, dict[tuple[Any, ...], Any]]:
    """One worker: read the export for its patients, then screen them. Also: Patient lines seen, and
    the terminology gaps on its patients' records."""
    with collector_paused():
        collector = _Collector(job)
        records = collector.collect()
        gaps = UnmappedCollector(job.definition)
        results = Pipeline(Screener(job.definition, job.as_of), unmapped=gaps).run(records)
        return results, collector.filter.patient_lines, gaps.findings()


class _Collector:
    def __init__(self, job: _Job) -> None:
        self.job = job
        self.reads = ScreeningReads(job.definition)
        mine = job.patient_ids
        if mine is not None and job.workers > 1:
            mine = frozenset(p for p in mine if owner(p, job.workers) == job.share)
        if mine is not None or job.workers == 1:
            # all patients on one worker: every line is wanted (and read as the full path reads it)
            self.filter = LineFilter(mine)
        else:
            self.filter = LineFilter(None, owns=lambda pid: owner(pid, job.workers) == job.share)
        self.codes = observation_codes(job.definition)
        self.patients: dict[str, dict[str, Any]] = {}
        self.medications: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.observations: dict[str, DecidingObservations] = {}
        self.beaten = RawBeaten(self.codes, job.as_of)
        self.seq = 0

    def _mine(self, key: str) -> bool:
        """Whether this worker screens the patient ``Patient/<id>``."""
        pid = key.removeprefix("Patient/")
        ids = self.job.patient_ids
        if ids is not None and pid not in ids:
            return False
        return self.job.workers == 1 or owner(pid, self.job.workers) == self.job.share

    def collect(self) -> list[PatientRecord]:
        for path in self.job.files:
            try:
                for first, chunk, newlines in chunks(path):
                    for number, raw in lines_at(chunk, first, self.filter.wanted_starts(chunk, newlines)):
                        self._line(raw, f"{path}:{number}")
            except OSError as exc:
                raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
        return self._records()

    def _line(self, raw: bytes, where: str) -> None:
        if self.reads.skippable_line(raw):
            return  # a resource no criterion reads (as the full path skips it)
        if self.observations and self.beaten.beaten(raw, self.observations):
            return  # older than what its patient already has for each of its codes
        resource = parse_ndjson_line(raw, where, self.reads, defer=True, skip_unread=False)
        if resource is None:
            return
        rtype = resource["resourceType"]
        key = resource_key(resource)
        if rtype == "Patient":
            if key and self._mine(key):
                self.patients[key] = resource
            return
        if rtype == "Medication":
            if key:
                self.medications[key] = resource
            return
        element = SUBJECT_ELEMENT.get(rtype)
        if element is None:
            return
        subject = resource.get(element)
        ref = subject.get("reference") if isinstance(subject, dict) else None
        patient = normalise_reference(ref) if isinstance(ref, str) else None
        if not patient or not self._mine(patient):
            if rtype == "Observation":
                check_resource(resource, where, self.reads)  # as the full path does for every line read
            return
        self.seq += 1
        if rtype == "Observation" and self.reads.reads(resource):
            deciding = self.observations.get(patient)
            if deciding is None:
                deciding = self.observations[patient] = DecidingObservations(self.codes, self.job.as_of)
            deciding.add(self.seq, resource, where)
        else:
            self.resources[patient][rtype].append((self.seq, resource))

    def _records(self) -> list[PatientRecord]:
        records = []
        for key, patient in self.patients.items():
            grouped = self.resources.pop(key, {})
            deciding = self.observations.pop(key, None)
            if deciding is not None:
                observations = grouped.setdefault("Observation", [])
                for seq, obs, where in deciding.kept():
                    check_resource(obs, where, self.reads)  # validate what is used
                    observations.append((seq, obs))
                observations.sort(key=lambda item: item[0])
            resources: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for rtype, items in grouped.items():
                resources[rtype] = [resource for _, resource in items]
            records.append(
                PatientRecord(key=key, patient=patient, resources=resources, medications=self.medications)
            )
        return records
