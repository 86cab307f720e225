"""Screening a Bulk Data export whose cost grows with the study population, on every core.

1. Population (``population.find_population``): the Conditions of the files that hold them (an export
   writes one file per type) are read and checked; patients with a sign of the disease form the
   population. With ``all_patients`` every Patient is screened instead.
2. The export is read once more in parts (byte ranges of its files, at line starts), one task per part
   on ``workers`` processes. A part parses only the lines that may be about the population
   (``ndjson_scan``), and within a patient keeps only the Observations that can decide
   (``DecidingObservations``). A part of another file also reads every Condition: a sign of the disease
   there (a file mixing types) adds its patient, whose lines are then read in one more pass.
3. The parts' findings are merged in export order, so records, reasons and errors are those of one
   reader, byte for byte, whatever the number of workers; then the records are screened.

Memory holds the screened patients' deciding data, never the export: a line is dropped as it is read.
"""

from __future__ import annotations

import logging
import os
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
from mappings.clinical.record import PatientRecord
from mappings.clinical.units import ready, warm_up
from mappings.criteria import CriteriaDefinition

from .export_part import Doubt, Found, Part, PartReader, Scan
from .files import SourceError, check_resource, ndjson_files
from .ndjson_scan import line_ranges
from .population import (
    DecidingObservations,
    PopulationSigns,
    find_population,
    holds_conditions,
    observation_codes,
)

log = logging.getLogger(__name__)

#: A file bigger than this is read in several parts when several workers read the export.
PART_BYTES = 32 << 20
#: Parts per worker for a big file: the population's lines need not be spread evenly.
PARTS_PER_WORKER = 2


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass
class ExportResults:
    results: list[PatientResult]
    outside_population: int | None  # None with all_patients
    unmapped: UnmappedCollector  # terminology gaps seen on the screened patients


_SCAN: Scan | None = None
_SCREENING: tuple[list[PatientRecord], CriteriaDefinition, date] | None = None
#: Fewer records than this per worker are screened in one process (a fork costs more).
SCREEN_PER_WORKER = 250


def screen_export(
    path: Path,
    definition: CriteriaDefinition,
    as_of: date,
    *,
    all_patients: bool = False,
    workers: int | None = None,
) -> ExportResults:
    files = ndjson_files(path)
    if workers is None:  # every core, unless the export is too small to be worth a second process
        small = sum(f.stat().st_size for f in files) < PART_BYTES
        workers = 1 if small else default_workers()
    with collector_paused():
        ids: frozenset[str] | None = None
        read_first: list[Path] = []
        if not all_patients:
            read_first = [f for f in files if holds_conditions(f)]
            signs = PopulationSigns(definition)
            ids = frozenset(find_population(read_first, ScreeningReads(definition), signs))
            log.info("screening population found", extra={"patients": len(ids)})
        conditions = None if all_patients else [f not in read_first for f in files]
        parts = _parts(files, workers, conditions)
        scan = Scan(definition, as_of, ids)
        found = _read(parts, scan, workers)
        patient_lines = sum(f.patient_lines for f in found)
        records = _merge(parts, found, scan)
        late = frozenset().union(*(f.late for f in found))
        if late:  # signs of the disease in a file mixing types: read those patients' lines too
            log.info("screening population grew", extra={"patients": len(late)})
            again = _parts(files, workers, conditions=None)
            scan = Scan(definition, as_of, late)
            records += _merge(again, _read(again, scan, workers), scan)
        results, gaps = _screen(records, definition, as_of, workers)
    results.sort(key=lambda r: r.patient)
    outside = None if all_patients else max(0, patient_lines - len(results))
    return ExportResults(results, outside, gaps)


def _parts(files: list[Path], workers: int, conditions: list[bool] | None) -> list[Part]:
    """The export in parts, in export order: a big file in several when several workers read it."""
    parts = []
    for n, path in enumerate(files):
        pieces = 1
        if workers > 1:
            pieces = min(workers * PARTS_PER_WORKER, max(1, path.stat().st_size // PART_BYTES))
        for start, end in line_ranges(path, pieces):
            parts.append(Part(path, start, end, bool(conditions and conditions[n])))
    return parts


def _read(parts: list[Part], scan: Scan, workers: int) -> list[Found]:
    global _SCAN
    _SCAN = scan
    try:
        if workers == 1 or len(parts) == 1:
            return [_read_part(part) for part in parts]
        # fork: the workers inherit the loaded criteria, modules and _SCAN instead of rebuilding them
        with ProcessPoolExecutor(min(workers, len(parts)), mp_context=get_context("fork")) as pool:
            found = pool.map(_read_part, parts)  # (every worker is forked by now)
            building = warm_up() if scan.patient_ids is None or scan.patient_ids else None
            done = list(found)  # reading converts no unit: the registry is built while the workers read
            if building is not None:
                building.join()  # no thread alive at the next fork
            return done
    finally:
        _SCAN = None


def _read_part(part: Part) -> Found:
    assert _SCAN is not None
    return PartReader(_SCAN, part).read()


def _screen(
    records: list[PatientRecord], definition: CriteriaDefinition, as_of: date, workers: int
) -> tuple[list[PatientResult], UnmappedCollector]:
    """Every record's result; on several workers (forked: they inherit the records) when many."""
    global _SCREENING
    gaps = UnmappedCollector(definition)
    workers = min(workers, len(records) // SCREEN_PER_WORKER)
    if workers <= 1:
        return Pipeline(Screener(definition, as_of), unmapped=gaps).run(records), gaps
    ready()  # the workers inherit the unit registry built
    _SCREENING = (records, definition, as_of)
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            shares = list(pool.map(_screen_share, [(k, workers) for k in range(workers)]))
    finally:
        _SCREENING = None
    results = []
    for share, findings in shares:
        results += share
        gaps.absorb(findings)
    return results, gaps


def _screen_share(share: tuple[int, int]) -> tuple[list[PatientResult], dict[tuple[Any, ...], Any]]:
    """One worker's contiguous share of the records: their results and terminology gaps."""
    assert _SCREENING is not None
    records, definition, as_of = _SCREENING
    k, workers = share
    size = -(-len(records) // workers)
    gaps = UnmappedCollector(definition)
    results = Pipeline(Screener(definition, as_of), unmapped=gaps).run(records[k * size : (k + 1) * size])
    return results, gaps.findings()


def _merge(parts: list[Part], found: list[Found], scan: Scan) -> list[PatientRecord]:
    """The parts' findings as one reader's records, in export order. Raised here, the first in
    export order: an error of a line, then a broken line that may decide, then a used result that is
    not valid FHIR; lines counted from the start of their file."""
    bases: list[int] = []
    for n, part in enumerate(parts):
        same_file = n > 0 and part.path == parts[n - 1].path
        bases.append(bases[-1] + found[n - 1].newlines if same_file else 0)
    for part, base, one in zip(parts, bases, found, strict=True):
        if one.error is not None:
            raise SourceError(_shifted(one.error, one.error_where, part.path, base))
    patients: dict[str, dict[str, Any]] = {}
    medications: dict[str, dict[str, Any]] = {}
    resources: dict[str, dict[str, list[tuple[tuple[int, int], dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    deciding: dict[str, DecidingObservations] = {}
    doubts: list[tuple[tuple[int, int], str, Doubt]] = []
    reads = ScreeningReads(scan.definition)
    codes = observation_codes(scan.definition)
    for n, (part, base, one) in enumerate(zip(parts, bases, found, strict=True)):
        patients.update(one.patients)
        medications.update(one.medications)
        for key, by_type in one.resources.items():
            for rtype, items in by_type.items():
                resources[key][rtype] += [((n, seq), resource) for seq, resource in items]
        for key, results in one.observations.items():
            mine = deciding.get(key)
            if mine is None:
                mine = deciding[key] = DecidingObservations(codes, scan.as_of)
            for seq, obs, where in results:
                mine.add((n, seq), obs, _shifted(where, where, part.path, base))
        for key, broken in one.doubts.items():
            doubts += [((n, d.seq), key, d) for d in broken]
    for (n, _), key, doubt in sorted(doubts, key=lambda item: item[0]):
        mine = deciding.get(key)
        if mine is None or not mine.beats(doubt.key, doubt.codes):
            raise SourceError(_shifted(doubt.message, doubt.where, parts[n].path, bases[n]))
    records = []
    for key, patient in patients.items():
        grouped = resources.pop(key, {})
        kept = deciding.pop(key, None)
        if kept is not None:
            observations = grouped.setdefault("Observation", [])
            for seq, obs, where in kept.kept():
                check_resource(obs, where, reads)  # validate what is used
                observations.append((seq, obs))
        # record order: a part settles a patient's pending results after the lines read later
        listed = {
            rtype: [r for _, r in sorted(items, key=lambda i: i[0])] for rtype, items in grouped.items()
        }
        records.append(
            PatientRecord(
                key=key, patient=patient, resources=defaultdict(list, listed), medications=medications
            )
        )
    return records


def _shifted(text: str, where: str, path: Path, base: int) -> str:
    """``text`` starting with ``where`` (``path:N``, N counted from a part's start), with N counted from
    its file's start."""
    prefix = f"{path}:"
    if not base or not where.startswith(prefix) or not where[len(prefix) :].isdigit():
        return text
    return f"{prefix}{int(where[len(prefix) :]) + base}{text[len(where) :]}"
