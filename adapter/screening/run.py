"""Screening runs: a whole source (files or a server) through the engine into a report."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from adapter.pipeline import Pipeline, Progress
from adapter.sources.export import screen_export
from adapter.sources.files import load_records
from mappings.clinical.record import PatientRecord
from mappings.clinical.units import warm_up
from mappings.criteria import CriteriaDefinition

from .engine import Screener
from .reads import ScreeningReads
from .results import PatientResult, ScreeningReport, UnmappedItem
from .unmapped import UnmappedCollector

if TYPE_CHECKING:
    from adapter.fhir.client import FhirClient

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
    client: FhirClient,
    definition: CriteriaDefinition,
    as_of: date,
    progress: Progress | None = None,
    population_group: str | None = None,
) -> ScreeningReport:
    from adapter.sources.group import group_population, not_returned
    from adapter.sources.server import ServerSource  # the HTTP stack: only for a run over a server

    warm_up()  # the unit registry is built while the server answers
    source = ServerSource(client, definition, as_of=as_of)
    group = await group_population(client, population_group) if population_group else None
    if group:
        population, records = group.patients, source.records(group.patients)
    else:
        population, records = await source.population_records()
    unmapped = UnmappedCollector(definition)
    pipeline = Pipeline(
        Screener(definition, as_of), unmapped=unmapped, progress=progress, total=len(population)
    )
    results = await pipeline.run_async(records)
    missing = len(population) - len(results)
    if missing:
        # A leukaemia Condition whose Patient the server does not return: nothing to screen, but say so.
        log.warning("patients referenced but not found", extra={"count": missing})
    log.info("server requests", extra={"requests": client.requests_sent, "bytes": client.bytes_received})
    if group:  # a member the server does not return is reported, not dropped
        not_returned(group, {r.patient.removeprefix("Patient/") for r in results})
        return report_for(definition, as_of, results, unmapped, group.method())
    return report_for(definition, as_of, results, unmapped, source.population_method)


def screen_files_spark(
    source: str,
    definition: CriteriaDefinition,
    as_of: date,
    master: str | None = None,
    *,
    all_patients: bool = False,
) -> ScreeningReport:
    """``screen_files`` for an NDJSON export, on Spark (``pip install 'trial-adapter[spark]'``): the same
    report, byte for byte."""
    from pyspark.sql import SparkSession

    from adapter.sources.spark import screen_export_spark, spark_session  # pyspark only when asked for

    ours = SparkSession.getActiveSession() is None  # inside spark-submit or a test: not ours to stop
    spark = spark_session(master)
    try:
        done = screen_export_spark(spark, source, definition, as_of, all_patients=all_patients)
    finally:
        if ours:
            spark.stop()
    return report_for(
        definition, as_of, done.results, done.unmapped, outside_population=done.outside_population
    )
