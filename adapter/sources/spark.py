"""Screening a Bulk Data export on Apache Spark: the files path's rules, distributed by patient.

The same three steps as ``export.screen_export``, each a Spark stage:

1. Population: the JVM keeps only the lines that are, or may be, Conditions (typed Condition, not typed
   first, or escaped: ``population._condition_starts``' rule); Python parses and checks them and asks
   ``PopulationSigns``. The population's ids go to every executor (a broadcast).
2. Lines: the JVM drops plain lines naming only other patients (``_others_line``); Python applies the
   rest of ``LineFilter.wanted_line`` and ``skippable_line``, parses and checks the wanted lines and
   keys them by the patient they are about (the subject / patient reference, as the files path keys
   them). Medications are collected and broadcast.
3. Patients: ``groupByKey`` brings a patient's resources together; the record is built as the files
   path builds it (resources in export order, only the ``DecidingObservations``) and screened by the
   one ``Pipeline`` (a record that breaks the engine is that patient's ``error``, as in-process).

Why RDDs and not ``mapInPandas``: the data are nested FHIR JSON, screened as Python dicts; a pandas /
Arrow frame would hold them as JSON strings anyway and add pandas and pyarrow to the cluster's needs.
The shuffle carries only the population's wanted resources (parsed dicts), never the export.

Errors are data, not task failures: every stage returns the problems it met with their position in
the export, and the driver raises the first one (export order, as the files path meets them) with the
same message, naming the file and line (a count of the lines before it, made only then).
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from adapter.screening.reads import ScreeningReads
from adapter.screening.unmapped import UnmappedCollector
from mappings.clinical.record import PatientRecord, resource_key, subject_key
from mappings.clinical.resource_types import SUBJECT_ELEMENT
from mappings.criteria import CriteriaDefinition

from .export import ExportResults
from .files import SourceError, check_resource, ndjson_files, parse_ndjson_line
from .ndjson_scan import LineFilter
from .population import DecidingObservations, PopulationSigns, observation_codes

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

Order = tuple[int, int, int]  # (file index, split start, row id): the export's order of lines
_WHERE = "@"  # placeholder location in messages; the driver writes "file:line" for it
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PATIENT_TYPE = re.compile(rb'\{"resourceType": ?"Patient",')


@dataclass(frozen=True)
class _Context:
    definition: CriteriaDefinition
    as_of: date
    ids: frozenset[str] | None  # the population; None: every patient


def spark_session(master: str | None = None) -> SparkSession:
    """The session to run on: ``master``; without it, the one ``spark-submit`` configured, else
    ``local[*]``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SourceError("--engine spark needs pyspark: pip install 'trial-adapter[spark]'") from None
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
        master = "local[*]"
    builder = SparkSession.builder.appName("trial-adapter screen")
    if master is not None:
        builder = builder.master(master)
    if master is not None and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers see this environment's packages
    try:
        spark = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    except Exception as exc:  # no Java, a master that does not answer: one line, not a JVM trace
        where = master or "spark-submit"
        raise SourceError(f"cannot start Spark ({where}): {type(exc).__name__}: {str(exc)[:200]}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def export_files(spark: SparkSession, source: str) -> list[tuple[str, str]]:
    """(URI Spark reads, name used in messages) for each NDJSON file, in the files path's order."""
    if not _SCHEME.match(source) or source.startswith("file:"):
        local = Path(source.removeprefix("file://"))
        return [(str(p.resolve()), str(p)) for p in ndjson_files(local)]
    jvm: Any = spark.sparkContext._jvm  # Hadoop's FileSystem lists what Spark will read
    jsc: Any = spark.sparkContext._jsc
    path = jvm.org.apache.hadoop.fs.Path(source)
    fs = path.getFileSystem(jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise SourceError(f"{source}: no such file or directory")
    if not fs.getFileStatus(path).isDirectory():
        return [(source, source)]
    uris = sorted(
        str(s.getPath().toString())
        for s in fs.listStatus(path)
        if str(s.getPath().getName()).endswith(".ndjson")
    )
    if not uris:
        raise SourceError(f"{source}: no .ndjson files (expected a Bulk Data export directory)")
    return [(u, u) for u in uris]


def screen_export_spark(
    spark: SparkSession,
    source: str,
    definition: CriteriaDefinition,
    as_of: date,
    *,
    all_patients: bool = False,
) -> ExportResults:
    from pyspark import StorageLevel

    files = export_files(spark, source)
    lines = _lines(spark, files)
    sc = spark.sparkContext
    ids: frozenset[str] | None = None
    if not all_patients:
        maybe = lines.filter(_maybe_condition())
        found = _rows(maybe, files).mapPartitions(_population_part(definition)).collect()
        _raise_first(spark, lines, files, [f for f in found if f[0] == "E"])
        ids = frozenset(pid for kind, _, pid in found if kind == "P")
    context = sc.broadcast(_Context(definition, as_of, ids))
    wanted = lines if ids is None else lines.filter(~_others_line(ids))
    parsed = _rows(wanted, files).mapPartitions(_line_part(context)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        small = parsed.filter(lambda item: item[0] != "R").collect()
        _raise_first(spark, lines, files, [item for item in small if item[0] == "E"])
        patient_lines = sum(item[2] for item in small if item[0] == "N")
        medications: dict[str, dict[str, Any]] = {}
        for _, _order, key, resource in sorted((i for i in small if i[0] == "M"), key=lambda i: i[1]):
            medications[key] = resource
        shared = sc.broadcast(medications)
        grouped = parsed.filter(lambda item: item[0] == "R").map(lambda item: (item[2], (item[1], item[3])))
        screened = grouped.groupByKey().mapPartitions(_patient_part(context, shared)).collect()
    finally:
        parsed.unpersist()
    _raise_first(spark, lines, files, [item for item in screened if item[0] == "E"])
    results = sorted((item[2] for item in screened if item[0] == "S"), key=lambda r: r.patient)
    unmapped = UnmappedCollector(definition)
    for item in screened:
        if item[0] == "U":
            unmapped.absorb(item[2])
    outside = None if all_patients else max(0, patient_lines - len(results))
    return ExportResults(results, outside, unmapped)


def _lines(spark: SparkSession, files: list[tuple[str, str]]) -> DataFrame:
    """Every line (bytes as written: a text column keeps them) with its file, split start and a row id
    increasing within a split. Only "\\n" ends a line, as in the files path."""
    from pyspark.sql import functions as F

    frame = spark.read.option("lineSep", "\n").text([uri for uri, _ in files])
    return frame.select(
        F.col("value").cast("binary").alias("value"),
        F.col("_metadata.file_path").alias("path"),
        F.col("_metadata.file_block_start").alias("block"),
        F.monotonically_increasing_id().alias("row"),
    )


def _maybe_condition() -> Column:
    """In the JVM: a line that is, or may be, a Condition (``population._condition_starts``' rule)."""
    from pyspark.sql import functions as F

    value = F.col("value").cast("string")
    return (
        value.rlike(r'^\{\s*"resourceType"\s*:\s*"Condition"')
        | ~value.startswith('{"resourceType"')
        | value.contains("\\u")
    )


def _others_line(ids: frozenset[str]) -> Column:
    """In the JVM, so Python never sees them: the lines ``LineFilter(ids).wanted_line`` drops, but for
    Patient lines (counted in Python): a plain typed line, not a Medication, without ``\\u`` escapes or
    ``urn:`` references, naming at least one patient and none of the population."""
    from pyspark.sql import functions as F

    value = F.col("value").cast("string")
    refs = F.regexp_extract_all(value, F.lit(r'Patient(?:/|\\/)([A-Za-z0-9\-.]{1,64})(?=["/\\])'), F.lit(1))
    population = sorted(ids) or [""]
    return (
        value.rlike(r'^\{"resourceType": ?"')
        & value.endswith("}")
        & ~value.rlike(r'^\{"resourceType": ?"(?:Patient|Medication)"')
        & ~value.contains("\\u")
        & ~value.rlike(r'"reference"\s*:\s*"urn:')
        & (F.size(refs) > 0)
        & ~F.exists(refs, lambda ref: ref.isin(population))
    )


def _file_key(path: str) -> str:
    """The same file named by the path we gave Spark and by the (URL-encoded) path it reports."""
    path = unquote(path)
    if path.startswith("file:"):
        return "/" + path.removeprefix("file:").lstrip("/")
    return path


def _rows(frame: DataFrame, files: list[tuple[str, str]]) -> Any:
    """(order, raw line with its newline) for each row: the order is the export's order of lines."""
    index = {_file_key(uri): i for i, (uri, _) in enumerate(files)}
    return frame.rdd.map(lambda r: ((index[_file_key(r.path)], r.block, r.row), bytes(r.value) + b"\n"))


def _population_part(definition: CriteriaDefinition) -> Callable[[Iterable[Any]], Iterator[Any]]:
    def run(rows: Iterable[tuple[Order, bytes]]) -> Iterator[Any]:
        reads, signs = ScreeningReads(definition), PopulationSigns(definition)
        for order, raw in rows:
            try:
                resource = parse_ndjson_line(raw, _WHERE, reads)
            except SourceError as exc:
                yield ("E", order, str(exc))
                continue
            pid = signs.patient_of(resource) if resource and resource["resourceType"] == "Condition" else None
            if pid:
                yield ("P", order, pid)

    return run


def _line_part(context: Any) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A partition's lines, as ``export._Collector._line`` reads them: ("R", order, patient, (type,
    resource)), ("M", order, key, Medication), ("E", order, message), ("N", 0, Patient lines seen)."""

    def run(rows: Iterable[tuple[Order, bytes]]) -> Iterator[Any]:
        ctx: _Context = context.value
        reads = ScreeningReads(ctx.definition)
        wanted = LineFilter(ctx.ids).wanted_line
        seen = 0
        for order, raw in rows:
            seen += ctx.ids is not None and _PATIENT_TYPE.match(raw) is not None
            if not wanted(raw) or reads.skippable_line(raw):
                continue
            try:
                yield from _line(ctx, reads, order, raw)
            except SourceError as exc:
                yield ("E", order, str(exc))
        yield ("N", (0, 0, 0), seen)

    return run


def _line(ctx: _Context, reads: ScreeningReads, order: Order, raw: bytes) -> Iterator[Any]:
    resource = parse_ndjson_line(raw, _WHERE, reads, defer=True, skip_unread=False)
    if resource is None:
        return
    rtype = resource["resourceType"]
    key = resource_key(resource)
    if rtype == "Patient":
        if key and _mine(ctx, key):
            yield ("R", order, key, resource)
        return
    if rtype == "Medication":
        if key:
            yield ("M", order, key, resource)
        return
    if rtype not in SUBJECT_ELEMENT:
        return
    patient = subject_key(resource)
    if not patient or not _mine(ctx, patient):
        if rtype == "Observation":
            check_resource(resource, _WHERE, reads)  # as the files path does for every line read
        return
    yield ("R", order, patient, resource)


def _mine(ctx: _Context, key: str) -> bool:
    return ctx.ids is None or key.removeprefix("Patient/") in ctx.ids


def _patient_part(context: Any, shared: Any) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """Screen a partition's patients: ("S", key, result) each, ("E", order, message) for a problem,
    and ("U", 0, findings) once (the terminology gaps on its records)."""

    def run(groups: Iterable[tuple[str, Iterable[tuple[Order, dict[str, Any]]]]]) -> Iterator[Any]:
        from adapter.pipeline import Pipeline  # the one guard: a record that breaks is that patient's error
        from adapter.screening.engine import Screener

        ctx: _Context = context.value
        reads, codes = ScreeningReads(ctx.definition), observation_codes(ctx.definition)
        gaps = UnmappedCollector(ctx.definition)
        pipeline = Pipeline(Screener(ctx.definition, ctx.as_of), unmapped=gaps)
        for key, items in groups:
            try:
                record = _record(key, sorted(items, key=lambda i: i[0]), shared.value, ctx, reads, codes)
            except _LineError as exc:
                yield ("E", exc.order, exc.message)
                continue
            if record is None:
                continue  # resources of a patient with no Patient line: nobody to screen
            yield ("S", key, pipeline.screen(record))
        yield ("U", 0, gaps.findings())

    return run


class _LineError(Exception):
    def __init__(self, order: Order, message: str) -> None:
        self.order, self.message = order, message


def _record(
    key: str,
    items: list[tuple[Order, dict[str, Any]]],
    medications: dict[str, dict[str, Any]],
    ctx: _Context,
    reads: ScreeningReads,
    codes: frozenset[tuple[str, str]],
) -> PatientRecord | None:
    """The files path's record: the last Patient line, the rest in export order, only the deciding
    Observations (validated)."""
    patient: dict[str, Any] | None = None
    resources: dict[str, list[dict[str, Any]]] = defaultdict(list)
    observations: list[tuple[int, dict[str, Any]]] = []
    deciding = DecidingObservations(codes, ctx.as_of)
    for seq, (_order, resource) in enumerate(items):
        rtype = resource["resourceType"]
        if rtype == "Patient":
            patient = resource
        elif rtype == "Observation" and reads.reads(resource):
            deciding.add(seq, resource, _WHERE)
        elif rtype == "Observation":
            observations.append((seq, resource))
        else:
            resources[rtype].append(resource)
    if patient is None:
        return None
    for seq, obs, _ in deciding.kept():
        try:
            check_resource(obs, _WHERE, reads)  # validate what is used
        except SourceError as exc:
            raise _LineError(items[seq][0], str(exc)) from None
        observations.append((seq, obs))
    if observations:
        resources["Observation"] = [obs for _, obs in sorted(observations, key=lambda item: item[0])]
    return PatientRecord(key=key, patient=patient, resources=resources, medications=medications)


def _raise_first(
    spark: SparkSession, lines: DataFrame, files: list[tuple[str, str]], errors: list[Any]
) -> None:
    """Raise the first problem in export order, naming its file and line as the files path does."""
    if not errors:
        return
    order, message = min((e[1], e[2]) for e in errors)
    if order[0] >= 1 << 62 or _WHERE not in message:
        raise SourceError(message)
    file = order[0]
    number = _rows(lines, files).filter(lambda item: item[0][0] == file and item[0] < order).count() + 1
    raise SourceError(message.replace(_WHERE, f"{files[file][1]}:{number}", 1))
