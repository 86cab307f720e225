"""Screening runs: a whole source (files or a server) through the engine into a report."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from adapter.fhir.client import FhirClient
from adapter.pipeline import Pipeline, Progress
from adapter.sources.export import screen_export
from adapter.sources.files import load_records
from adapter.sources.server import ServerSource
from mappings.clinical.record import PatientRecord
from mappings.criteria import CriteriaDefinition

from .engine import Screener
from .reads import ScreeningReads
from .results import PatientResult, ScreeningReport, UnmappedItem
from .unmapped import UnmappedCollector

log = logging.getLogger(__name__)

__all__ = ["Progress", "report_for", "screen_files", "screen_records", "screen_server"]


def screen_records(
    records: Iterable[PatientRecord],
    definition: CriteriaDefinition,
    as_of: date,
    total: int = 0,
    progress: Progress | None = None,
    unmapped: UnmappedCollector | None = None,
) -> list[PatientResult]:
    """Every record's result (``Pipeline``: a record that cannot be screened is an ``error``)."""
    pipeline = Pipeline(Screener(definition, as_of), unmapped=unmapped, progress=progress, total=total)
    return pipeline.run(records)


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
        extra={
            "screened": report.summary.screened,
            "candidates": report.summary.candidates,
            "errors": report.summary.errors or 0,
        },
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
    source = ServerSource(client, definition, as_of=as_of)
    population = await source.population()
    unmapped = UnmappedCollector(definition)
    pipeline = Pipeline(
        Screener(definition, as_of), unmapped=unmapped, progress=progress, total=len(population)
    )
    results = await pipeline.run_async(source.records(population))
    missing = len(population) - len(results)
    if missing:
        # A leukaemia Condition whose Patient the server does not return: nothing to screen, but say so.
        log.warning("patients referenced but not found", extra={"count": missing})
    log.info("server requests", extra={"requests": client.requests_sent, "bytes": client.bytes_received})
    return report_for(definition, as_of, results, unmapped, source.population_method)
