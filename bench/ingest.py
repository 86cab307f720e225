"""Ingestion service throughput: accepted bundles per second and p50/p99 latency of the 202.

    python -m bench.ingest [--bundles 400] [--concurrency 1,8]

Starts HAPI (tests/support/hapi.py) and the service (with background processing on, as in
production), pushes distinct one-patient Bundles (~17 resources each, an engine's usual shape) and
times each request until its 202. Also reports how long the background processing took to drain.
Results go to bench/results/ingest-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

from tests.support.hapi import build_jar, start_hapi
from tests.support.patients import candidate_on_server

KEY = "bench-key-0123456789abcdef"
RESULTS = Path(__file__).resolve().parent / "results"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle(run: str, n: int) -> bytes:
    resources = candidate_on_server(f"bench-{run}-{n}", date.today())
    resources[0]["identifier"] = [{"system": "urn:bench:mrn", "value": f"{run}-{n}"}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    return json.dumps(bundle).encode()


async def _push_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/fhir+json"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                reply = await http.post(f"{url}/fhir", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert reply.status_code == 202, reply.text

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundles", type=int, default=400)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    hapi = start_hapi(build_jar())
    service = None
    try:
        subprocess.run(
            [sys.executable, "-m", "adapter", "publish", "--fhir-url", hapi.base_url],
            check=True,
            capture_output=True,
        )
        url = f"http://127.0.0.1:{_port()}"
        inbox = Path(tempfile.mkdtemp()) / "inbox.sqlite"
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapter",
                "serve",
                "--fhir-url",
                hapi.base_url,
                "--listen",
                url[7:],
                "--inbox",
                str(inbox),
            ],
            env={**os.environ, "SERVICE_API_KEYS": f"{KEY}:push"},
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        results = []
        for level in levels:
            bodies = [_bundle(f"c{level}-{int(time.time())}", n) for n in range(args.bundles)]
            latencies, wall = asyncio.run(_push_all(url, bodies, level))
            drain_start = time.perf_counter()
            while (counts := httpx.get(f"{url}/healthz").json()["inbox"]).get("accepted", 0) + counts.get(
                "processing", 0
            ):
                time.sleep(0.5)
            row = {
                "concurrency": level,
                "bundles": args.bundles,
                "accepted_per_second": round(args.bundles / wall, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(_quantile(latencies, 0.99) * 1000, 1),
                "processing_drained_after_s": round(time.perf_counter() - drain_start, 1),
                "dead": counts.get("dead", 0),
            }
            print(json.dumps(row))
            results.append(row)
        RESULTS.mkdir(exist_ok=True)
        report = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "results": results,
        }
        (RESULTS / "ingest-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if service is not None:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
        hapi.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
