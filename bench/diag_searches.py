"""Time each search of the adapter's batch on a loaded server (twice: cold, then warm).

python -m bench.diag_searches http://127.0.0.1:8080/fhir
"""

import asyncio
import sys
import time
from pathlib import Path

from adapter.fhir.client import FhirClient
from adapter.sources.server import ServerSource
from mappings.criteria import load_criteria

CRITERIA = Path("mappings/studies/NCT06849401/criteria.yaml")


async def main(url: str) -> None:
    definition = load_criteria(CRITERIA)
    async with FhirClient(url, timeout=600) as c:
        src = ServerSource(c, definition)
        t = time.perf_counter()
        ids = await src.population()
        print(f"population: {len(ids)} ids {time.perf_counter() - t:.3f}s")
        for search in src._batch_requests(ids[:50]):
            kind, _, query = search.partition("?")
            params = [(name, value) for name, _, value in (p.partition("=") for p in query.split("&"))]
            for _cold_then_warm in range(2):
                t = time.perf_counter()
                n0 = c.bytes_received
                res = await c.search_resources(kind, params)
                print(
                    f"{kind:20s} {len(res):5d} res {(c.bytes_received - n0) / 1e3:7.1f} kB {time.perf_counter() - t:.3f}s"
                )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
