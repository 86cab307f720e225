import asyncio
import sys
import time
from pathlib import Path

from adapter.fhir.client import FhirClient
from adapter.sources.server import ServerSource
from mappings.criteria import load_criteria

d = load_criteria(Path("mappings/studies/NCT06849401/criteria.yaml"))


async def main(url):
    async with FhirClient(url, timeout=600) as c:
        src = ServerSource(c, d)
        t = time.perf_counter()
        ids = await src.population()
        print(f"population: {len(ids)} ids {time.perf_counter() - t:.3f}s")
        for search in src._batch_requests(ids[:50]):
            for rep in range(2):
                t = time.perf_counter()
                n0 = c.bytes_received
                res = await c.search_resources(
                    search.split("?")[0], [tuple(p.split("=", 1)) for p in search.split("?")[1].split("&")]
                )
                print(
                    f"{search.split('?')[0]:20s} {len(res):5d} res {(c.bytes_received - n0) / 1e3:7.1f} kB {time.perf_counter() - t:.3f}s"
                )


asyncio.run(main(sys.argv[1]))
