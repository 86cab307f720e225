"""One timed measurement, run in its own process so its peak RSS is its own.

    python -m bench.measure STRATEGY --fhir-url URL [--as-of 2026-11-23]      # server strategies
    python -m bench.measure files --source DIR_OR_BUNDLE [--repeat N]          # no server

Prints one JSON object. Timing starts after imports and criteria loading (the same for every strategy)
and ends when the strategy is done: ``wall_s``. ``requests`` and ``bytes`` come from FhirClient's
``requests_sent`` / ``bytes_received`` (response bodies as received, i.e. decompressed JSON).
``peak_rss_mb`` is VmHWM from /proc/self/status of this process at the end (includes the
interpreter and imports, about ``rss_before_mb``).

Strategies:
  adapter        adapter.screening.run.screen_server (what `trial-adapter screen --fhir-url` does)
  adapter-warm   the same, timed on its second run in the process (a resident worker or service)
  naive          page through every Patient born in the 2-18 age window, then per patient one Condition
                 and one Observation search (concurrency 4 on one pool), then screen the ones with ALL
  lb-batches     lower bound: the adapter's own requests (population search + batch Bundles of 50,
                 4 in flight), nothing evaluated
  lb-one-batch   lower bound: population search + ONE batch Bundle holding all ALL patients
  lb-has         lower bound without the population round trip: one batch Bundle of 7 searches that
                 select the ALL patients server-side with _has (HAPI supports it), nothing evaluated
  files          adapter.screening.run.screen_files on an NDJSON directory or a Bundle (no server)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.fhir.search import any_of
from adapter.screening.reads import ScreeningReads
from adapter.screening.run import report_for, screen_files, screen_records, screen_server
from adapter.sources.files import load_records
from adapter.sources.server import PAGE_SIZE, ServerSource, observation_tokens, population_tokens
from mappings.clinical.record import RecordBuilder
from mappings.criteria import load_criteria

REPO = Path(__file__).resolve().parents[1]
CRITERIA = REPO / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
CONCURRENCY = 4  # the adapter's default; the naive script gets the same


def rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (reset by execve), not ru_maxrss, which on Linux keeps the
    forking parent's high-water mark across exec and so reported the parent's RSS in the first runs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _report_summary(report: Any) -> dict[str, Any]:
    candidates = sorted(p.patient for p in report.patients if p.status == "candidate")
    return {
        "screened": report.summary.screened,
        "candidates": report.summary.candidates,
        "candidates_sha1": hashlib.sha1("\n".join(candidates).encode()).hexdigest()[:12],
    }


async def adapter_warm(url: str, as_of: date) -> dict[str, Any]:
    """The adapter's second run in one process, as a resident worker or service runs every pass: the
    first run pays once for what a process builds on first use (the unit registry, FHIR model
    validators, terminology tables, lazily imported modules)."""
    await adapter(url, as_of)
    return await adapter(url, as_of)


async def adapter(url: str, as_of: date) -> dict[str, Any]:
    definition = load_criteria(CRITERIA)
    async with FhirClient(url, timeout=600) as client:
        t0 = time.perf_counter()
        report = await screen_server(client, definition, as_of)
        wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "requests": client.requests_sent,
            "bytes": client.bytes_received,
            **_report_summary(report),
        }


async def naive(url: str, as_of: date) -> dict[str, Any]:
    definition = load_criteria(CRITERIA)
    population = definition.population_concepts()
    youngest_birth = as_of.replace(year=as_of.year - 2)  # 2nd birthday on or before as-of
    oldest_birth = date(as_of.year - 19, as_of.month, as_of.day)  # born after this: not yet 19
    async with FhirClient(url, timeout=600) as client:
        t0 = time.perf_counter()
        patients = await client.search_resources(
            "Patient",
            [
                ("birthdate", f"gt{oldest_birth.isoformat()}"),
                ("birthdate", f"le{youngest_birth.isoformat()}"),
            ],
        )
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def fetch(patient: dict[str, Any]) -> tuple[dict[str, Any], list, list]:
            ref = f"Patient/{patient['id']}"
            async with semaphore:
                conditions = await client.search_resources("Condition", [("subject", ref)])
                observations = await client.search_resources("Observation", [("subject", ref)])
            return patient, conditions, observations

        fetched = await asyncio.gather(*(fetch(p) for p in patients))
        builder = RecordBuilder()
        for patient, conditions, observations in fetched:
            has_all = any(s.matching_coding(c.get("code")) for c in conditions for s in population)
            if has_all:  # a script keeps only the leukaemia patients before evaluating
                builder.add(patient)
                builder.add_all(conditions)
                builder.add_all(observations)
        results = screen_records(builder.records(), definition, as_of)
        report = report_for(definition, as_of, results)
        wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "requests": client.requests_sent,
            "bytes": client.bytes_received,
            "children_fetched": len(patients),
            **_report_summary(report),
        }


async def lb_batches(url: str, as_of: date, batch_size: int = 50) -> dict[str, Any]:
    definition = load_criteria(CRITERIA)
    async with FhirClient(url, timeout=600) as client:
        source = ServerSource(client, definition, batch_size=batch_size)
        t0 = time.perf_counter()
        ids = await source.population()
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def run(batch: list[str]) -> int:
            async with semaphore:
                return sum(map(len, await client.batch_searches(source._batch_requests(batch))))

        batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
        counts = await asyncio.gather(*(run(b) for b in batches))
        wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "requests": client.requests_sent,
            "bytes": client.bytes_received,
            "patients": len(ids),
            "resources": sum(counts),
        }


async def lb_has(url: str, as_of: date) -> dict[str, Any]:
    definition = load_criteria(CRITERIA)
    has = "_has:Condition:subject:code=" + any_of(population_tokens(definition))
    has_patient = "_has:Condition:patient:code=" + any_of(population_tokens(definition))  # Immunization
    obs = any_of(observation_tokens(definition))
    count = f"_count={PAGE_SIZE}"
    searches = [
        f"Patient?{has}&{count}",
        f"Condition?subject:Patient.{has}&{count}",
        f"Observation?subject:Patient.{has}&code={obs}&{count}",
        f"Procedure?subject:Patient.{has}&{count}",
        f"MedicationRequest?subject:Patient.{has}&_include=MedicationRequest:medication&{count}",
        f"MedicationStatement?subject:Patient.{has}&_include=MedicationStatement:medication&{count}",
        f"Immunization?patient:Patient.{has}&{count}",
    ]
    del has_patient
    async with FhirClient(url, timeout=600) as client:
        t0 = time.perf_counter()
        found = await client.batch_searches(searches)
        wall = time.perf_counter() - t0
        return {
            "wall_s": wall,
            "requests": client.requests_sent,
            "bytes": client.bytes_received,
            "patients": len(found[0]),
            "resources": sum(map(len, found)),
        }


def files(source: Path, as_of: date, repeat: int = 1) -> dict[str, Any]:
    """screen_files end to end (read, group, screen); and the screening alone on the loaded records."""
    definition = load_criteria(CRITERIA)
    # warm the one-time UCUM/pint registry (about 3 s, paid once per process) outside the timing
    from mappings.clinical import units

    units._registry()
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(repeat):
        report = screen_files(source, definition, as_of)
    wall = (time.perf_counter() - t0) / repeat
    cpu = (cpu_seconds() - c0) / repeat
    builder = load_records(source, ScreeningReads(definition))
    records = list(builder.records())
    t1 = time.perf_counter()
    for _ in range(repeat):
        screen_records(records, definition, as_of)
    engine_wall = (time.perf_counter() - t1) / repeat
    screened = report.summary.screened
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "screened": screened,
        "patients_per_s": screened / wall,
        # Screening is single-threaded: CPU seconds are what "per core" means, whatever else runs.
        "patients_per_cpu_s": screened / cpu,
        "engine_only_s": engine_wall,
        "engine_patients_per_s": screened / engine_wall,
        "candidates": report.summary.candidates,
        "repeat": repeat,
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.measure")
    parser.add_argument(
        "strategy",
        choices=["adapter", "adapter-warm", "naive", "lb-batches", "lb-one-batch", "lb-has", "files"],
    )
    parser.add_argument("--fhir-url")
    parser.add_argument("--source", type=Path)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    before = rss_mb()
    if args.strategy == "files":
        out = files(args.source, args.as_of, args.repeat)
    else:
        run = {
            "adapter": adapter,
            "adapter-warm": adapter_warm,
            "naive": naive,
            "lb-batches": lb_batches,
            "lb-has": lb_has,
            "lb-one-batch": lambda u, a: lb_batches(u, a, batch_size=10**6),
        }[args.strategy]
        out = asyncio.run(run(args.fhir_url, args.as_of))
    out.update(
        {"strategy": args.strategy, "rss_before_mb": round(before, 1), "peak_rss_mb": round(rss_mb(), 1)}
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
