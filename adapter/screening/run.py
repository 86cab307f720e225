"""Screening runs: a whole source (files or a server) through the engine into a report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

from adapter.fhir.client import FhirClient
from adapter.fhir.parsing import fhir_problem
from adapter.sources.export import screen_export
from adapter.sources.files import SourceError, collector_paused, load_records
from adapter.sources.server import ServerSource
from mappings.clinical.record import PatientRecord, resource_key
from mappings.criteria import CriteriaDefinition

from .engine import Screener
from .reads import ScreeningReads
from .resolve import with_resolve
from .results import PatientResult, ScreeningReport, UnmappedItem
from .unmapped import UnmappedCollector

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def screen_records(
    records: Iterable[PatientRecord],
    definition: CriteriaDefinition,
    as_of: date,
    total: int = 0,
    progress: Progress | None = None,
    unmapped: UnmappedCollector | None = None,
) -> list[PatientResult]:
    screener = Screener(definition, as_of)
    results = []
    with collector_paused():
        for record in records:
            results.append(screen_checked(screener, record))
            if unmapped is not None:
                unmapped.add(record)
            if progress:
                progress(len(results), total)
    return results


def screen_checked(screener: Screener, record: PatientRecord) -> PatientResult:
    """Screen a record; if its data breaks the engine, name the resource and the FHIR problem.

    The engine reads defensively (a value of the wrong type gives ``unknown``), so a failure here means
    malformed data: only then is every resource of the record validated against the FHIR R4 model.
    """
    try:
        return with_resolve(screener, record, screener.screen(record))
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
        for resource in (record.patient, *(r for items in record.resources.values() for r in items)):
            problem = fhir_problem(resource)
            if problem:
                where = resource_key(resource) or resource.get("resourceType", "resource")
                raise SourceError(f"{where}: {problem}") from None
        raise SourceError(f"cannot screen {record.key}: unexpected data ({type(exc).__name__})") from None


def report_for(
    definition: CriteriaDefinition,
    as_of: date,
    results: list[PatientResult],
    unmapped: UnmappedCollector | None = None,
    population: str | None = None,
    outside_population: int | None = None,
) -> ScreeningReport:
    results.sort(key=lambda r: r.patient)  # stable order whatever the source's order of arrival
    report = ScreeningReport.build(definition.study, as_of, results, definition, outside_population)
    report.summary.population = population
    if unmapped is not None:
        report.summary.unmapped = [UnmappedItem.model_validate(e) for e in unmapped.entries()]
    log.info(
        "screening finished",
        extra={"screened": report.summary.screened, "candidates": report.summary.candidates},
    )
    return report


def screen_files(
    path: Path,
    definition: CriteriaDefinition,
    as_of: date,
    progress: Progress | None = None,
    *,
    all_patients: bool = False,
    workers: int | None = None,
) -> ScreeningReport:
    """A Bulk Data export (NDJSON) is screened population first (``screen_export``; every patient
    with ``all_patients``); a Bundle, small by nature, lists every patient."""
    if path.is_dir() or path.suffix == ".ndjson":
        done = screen_export(path, definition, as_of, all_patients=all_patients, workers=workers)
        if progress:
            progress(len(done.results), len(done.results))
        return report_for(
            definition, as_of, done.results, done.unmapped, outside_population=done.outside_population
        )
    reads = ScreeningReads(definition)
    builder = load_records(path, reads)
    total = len(builder.patient_keys())
    log.info("screening files", extra={"patients": total})
    unmapped = UnmappedCollector(definition, reads)
    results = screen_records(builder.records(), definition, as_of, total, progress, unmapped)
    return report_for(definition, as_of, results, unmapped)


async def screen_server(
    client: FhirClient, definition: CriteriaDefinition, as_of: date, progress: Progress | None = None
) -> ScreeningReport:
    source = ServerSource(client, definition)
    population = await source.population()
    screener = Screener(definition, as_of)
    unmapped = UnmappedCollector(definition)
    results: list[PatientResult] = []
    async for record in source.records(population):
        results.append(screen_checked(screener, record))
        unmapped.add(record)
        if progress:
            progress(len(results), len(population))
    missing = len(population) - len(results)
    if missing:
        # A leukaemia Condition whose Patient the server does not return: nothing to screen, but say so.
        log.warning("patients referenced but not found", extra={"count": missing})
    log.info("server requests", extra={"requests": client.requests_sent, "bytes": client.bytes_received})
    return report_for(definition, as_of, results, unmapped, source.population_method)
