"""Screening an export on Spark (issue 19) against the in-process files path, on the same data.

    python -m bench.spark [--patients 10000] [--master local[2]]

Data: the synthetic hospital (``bench.synth``, NDJSON), generated once under ``--data-dir``. Measures,
each the median of ``--repeat`` runs:

- ``in-process``: ``screen_export`` in this process (``--workers`` 1 and 2);
- ``spark``: ``screen_export_spark`` in one SparkSession started beforehand (its ~20-30 s JVM start is
  reported apart: a cluster pays it once per job), after one warm-up run that starts the Python
  workers;

each for the default (population first) and ``--all-patients`` (every patient screened). Patients/s
is the export's patients over wall seconds. Every Spark report is checked byte-identical to the
in-process one. The shuffle: the pickled size of what ``groupByKey`` moves, per screened patient.
Results: appended to ``bench/results/latest.md`` (a section) and ``bench/results/spark-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from adapter.cli import _criteria
from adapter.screening.report import render
from adapter.screening.run import report_for
from adapter.sources.export import ExportResults, screen_export
from bench.synth import write_ndjson

RESULTS = Path(__file__).parent / "results"
AS_OF = date(2026, 11, 23)


def _report(definition: Any, done: ExportResults) -> str:
    report = report_for(
        definition, AS_OF, done.results, done.unmapped, outside_population=done.outside_population
    )
    return render(report, "json")


def _timed(repeat: int, run: Any) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _shuffle_bytes(spark: Any, folder: Path, definition: Any) -> tuple[int, int]:
    """Pickled bytes of the (patient, resource) pairs the grouping shuffles, and the patients."""
    from adapter.sources import spark as S

    files = S.export_files(spark, str(folder))
    lines = S._lines(spark, files)
    found = S._rows(lines.filter(S._maybe_condition()), files).mapPartitions(S._population_part(definition))
    ids = frozenset(pid for kind, _, pid in found.collect() if kind == "P")
    context = spark.sparkContext.broadcast(S._Context(definition, AS_OF, ids))
    wanted = S._rows(lines.filter(~S._others_line(ids)), files).mapPartitions(S._line_part(context))
    pairs = wanted.filter(lambda item: item[0] == "R").map(lambda item: (item[2], (item[1], item[3])))
    sizes = pairs.map(lambda pair: (pair[0], len(pickle.dumps(pair)))).collect()
    return sum(size for _, size in sizes), len({key for key, _ in sizes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "trial-adapter-bench")
    args = parser.parse_args(argv)
    folder = args.data_dir / f"spark-synth-{args.patients}"
    if not (folder / "manifest.json").exists():  # (not an .ndjson file: neither path reads it)
        write_ndjson(args.patients, folder)
    rows, shuffle = _measure(args, folder)
    _write(args, rows, shuffle)
    return 0


def _measure(args: argparse.Namespace, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from adapter.sources.spark import screen_export_spark, spark_session

    definition = _criteria(None)
    rows: list[dict[str, Any]] = []
    expected: dict[bool, str] = {}
    for everyone in (False, True):
        for workers in (1, 2):
            seconds, done = _timed(
                args.repeat,
                lambda e=everyone, w=workers: screen_export(
                    folder, definition, AS_OF, all_patients=e, workers=w
                ),
            )
            expected.setdefault(everyone, _report(definition, done))
            rows.append(
                _row(f"in-process, {workers} worker(s)", everyone, seconds, args.patients, len(done.results))
            )
    start = time.perf_counter()
    spark = spark_session(args.master)
    started = time.perf_counter() - start
    try:
        screen_export_spark(spark, str(folder), definition, AS_OF)  # warm-up: Python workers start
        for everyone in (False, True):
            seconds, done = _timed(
                args.repeat,
                lambda e=everyone: screen_export_spark(spark, str(folder), definition, AS_OF, all_patients=e),
            )
            same = _report(definition, done) == expected[everyone]
            rows.append(
                _row(f"spark {args.master}", everyone, seconds, args.patients, len(done.results), same)
            )
        total, patients = _shuffle_bytes(spark, folder, definition)
    finally:
        spark.stop()
    shuffle = {"session_start_s": round(started, 1), "bytes": total, "patients": patients}
    return rows, shuffle


def _row(
    engine: str, everyone: bool, seconds: float, patients: int, screened: int, same: bool | None = None
) -> dict[str, Any]:
    return {
        "engine": engine,
        "mode": "--all-patients" if everyone else "population first",
        "wall_s": round(seconds, 2),
        "screened": screened,
        "patients_per_s": round(patients / seconds),
        "identical": same,
    }


def _write(args: argparse.Namespace, rows: list[dict[str, Any]], shuffle: dict[str, Any]) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%MZ")
    machine = f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}"
    lines = [
        "",
        f"## Spark engine (issue 19), {stamp}",
        "",
        f"`make bench-spark`: synthetic hospital of {args.patients:,} patients (NDJSON), {machine}. "
        f"Patients/s = the export's patients / wall s (median of {args.repeat}); Spark in a session started "
        f"beforehand ({shuffle['session_start_s']} s to start), after one warm-up run.",
        "",
        "| engine | mode | wall s | screened | patients / s | same bytes |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        same = "-" if r["identical"] is None else ("yes" if r["identical"] else "**no**")
        lines.append(
            f"| {r['engine']} | {r['mode']} | {r['wall_s']} | {r['screened']:,} | {r['patients_per_s']:,} | {same} |"
        )
    per = shuffle["bytes"] / max(1, shuffle["patients"])
    lines += [
        "",
        f"Shuffled (population first): {shuffle['bytes']:,} pickled bytes for {shuffle['patients']} patients, "
        f"{per / 1024:.1f} KiB per screened patient (before compression).",
        "",
    ]
    with (RESULTS / "latest.md").open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    data = {
        "stamp": stamp,
        "patients": args.patients,
        "master": args.master,
        "rows": rows,
        "shuffle": shuffle,
    }
    (RESULTS / "spark-latest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
