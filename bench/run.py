"""The screening benchmark: does the adapter's cost follow the ALL population or the hospital?

    python -m bench.run --sizes 1000,10000            # loading 10k: ~8-10 min on 2 cores
    python -m bench.run --sizes 1000,10000 --with-100k
    python -m bench.run --sizes 10000 --attach 10000=/tmp/hapi10k.json   # a server bench.serve loaded

For each size: generate (or reuse) the synthetic hospital (bench.synth, seed 7, 40 T-ALL + 20 other ALL
patients at EVERY size), start a fresh HAPI (tests.support.hapi, THROUGHPUT_JVM_FLAGS + a larger heap,
in-memory H2, BULK_LOAD_APP_ARGS), load it (bench.load), then, after one untimed warm-up pass of every
strategy, time every strategy ``--repeats`` times (rotating the order) in separate processes
(bench.measure), and stop HAPI.
Then screen the NDJSON files of the largest size without a server. Medians, same-run ratios and the
machine go to bench/results/<timestamp>.json, latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench import synth
from bench.load import load_directory
from bench.pg import PostgresCluster, cpu_seconds, hapi_pg_args, process_memory_mb

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SERVER_STRATEGIES = ["adapter", "adapter-warm", "lb-batches", "lb-one-batch", "lb-has", "naive"]
SAMPLE_BUNDLE = REPO / "adapter" / "samples" / "nct06849401-sample-bundle.json"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        java = "?"
    return {
        "nproc": os.cpu_count(),
        "ram_gb": mem_gb,
        "cpu": cpu,
        "python": platform.python_version(),
        "java": java,
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def dataset(size: int, seed: int, as_of: date, data_dir: Path) -> Path:
    out = data_dir / f"synth-{size}-seed{seed}-{as_of.isoformat()}"
    manifest = out / "manifest.json"
    if manifest.exists():
        return out
    log(f"generating {size} patients into {out}")
    t0 = time.perf_counter()
    synth.write_ndjson(size, out, synth.Options(seed=seed, as_of=as_of))
    log(f"generated in {time.perf_counter() - t0:.1f}s")
    return out


def measure(
    strategy: str, *, url: str | None = None, source: Path | None = None, as_of: date, repeat: int = 1
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.measure", strategy, "--as-of", as_of.isoformat()]
    if url:
        cmd += ["--fhir-url", url]
    if source:
        cmd += ["--source", str(source), "--repeat", str(repeat)]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["wall_s_all"] = [round(r["wall_s"], 4) for r in runs]
    for k in ("candidates_sha1",):
        if k in runs[0]:
            out[k] = sorted({r[k] for r in runs})
    return out


def server_size(size: int, url: str, as_of: date, repeats: int, strategies: list[str]) -> dict[str, Any]:
    log(f"{size}: warm-up pass")
    warmup = {s: measure(s, url=url, as_of=as_of) for s in strategies}
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    for rep in range(repeats):
        order = strategies[rep % len(strategies) :] + strategies[: rep % len(strategies)]
        for s in order:
            runs[s].append(measure(s, url=url, as_of=as_of))
            log(
                f"{size}: {s} #{rep + 1}: {runs[s][-1]['wall_s']:.3f}s {runs[s][-1].get('requests')} requests"
            )
    med = {s: median_of(r) for s, r in runs.items()}
    ratios: dict[str, Any] = {}
    if "adapter" in med:
        lbs = {s: med[s]["wall_s"] for s in ("lb-batches", "lb-one-batch", "lb-has") if s in med}
        if lbs:
            best = min(lbs, key=lambda s: lbs[s])
            ratios["lower_bound"] = best
            ratios["adapter_over_lower_bound"] = med["adapter"]["wall_s"] / lbs[best]
        if "naive" in med:
            ratios["naive_over_adapter"] = med["naive"]["wall_s"] / med["adapter"]["wall_s"]
            ratios["naive_requests_over_adapter"] = med["naive"]["requests"] / med["adapter"]["requests"]
            ratios["naive_bytes_over_adapter"] = med["naive"]["bytes"] / med["adapter"]["bytes"]
    return {"warmup": warmup, "runs": runs, "median": med, "ratios": ratios}


def run_size(size: int, args: argparse.Namespace, attach: dict[int, Path]) -> dict[str, Any]:
    data = dataset(size, args.seed, args.as_of, args.data_dir)
    manifest = json.loads((data / "manifest.json").read_text())
    out: dict[str, Any] = {
        "patients": size,
        "resources": sum(manifest["counts"].values()),
        "counts": manifest["counts"],
        "data": str(data),
    }
    if size in attach:
        info = json.loads(attach[size].read_text())
        out["server"] = {"attached": True, "startup_s": info.get("startup_seconds")}
        out["load"] = info.get("load")
        out.update(server_size(size, info["url"], args.as_of, args.repeats, args.strategies))
        return out
    from tests.support.hapi import BULK_LOAD_APP_ARGS, THROUGHPUT_JVM_FLAGS, build_jar, start_hapi

    jar = build_jar(REPO)
    # on PostgreSQL the data lives in the database, not on the JVM heap
    heap = args.heap or ("4g" if size <= 2000 or args.db == "postgres" else "10g")
    with contextlib.ExitStack() as stack:
        db_args: tuple[str, ...] = ()
        pg: PostgresCluster | None = None
        if args.db == "postgres":
            log(f"{size}: starting PostgreSQL")
            pg = stack.enter_context(PostgresCluster(args.data_dir))
            db_args = hapi_pg_args(pg)
        log(f"{size}: starting HAPI (-Xmx{heap}, {args.db})")
        server = start_hapi(
            jar,
            jvm_flags=(*THROUGHPUT_JVM_FLAGS, f"-Xmx{heap}"),
            app_args=(*BULK_LOAD_APP_ARGS, *db_args),  # ~3-4x faster loading; no effect on searches
            timeout=600,
        )
        stack.callback(server.stop)
        out["server"] = {"attached": False, "db": args.db, "startup_s": server.startup_seconds, "heap": heap}
        log(f"{size}: loading {out['resources']} resources into {server.base_url}")
        load_before = os.getloadavg()
        before = footprint(server.process.pid if server.process else None, pg)
        stats = asyncio.run(
            load_directory(
                server.base_url,
                data,
                bundle_size=args.bundle_size,
                concurrency=args.load_concurrency,
                progress=True,
            )
        )
        out["load"] = {**stats.as_dict(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
        after = out["footprint_after_load"] = footprint(server.process.pid if server.process else None, pg)
        # server CPU per resource does not depend on what else the shared machine runs (the rate does)
        cpu = server_cpu_s(after) - server_cpu_s(before)
        out["load"]["server_cpu_s"] = round(cpu, 1)
        out["load"]["resources_per_server_cpu_s"] = round(stats.resources / cpu, 1) if cpu else None
        log(f"{size}: loaded at {stats.per_second:.0f} resources/s; {out['footprint_after_load']}")
        out.update(server_size(size, server.base_url, args.as_of, args.repeats, args.strategies))
        out["footprint_after_measures"] = footprint(server.process.pid if server.process else None, pg)
    return out


def footprint(hapi_pid: int | None, pg: PostgresCluster | None) -> dict[str, Any]:
    """Server memory (HAPI JVM RSS and peak, PostgreSQL PSS) and disk (du of PG's data directory)."""
    out: dict[str, Any] = {"loadavg": os.getloadavg()}
    if hapi_pid is not None:
        out["hapi"] = {**process_memory_mb(hapi_pid), "cpu_s": cpu_seconds(hapi_pid)}
    if pg is not None:
        out["postgres_pss_mb"] = pg.memory_mb()
        out["postgres_cpu_s"] = pg.cpu_s()
        out["postgres_disk"] = pg.disk_mb()
    return out


def files_measure(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    by_size = []
    for size in sizes:
        data = dataset(size, args.seed, args.as_of, args.data_dir)
        log(f"files: screening {size} patients from NDJSON ({args.repeats} runs)")
        runs = [measure("files", source=data, as_of=args.as_of) for _ in range(args.repeats)]
        by_size.append({"patients": size, **median_of(runs)})
    sample_runs = [
        measure("files", source=SAMPLE_BUNDLE, as_of=args.as_of, repeat=200) for _ in range(args.repeats)
    ]
    return {
        "synthetic": by_size[-1],  # the largest size
        "synthetic_by_size": by_size,
        "sample_bundle": {"patients": sample_runs[0]["screened"], **median_of(sample_runs)},
        "note": "one process = one core (screening is single-threaded): patients per CPU-second",
    }


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Screening benchmark, {result['timestamp']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, {m['java']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}.",
        f"Data: bench.synth seed {result['seed']}, as-of {result['as_of']}, 40 T-ALL + 20 other ALL patients at "
        "every size. Times are medians of "
        f"{result['repeats']} runs after a warm-up pass; peak RSS = VmHWM of the measuring process.",
        "",
        "| patients | resources | load res/s | strategy | wall s (median) | requests | MB received | peak RSS MB | candidates |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in result["sizes"]:
        load = (size.get("load") or {}).get("resources_per_second")
        for s, med in size["median"].items():
            lines.append(
                f"| {size['patients']:,} | {size['resources']:,} | {fmt(load, 0)} | {s} | {fmt(med['wall_s'], 3)} | "
                f"{med.get('requests', 0):,.0f} | {fmt(med.get('bytes', 0) / 1e6, 2)} | {fmt(med.get('peak_rss_mb'), 0)} | "
                f"{fmt(med.get('candidates'), 0)} |"
            )
    lines += server_table(result)
    lines += ["", "| measure | value | target | met |", "| --- | ---: | ---: | --- |"]
    for t in result["targets"]:
        lines.append(
            f"| {t['name']} | {fmt(t['value'])} | {t['target']} | {'yes' if t['met'] else '**no**'} |"
        )
    f = result.get("files")
    if f:
        lines += [
            "",
            "Files (no server, one process = one core; patients per CPU-second, end to end: read, group, "
            "screen every Patient):",
            "",
            "| source | patients | CPU s | patients / CPU-s | screening alone / s | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = [(f"synthetic {x['patients']:,}", x) for x in f.get("synthetic_by_size") or [f["synthetic"]]]
        rows.append(("sample bundle (all leukaemia)", f["sample_bundle"]))
        for name, x in rows:
            lines.append(
                f"| {name} | {x['screened']:,.0f} | {fmt(x.get('cpu_s'), 3)} | {fmt(x.get('patients_per_cpu_s'), 0)} | "
                f"{fmt(x['engine_patients_per_s'], 0)} | {fmt(x.get('peak_rss_mb'), 0)} |"
            )
    return "\n".join(lines) + "\n"


def server_table(result: dict[str, Any]) -> list[str]:
    """Load rate, server memory and disk per size (load average: 1-minute value before/after)."""
    lines = [
        "",
        f"Server ({result.get('db', 'h2')}): HAPI start-up, load, memory (HAPI JVM RSS / peak; PostgreSQL PSS, "
        "shared buffers counted once) and disk (du of PostgreSQL's data directory), after the load:",
        "",
        "| patients | start-up s | load s | load res/s | res per server CPU-s | load avg before / after "
        "| HAPI RSS / peak MB "
        "| PG PSS MB | PG disk MB: du (WAL) / database |",
        "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for size in result["sizes"]:
        load = size.get("load") or {}
        fp = size.get("footprint_after_load") or {}
        hapi = fp.get("hapi") or {}
        avg = [load.get("loadavg_before"), load.get("loadavg_after")]
        lines.append(
            f"| {size['patients']:,} | {fmt((size.get('server') or {}).get('startup_s'), 0)} "
            f"| {fmt(load.get('seconds'), 0)} | {fmt(load.get('resources_per_second'), 0)} "
            f"| {fmt(load.get('resources_per_server_cpu_s'), 0)} "
            f"| {' / '.join(fmt(a[0]) if a else '-' for a in avg)} "
            f"| {fmt(hapi.get('vmrss_mb'), 0)} / {fmt(hapi.get('vmhwm_mb'), 0)} "
            f"| {fmt(fp.get('postgres_pss_mb'), 0)} | {disk_cell(fp)} |"
        )
    return lines


def server_cpu_s(fp: dict[str, Any]) -> float:
    """HAPI's and PostgreSQL's CPU seconds so far, from a footprint()."""
    return float((fp.get("hapi") or {}).get("cpu_s", 0) + fp.get("postgres_cpu_s", 0))


def disk_cell(fp: dict[str, Any]) -> str:
    disk = fp.get("postgres_disk")
    if not isinstance(disk, dict):  # runs before the WAL / database split: du only
        return fmt(fp.get("postgres_disk_mb"), 0)
    return f"{fmt(disk.get('du_mb'), 0)} ({fmt(disk.get('wal_mb'), 0)}) / {fmt(disk.get('database_mb'), 0)}"


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    sizes = {s["patients"]: s for s in result["sizes"]}
    ref = 10000 if 10000 in sizes else max(sizes)
    r = sizes[ref]["ratios"]
    if "adapter_over_lower_bound" in r:
        v = r["adapter_over_lower_bound"]
        out.append(
            {
                "name": f"adapter / lower bound ({r['lower_bound']}) at {ref:,}",
                "value": v,
                "target": "<= 1.5",
                "met": v <= 1.5,
            }
        )
    if "naive_over_adapter" in r:
        v = r["naive_over_adapter"]
        out.append({"name": f"naive / adapter at {ref:,}", "value": v, "target": ">= 10", "met": v >= 10})
    if len(sizes) >= 2 and all("adapter" in s["median"] for s in sizes.values()):
        small, big = min(sizes), max(sizes)
        base = 10000 if 10000 in sizes and big > 10000 else small
        v = sizes[big]["median"]["adapter"]["wall_s"] / sizes[base]["median"]["adapter"]["wall_s"]
        out.append(
            {
                "name": f"adapter time {big:,} / {base:,} (same ALL population)",
                "value": v,
                "target": "<= 1.3",
                "met": v <= 1.3,
            }
        )
        rq = sizes[big]["median"]["adapter"]["requests"] / sizes[base]["median"]["adapter"]["requests"]
        out.append(
            {"name": f"adapter requests {big:,} / {base:,}", "value": rq, "target": "1.0", "met": rq <= 1.0}
        )
    f = result.get("files")
    if f:
        v = f["synthetic"]["patients_per_cpu_s"]
        out.append(
            {
                "name": f"files: patients/s/core (synthetic hospital, {f['synthetic']['patients']:,})",
                "value": v,
                "target": ">= 2000",
                "met": v >= 2000,
            }
        )
        v = f["sample_bundle"]["patients_per_cpu_s"]
        out.append(
            {
                "name": "files: patients/s/core (sample bundle)",
                "value": v,
                "target": ">= 2000",
                "met": v >= 2000,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--with-100k", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=synth.AS_OF)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA", "/tmp/trial-adapter-bench"))
    )
    parser.add_argument(
        "--db",
        choices=["h2", "postgres"],
        default="h2",
        help="HAPI's database: in-memory H2 (the test server) or a PostgreSQL cluster this run creates",
    )
    parser.add_argument(
        "--heap", default=None, help="HAPI -Xmx (default 4g up to 2k patients or on PostgreSQL, else 10g)"
    )
    parser.add_argument("--bundle-size", type=int, default=1000)
    parser.add_argument("--load-concurrency", type=int, default=2, choices=[1, 2, 3])
    parser.add_argument("--strategies", default=",".join(SERVER_STRATEGIES))
    parser.add_argument("--files-size", type=int, default=None, help="NDJSON size screened without a server")
    parser.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="SIZE=INFO.json",
        help="measure a server bench.serve already loaded instead of starting one",
    )
    args = parser.parse_args(argv)

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM / background SIGINT: unwind so every HAPI is stopped in finally

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    args.strategies = args.strategies.split(",")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.with_100k:
        sizes.append(100000)
    attach = {int(k): Path(v) for k, v in (a.split("=", 1) for a in args.attach)}
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "seed": args.seed,
        "as_of": args.as_of.isoformat(),
        "repeats": args.repeats,
        "db": args.db,
        "sizes": [],
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = result["timestamp"].replace(":", "")
    for size in sizes:
        result["sizes"].append(run_size(size, args, attach))
        # what is measured survives a run stopped later (a 100k load can outlast its time slot)
        (RESULTS / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["files"] = files_measure(args, [args.files_size] if args.files_size else sorted(sizes))
    result["targets"] = targets(result)
    text = json.dumps(result, indent=2)
    (RESULTS / f"{stamp}.json").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(text + "\n")
    (RESULTS / "latest.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
