"""Files screening on the dense hospital (issue 18): CPU against the floor, side by side in one run.

    python -m bench.files_dense --sizes 2000,10000 [--synthea] [--skip-full]

Per size (data from ``bench.dense``, generated once under ``--data-dir``), each measure in its own
process (CPU = user + system of that process, peak RSS its own):

- ``floor``: reading every line of the export once (``for line in file``), the physical floor;
- ``default``: ``screen --source`` (population first), 1 worker and 2 workers;
- ``all-patients``: ``screen --source --all-patients``, 1 worker and 2 workers (up to ``ALL_UP_TO``
  people: beyond, it screens everyone for many minutes per run);
- ``full``: the path before issue 18 (every line read, every read resource validated, every patient),
  up to ``--full-up-to`` people (it holds the whole export in memory; 2,000 by default).

Checks, every run: ``--all-patients`` output is byte-identical to ``full``'s; ``default`` lists
exactly ``full``'s patients with a sign of ALL, with the same results; 2 workers give the same bytes
as 1. Results: ``bench/results/files-dense-latest.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
AS_OF = "2026-11-23"
ALL_UP_TO = 10_000  # people: the every-patient measures stop here

_FLOOR = """
import pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob('*.ndjson')):
    with f.open('rb') as h:
        for line in h:
            pass
"""
_FULL = """
import sys
from datetime import date
from pathlib import Path
from adapter.cli import _criteria
from adapter.screening.reads import ScreeningReads
from adapter.screening.report import render
from adapter.screening.run import report_for, screen_records
from adapter.screening.unmapped import UnmappedCollector
from adapter.sources.files import load_records
definition = _criteria(None)
as_of = date.fromisoformat(sys.argv[2])
reads = ScreeningReads(definition)
builder = load_records(Path(sys.argv[1]), reads)
unmapped = UnmappedCollector(definition, reads)
results = screen_records(builder.records(), definition, as_of, unmapped=unmapped)
report = report_for(definition, as_of, results, unmapped)
Path(sys.argv[3]).write_text(render(report, "json"), encoding="utf-8")
"""


def _run(argv: list[str]) -> dict[str, Any]:
    """Run a process; its CPU seconds, wall seconds and peak RSS (MB), its own and its children's."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this process's usage only (RUSAGE_CHILDREN sums them all)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {err[-2000:].decode(errors='replace')}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _screen(source: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "adapter", "screen", "--source", str(source), "--as-of", AS_OF]
    return _run([*argv, "--output", str(out), "--quiet", *extra])


def measure_size(
    size: int, data_dir: Path, synthea: bool, skip_full: bool, full_up_to: int
) -> dict[str, Any]:
    from bench.dense import write_dense

    source = data_dir / f"dense-{size}{'-synthea' if synthea else ''}"
    if not (source / "manifest.json").exists():
        write_dense(size, source, synthea=synthea)
    manifest = json.loads((source / "manifest.json").read_text())
    out = data_dir / f"out-{size}"
    out.mkdir(exist_ok=True)
    size = manifest["counts"].get("Patient", size)  # Synthea adds the people who died on the way
    row: dict[str, Any] = {
        "patients": size,
        "synthea": synthea,
        "resources": sum(manifest["counts"].values()),
        "observations": manifest["counts"].get("Observation", 0),
        "bytes": sum(f.stat().st_size for f in source.glob("*.ndjson")),
    }
    row["floor"] = _run([sys.executable, "-c", _FLOOR, str(source)])
    row["default_1"] = _screen(source, out / "default-1.json", "--workers", "1")
    row["default_2"] = _screen(source, out / "default-2.json", "--workers", "2")
    row["workers_identical"] = (out / "default-1.json").read_bytes() == (out / "default-2.json").read_bytes()
    if size <= ALL_UP_TO:
        row["all_1"] = _screen(source, out / "all-1.json", "--all-patients", "--workers", "1")
        row["all_2"] = _screen(source, out / "all-2.json", "--all-patients", "--workers", "2")
        row["workers_identical"] &= (out / "all-1.json").read_bytes() == (out / "all-2.json").read_bytes()
        row["all_patients_per_cpu_s"] = round(size / row["all_1"]["cpu_s"], 1)
        row["all_2_workers_speedup"] = round(row["all_1"]["wall_s"] / row["all_2"]["wall_s"], 2)
    if not skip_full and size <= full_up_to:
        row["full"] = _run([sys.executable, "-c", _FULL, str(source), AS_OF, str(out / "full.json")])
    if size <= ALL_UP_TO and (out / "full.json").exists():  # an earlier run's output, else this one's
        full = (out / "full.json").read_bytes()
        row["all_patients_identical_to_full"] = (out / "all-1.json").read_bytes() == full
        row["default_agrees_with_full"] = _default_agrees(
            json.loads(full), json.loads((out / "default-1.json").read_bytes())
        )
    floor = row["floor"]["cpu_s"]
    row["default_x_floor"] = round(row["default_1"]["cpu_s"] / floor, 2)
    row["default_2_workers_speedup"] = round(row["default_1"]["wall_s"] / row["default_2"]["wall_s"], 2)
    return row


def _default_agrees(full: dict[str, Any], default: dict[str, Any]) -> bool:
    """Default lists full's patients with any ALL record, identically, and counts the others."""
    listed = {p["patient"]: p for p in default["patients"]}
    others = [p for p in full["patients"] if p["patient"] not in listed]
    no_all = all(
        c["reason"] == "no record of acute lymphoblastic leukaemia"
        for p in others
        for c in p["criteria"]
        if c["id"] == "inclusion-2"
    )
    same = all(listed[k] == p for p in full["patients"] if (k := p["patient"]) in listed)
    counted = default["summary"].get("outsidePopulation") == len(others)
    return no_all and same and counted and len(listed) + len(others) == len(full["patients"])


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Files, dense hospital ({result['when']})",
        "",
        f"Machine: {result['machine']}. "
        + (
            "**Loaded**: shared with other jobs during the run; ratios are measured side by side in one "
            "run, absolute times are not representative."
            if result.get("loaded", True)
            else "Quiet machine (nothing else running). CPU = user + system of the measured process and its "
            "workers."
        ),
        "",
        "| people | resources | MB | floor CPU s | default CPU s (x floor) | default 2 workers wall speed-up "
        "| all-patients per CPU-s | all-patients 2 workers speed-up | full path CPU s | peak RSS default / full MB "
        "| identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["sizes"]:
        full = r.get("full", {})
        checks = [
            r["workers_identical"],
            r.get("all_patients_identical_to_full"),
            r.get("default_agrees_with_full"),
        ]
        lines.append(
            f"| {r['patients']:,}{' (Synthea)' if r['synthea'] else ''} | {r['resources']:,} "
            f"| {r['bytes'] / 1e6:.0f} | {r['floor']['cpu_s']} | {r['default_1']['cpu_s']} "
            f"({r['default_x_floor']}x) | {r['default_2_workers_speedup']}x | {r.get('all_patients_per_cpu_s', '-')} "
            f"| {r.get('all_2_workers_speedup', '-')}x | {full.get('cpu_s', '-')} "
            f"| {r['default_1']['peak_rss_mb']} / {full.get('peak_rss_mb', '-')} "
            f"| {' '.join('yes' if c else ('-' if c is None else 'NO') for c in checks)} |"
        )
    lines += [
        "",
        "identical: 1 vs 2 workers (default and all-patients); all-patients vs the full path; default vs "
        "the full path's ALL patients (with the others counted in outsidePopulation).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.files_dense", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA", "/tmp/trial-adapter-bench"))
    )
    parser.add_argument("--synthea", action="store_true")
    parser.add_argument(
        "--skip-full",
        action="store_true",
        help="do not run the (slow) pre-issue-18 path; compare with its output of an earlier run if present",
    )
    parser.add_argument(
        "--full-up-to", type=int, default=2000, help="run the pre-issue-18 path up to this size"
    )
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result: dict[str, Any] = {
        "when": when,
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "loaded": os.getloadavg()[0] > 1.0,
        "sizes": [
            measure_size(size, args.data_dir, args.synthea, args.skip_full, args.full_up_to) for size in sizes
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = when.replace(":", "").replace("-", "")
    (RESULTS / f"files-dense-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "files-dense-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "files-dense-latest.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
