"""Ingestion at feed rate: HTTP and MLLP, accepted and processed per second, accept-to-flag latency.

    python -m bench.ingest [--payloads 400] [--clients 1,8] [--protocols http,mllp] [--backlog 5000]

Starts HAPI (tests/support/hapi.py, beside the service on this machine) and, per protocol and client
count, a fresh service (fresh inbox, processing on, as in production). Each payload is a new patient:
over HTTP a one-patient collection Bundle (~17 resources, an engine's usual shape, a trial candidate);
over MLLP an ADT^A08 with a relapsed-ALL DG1 (in the population, screened). Measured:

- accepted/s: payloads / the time the clients took to get every 202 / AA;
- processed/s: payloads / (last payload done - first payload received), from the inbox's own stamps;
- accept-to-flag p50/p99: ``finished_at - received_at`` per payload (done = forwarded, screened, flag
  written), from the inbox (SQLite, read after the run);
- backlog: that many payloads accepted with processing off, then the time a service takes to drain them.

Results go to bench/results/ingest-<timestamp>.json and ingest-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.hapi import build_jar, start_hapi
from tests.support.hl7v2 import adt
from tests.support.server import engine_bundle
from tests.support.service import MRN, free_port

KEY = "bench-key-0123456789abcdef"
RESULTS = Path(__file__).resolve().parent / "results"
ALL_IN_RELAPSE = "DG1|1||C91.02^ALL in relapse^I10C||20261001|F"  # ICD-10-CM, as tests/support/hl7v2.py


class Service:
    def __init__(self, hapi_url: str, workdir: Path, *extra: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.mllp_port = free_port()
        self.inbox = workdir / "inbox.sqlite"
        self.log = (workdir / "service.log").open("ab")
        command = [sys.executable, "-m", "adapter", "serve", "--fhir-url", hapi_url]
        command += ["--listen", self.url[7:], "--inbox", str(self.inbox)]
        command += ["--sources", str(workdir.parent / "sources.yaml")]
        command += ["--mllp-listen", f"127.0.0.1:{self.mllp_port}"]
        command += ["--mllp-facilities", str(workdir.parent / "facilities.txt"), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        self.started = time.perf_counter()
        while True:
            assert self.process.poll() is None, "the service stopped; see service.log"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/healthz", timeout=30).json()

    def drain(self, timeout: float = 3600) -> float:
        """Seconds until nothing is accepted or processing (from now)."""
        start = time.perf_counter()
        while True:
            counts = self.health()["inbox"]
            if not counts.get("accepted", 0) + counts.get("processing", 0):
                return time.perf_counter() - start
            assert time.perf_counter() - start < timeout, counts
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.log.close()


def _in_population(n: int, share: float) -> bool:
    """Payload n is for a patient in the study population (evenly spread: share 0.05 = 1 in 20)."""
    return (share > 0 and int(n * share) != int((n + 1) * share)) or share >= 1


def http_body(run: str, n: int, share: float) -> bytes:
    bundle = engine_bundle(f"{run}-{n}", date.today())
    if not _in_population(n, share):  # the hospital's other patients: the same record without the ALL
        bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Condition"]
    return json.dumps(bundle).encode()


def mllp_body(run: str, n: int, share: float) -> bytes:
    diagnosis = [ALL_IN_RELAPSE] if _in_population(n, share) else []
    return b"\x0b" + adt(f"B{run}{n}", f"{run}-{n}", "A08", *diagnosis) + b"\x1c\x0d"


async def _push_http(url: str, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/fhir+json"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                reply = await http.post(f"{url}/fhir", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert reply.status_code == 202, reply.text

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def _push_mllp(port: int, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                writer.write(body)
                await writer.drain()
                ack = await reader.readuntil(b"\x1c\x0d")
                latencies.append(time.perf_counter() - started)
                assert b"MSA|AA|" in ack or b"MSA|CA|" in ack, ack[:200]
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _inbox_times(inbox: Path) -> list[tuple[float, float | None, str]]:
    with sqlite3.connect(f"file:{inbox}?mode=ro", uri=True) as db:
        return db.execute("SELECT received_at, finished_at, state FROM inbox").fetchall()


def _push(protocol: str, service: Service, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    if protocol == "http":
        return asyncio.run(_push_http(service.url, bodies, clients))
    return asyncio.run(_push_mllp(service.mllp_port, bodies, clients))


def measure(
    hapi_url: str, root: Path, protocol: str, clients: int, payloads: int, share: float
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(dir=root))
    run = uuid.uuid4().hex[:8]
    make = http_body if protocol == "http" else mllp_body
    bodies = [make(run, n, share) for n in range(payloads)]
    service = Service(hapi_url, workdir)
    try:
        latencies, wall = _push(protocol, service, bodies, clients)
        service.drain()
        stats = service.health()["processing"]
    finally:
        service.stop()
    rows = _inbox_times(service.inbox)
    flagged = [finished - received for received, finished, state in rows if state == "done" and finished]
    first = min(r[0] for r in rows)
    last = max(r[1] or r[0] for r in rows)
    return {
        "protocol": protocol,
        "clients": clients,
        "payloads": payloads,
        "in_population": share,
        "accepted_per_second": round(payloads / wall, 1),
        "processed_per_second": round(payloads / (last - first), 1),
        "accept_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "accept_p99_ms": round(_quantile(latencies, 0.99) * 1000, 1),
        "accept_to_flag_p50_s": round(statistics.median(flagged), 2),
        "accept_to_flag_p99_s": round(_quantile(flagged, 0.99), 2),
        "done": len(flagged),
        "dead": sum(1 for r in rows if r[2] == "dead"),
        "processing": stats,
    }


def backlog(hapi_url: str, root: Path, payloads: int, share: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(dir=root))
    run = uuid.uuid4().hex[:8]
    bodies = [http_body(run, n, share) for n in range(payloads)]
    accepting = Service(hapi_url, workdir, "--no-processing")
    try:
        _, wall = _push("http", accepting, bodies, 8)
    finally:
        accepting.stop()
    service = Service(hapi_url, workdir)
    try:
        service.drain()
        drained = time.perf_counter() - service.started  # from the service's start
        stats = service.health()["processing"]
    finally:
        service.stop()
    rows = _inbox_times(service.inbox)
    return {
        "backlog": payloads,
        "in_population": share,
        "accepted_per_second_8_clients": round(payloads / wall, 1),
        "drain_seconds": round(drained, 1),
        "processed_per_second": round(payloads / drained, 1),
        "done": sum(1 for r in rows if r[2] == "done"),
        "dead": sum(1 for r in rows if r[2] == "dead"),
        "processing": stats,
    }


def _load() -> dict[str, Any]:
    one, five, _ = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payloads", type=int, default=400)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--protocols", default="http,mllp")
    parser.add_argument("--backlog", type=int, default=5000, help="0: skip the backlog measure")
    parser.add_argument(
        "--in-population",
        type=float,
        default=1.0,
        help="share of payloads for patients in the study population (1: every one a candidate, the "
        "worst case; 0.05: a hospital feed where 1 in 20 is an ALL patient); the others are not screened",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    (root / "sources.yaml").write_text(
        yaml.safe_dump({"sources": [{"name": "hospital", "keys": [KEY], "identifier_systems": [MRN]}]})
    )
    (root / "sources.yaml").chmod(0o600)
    (root / "facilities.txt").write_text("ADT1 hospital\nLAB1 hospital\n")
    hapi = start_hapi(build_jar())
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "before": _load()},
        "results": [],
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "adapter", "publish", "--fhir-url", hapi.base_url],
            check=True,
            capture_output=True,
        )
        for protocol in args.protocols.split(","):
            for clients in (int(c) for c in args.clients.split(",")):
                row = measure(hapi.base_url, root, protocol, clients, args.payloads, args.in_population)
                row["load"] = _load()
                print(json.dumps(row), flush=True)
                report["results"].append(row)
        if args.backlog:
            report["backlog"] = backlog(hapi.base_url, root, args.backlog, args.in_population)
            report["backlog"]["load"] = _load()
            print(json.dumps(report["backlog"]), flush=True)
    finally:
        hapi.stop()
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    stamp = report["when"].replace(":", "").replace("-", "").replace("+0000", "Z")
    (RESULTS / f"ingest-{stamp}-pop{args.in_population:g}.json").write_text(text)
    (RESULTS / "ingest-latest.json").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
