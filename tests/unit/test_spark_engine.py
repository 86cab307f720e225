"""``screen --engine spark`` (issue 19): the same report, byte for byte, and the same errors as the
in-process files path, on local[2] (one SparkSession for the module: starting one costs ~20 s)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from bench.synth import write_ndjson as synth_ndjson
from tests.support.clinical import AS_OF
from tests.support.exports import sample_export
from tests.support.hostile import BAD, assert_one_line_error, bad_texts, write_ndjson

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from adapter.sources.spark import spark_session

    session = spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
    session.stop()


def run(capsys: pytest.CaptureFixture[str], folder: Path, *options: str) -> tuple[int, str, str]:
    argv = ["screen", "--source", str(folder), "--as-of", AS_OF.isoformat(), "--quiet", *options]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def both(capsys: pytest.CaptureFixture[str], folder: Path, *options: str) -> tuple[str, str]:
    code, here, err = run(capsys, folder, *options)
    assert code == 0, err
    code, there, err = run(capsys, folder, "--engine", "spark", *options)
    assert code == 0, err
    return here, there


@pytest.mark.parametrize("options", [(), ("--all-patients",)], ids=["population", "all-patients"])
def test_the_sample_gives_the_same_bytes_on_spark(spark, options, tmp_path, capsys):
    folder = sample_export(tmp_path / "export")
    here, there = both(capsys, folder, *options)
    assert here == there
    summary = json.loads(there)["summary"]
    assert ("outsidePopulation" in summary) is not bool(options)
    here, there = both(capsys, folder, "--format", "ndjson", *options)
    assert here == there and json.loads(there.splitlines()[-1])["summary"] == summary


def test_a_synthetic_hospital_gives_the_same_bytes_on_spark_in_small_splits(spark, tmp_path, capsys):
    """1,000 patients, files cut into many splits (so one file's lines are read by several tasks and
    grouped back by patient across them)."""
    folder = tmp_path / "hospital"
    synth_ndjson(1000, folder)
    (folder / "manifest.json").unlink()
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(2 << 20))
    try:
        here, there = both(capsys, folder)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert here == there
    report = json.loads(there)
    assert report["summary"]["screened"] > 0 and report["summary"]["outsidePopulation"] > 500


def test_a_bad_line_in_a_late_split_is_named_by_its_line_number(spark, tmp_path, capsys):
    folder = tmp_path / "hospital"
    synth_ndjson(300, folder)
    (folder / "manifest.json").unlink()
    observations = (folder / "Observation.ndjson").read_bytes().splitlines(keepends=True)
    at = len(observations) * 3 // 4
    observations[at] = observations[at][:40] + b"\n"  # truncated JSON, about nobody we can see
    (folder / "Observation.ndjson").write_bytes(b"".join(observations))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(1 << 20))
    try:
        here = run(capsys, folder)
        there = run(capsys, folder, "--engine", "spark")
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    last = assert_one_line_error(here[0], here[2], f"Observation.ndjson:{at + 1}: invalid JSON")
    assert there[0] == here[0] and there[2].strip().splitlines()[-1] == last


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_hostile_export_is_the_same_clear_error_on_spark(spark, case, tmp_path, capsys):
    folder = write_ndjson(tmp_path / "export", bad_texts(case))
    output = tmp_path / "report.json"
    code, _, err = run(capsys, folder, "--output", str(output))
    last = assert_one_line_error(code, err, case.ndjson_error or case.bundle_error)
    code, _, err = run(capsys, folder, "--output", str(output), "--engine", "spark")
    assert code == 1 and err.strip().splitlines()[-1] == last
    assert not output.exists()


def test_spark_options_are_checked(tmp_path, capsys):
    folder = sample_export(tmp_path / "export")
    code, _, err = run(capsys, folder, "--spark-master", "local[2]")
    assert_one_line_error(code, err, "--spark-master needs --engine spark", 2)
    code, _, err = run(capsys, folder, "--engine", "spark", "--workers", "2")
    assert_one_line_error(code, err, "no --workers", 2)
    code, _, err = run(capsys, tmp_path / "nowhere", "--engine", "spark")
    assert_one_line_error(code, err, "no such file or directory")
