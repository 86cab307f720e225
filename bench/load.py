"""Fast, bounded loader: FHIR resources into a server as transaction Bundles of client-id PUTs.

    python -m bench.load --fhir-url http://127.0.0.1:8080/fhir --source /tmp/synth-10k [--bundle-size 500]

``--source`` is a Bulk Data NDJSON directory (e.g. written by ``bench.synth``). PUT with the resource's
own id keeps every reference valid whatever the order, and a resend after a lost answer is harmless
(so bundles are retried as idempotent). At most ``--concurrency`` (default 2) bundles are in flight:
the machine is shared, and HAPI on 2 cores does not go faster with more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapter.fhir.client import FhirClient

# Patients first, then the rest; with referential integrity off the order is not needed, but it keeps a
# partially loaded server coherent.
TYPE_ORDER = [
    "Patient",
    "Encounter",
    "Condition",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "Observation",
]


@dataclass
class LoadStats:
    resources: int
    bundles: int
    seconds: float
    bytes_sent: int

    @property
    def per_second(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "resources_per_second": round(self.per_second, 1)}


def ndjson_resources(source: Path) -> Iterator[dict[str, Any]]:
    files = sorted(
        source.glob("*.ndjson"),
        key=lambda p: (TYPE_ORDER.index(p.stem) if p.stem in TYPE_ORDER else 99, p.name),
    )
    for path in files:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def put_bundles(resources: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[bytes, int]]:
    """Serialised transaction Bundles of ``size`` PUT entries, and their entry counts."""
    entries: list[str] = []

    def flush() -> bytes:
        return ('{"resourceType":"Bundle","type":"transaction","entry":[' + ",".join(entries) + "]}").encode()

    for res in resources:
        key = f"{res['resourceType']}/{res['id']}"
        entries.append(
            '{"fullUrl":'
            + json.dumps(key)
            + ',"resource":'
            + json.dumps(res, separators=(",", ":"))
            + ',"request":{"method":"PUT","url":'
            + json.dumps(key)
            + "}}"
        )
        if len(entries) >= size:
            yield flush(), len(entries)
            entries = []
    if entries:
        yield flush(), len(entries)


async def load(
    client: FhirClient,
    resources: Iterable[dict[str, Any]],
    *,
    bundle_size: int = 500,
    concurrency: int = 2,
    progress: bool = False,
) -> LoadStats:
    queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue(maxsize=concurrency * 2)
    done = {"resources": 0, "bundles": 0, "bytes": 0}
    t0 = time.perf_counter()

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            body, count = item
            response = await client._http.post(  # raw bytes: no re-serialisation of 500 resources
                client.url,
                content=body,
                headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
            )
            if response.status_code >= 400:
                raise RuntimeError(f"load failed: HTTP {response.status_code}: {response.text[:500]}")
            done["resources"] += count
            done["bundles"] += 1
            done["bytes"] += len(body)
            if progress and done["bundles"] % 50 == 0:
                rate = done["resources"] / (time.perf_counter() - t0)
                print(f"  loaded {done['resources']} resources ({rate:.0f}/s)", file=sys.stderr, flush=True)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for item in put_bundles(resources, bundle_size):
            await queue.put(item)
            for w in workers:
                if w.done():
                    w.result()  # surface a worker's failure at once
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return LoadStats(done["resources"], done["bundles"], time.perf_counter() - t0, done["bytes"])


async def load_directory(
    url: str, source: Path, *, bundle_size: int = 500, concurrency: int = 2, progress: bool = False
) -> LoadStats:
    async with FhirClient(url, timeout=600, max_connections=concurrency) as client:
        return await load(
            client,
            ndjson_resources(source),
            bundle_size=bundle_size,
            concurrency=concurrency,
            progress=progress,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fhir-url", required=True)
    parser.add_argument("--source", type=Path, required=True, help="directory of NDJSON files")
    parser.add_argument("--bundle-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2, choices=[1, 2, 3])
    args = parser.parse_args(argv)
    stats = asyncio.run(
        load_directory(
            args.fhir_url,
            args.source,
            bundle_size=args.bundle_size,
            concurrency=args.concurrency,
            progress=True,
        )
    )
    print(json.dumps(stats.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
