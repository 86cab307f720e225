"""Seeded synthetic hospital for the NCT06849401 benchmarks (standard library only).

``generate(n, seed, as_of)`` yields, patient by patient, FHIR R4 resources (plain dicts) for a hospital
of ``n`` people:

* everyone (all ages 0-95, roughly a population pyramid) gets the ordinary noise of a hospital record:
  ``obs_min``-``obs_max`` vital-sign / routine-lab Observations (LOINC codes no criterion reads), a few
  non-leukaemia Conditions, Encounters, and some Immunizations, MedicationRequests and Procedures;
* a FIXED number of B-lineage / lineage-unstated ALL patients (``b_all``, default 20) and of T-ALL patients
  (``t_all``, default 40), independent of ``n``, so a strategy whose cost follows the ALL population
  costs the same at 1k and 100k. T-ALL patients vary: relapsed / refractory / newly diagnosed /
  in remission, CD7 by local code or LOINC, labs in mg/dL or umol/L with reference ranges, stale and
  future-dated results, entered-in-error records, CNS involvement, prior CAR-T, recent vaccination,
  pregnancy, death, ages in and out of 2-18, no birth date.

Same (n, seed, as_of, options): byte-identical output. Each patient draws from its own
``random.Random(f"{seed}:{index}")``, so patient 17 is the same person in the 1k and the 100k hospital
unless the (seeded) choice of ALL positions lands on it.

Writes a Bulk Data layout (one NDJSON file per resource type) and/or transaction Bundles of PUTs:

    python -m bench.synth --patients 10000 --out /tmp/synth-10k [--bundles 500] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from adapter.samples.vocabulary import AS_OF
from bench.synth_leukaemia import b_all_record, t_all_record
from bench.synth_patient import Options, PatientBuilder, age_years

# bench/dense.py, run.py and serve.py import these from here.
__all__ = [
    "AS_OF",
    "Options",
    "PatientBuilder",
    "all_patient_ids",
    "generate",
    "patient_resources",
    "write_bundles",
    "write_ndjson",
]


def _all_positions(n: int, opts: Options) -> dict[int, str]:
    wanted = min(n, opts.t_all + opts.b_all)
    chosen = random.Random(f"{opts.seed}:all-positions:{n}").sample(range(n), wanted)
    return {pos: ("t" if i < opts.t_all else "b") for i, pos in enumerate(chosen)}


def patient_resources(index: int, kind: str | None, opts: Options) -> list[dict[str, Any]]:
    """All resources of patient ``index``: ``kind`` None (no leukaemia), "t" (T-ALL) or "b" (other ALL)."""
    rng = random.Random(f"{opts.seed}:{index}")
    pid = f"p{index:07d}"
    b = PatientBuilder(pid, rng, opts)
    female = rng.random() < 0.5
    age: int | None = age_years(rng)
    deceased = None
    variant = random.Random(f"{opts.seed}:{index}:{kind}")
    if kind is not None:
        # ALL patients are mostly children, some young adults and toddlers (out of the 2-18 range)
        age = variant.choices(
            [variant.randint(2, 18), variant.randint(19, 30), 1, None], weights=[80, 12, 4, 4]
        )[0]
        if kind == "t" and variant.random() < 0.06:
            deceased = f"{b.day(variant.randint(2, 100))}T04:10:00Z"
    b.add_patient("female" if female else "male", b.birth(age) if age is not None else None, deceased)
    b.hospital_noise(age if age is not None else 10)
    if kind == "t":
        t_all_record(b, variant, female, age)
    elif kind == "b":
        b_all_record(b, variant)
    return b.resources


def generate(n: int, opts: Options | None = None) -> Iterator[dict[str, Any]]:
    opts = opts or Options()
    positions = _all_positions(n, opts)
    for index in range(n):
        yield from patient_resources(index, positions.get(index), opts)


def all_patient_ids(n: int, opts: Options | None = None) -> dict[str, str]:
    """``{patient id: "t" | "b"}`` for the ALL patients of a hospital of ``n``."""
    opts = opts or Options()
    return {f"p{pos:07d}": kind for pos, kind in _all_positions(n, opts).items()}


def _dumps(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def write_ndjson(n: int, out: Path, opts: Options | None = None) -> dict[str, int]:
    """Bulk Data layout: ``out/<Type>.ndjson``. Returns resource counts per type."""
    out.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for res in generate(n, opts):
            rtype = res["resourceType"]
            fh = handles.get(rtype)
            if fh is None:
                fh = handles[rtype] = (out / f"{rtype}.ndjson").open("w", encoding="utf-8")
            fh.write(_dumps(res) + "\n")
            counts[rtype] = counts.get(rtype, 0) + 1
    finally:
        for fh in handles.values():
            fh.close()
    (out / "manifest.json").write_text(
        json.dumps({"patients": n, "seed": (opts or Options()).seed, "counts": counts}, indent=2) + "\n"
    )
    return counts


def transaction_bundles(resources: Iterator[dict[str, Any]], size: int = 500) -> Iterator[dict[str, Any]]:
    """Transaction Bundles of ``size`` PUTs (client-assigned ids, so references stay valid)."""
    entries: list[dict[str, Any]] = []
    for res in resources:
        key = f"{res['resourceType']}/{res['id']}"
        entries.append({"fullUrl": key, "resource": res, "request": {"method": "PUT", "url": key}})
        if len(entries) >= size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write_bundles(n: int, out: Path, size: int = 500, opts: Options | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, bundle in enumerate(transaction_bundles(generate(n, opts), size), start=1):
        (out / f"bundle-{count:05d}.json").write_text(_dumps(bundle), encoding="utf-8")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF)
    parser.add_argument("--t-all", type=int, default=40)
    parser.add_argument("--b-all", type=int, default=20)
    parser.add_argument("--obs-min", type=int, default=20)
    parser.add_argument("--obs-max", type=int, default=60)
    parser.add_argument(
        "--bundles",
        type=int,
        default=0,
        metavar="SIZE",
        help="also write transaction Bundles of SIZE PUT entries under OUT/bundles/",
    )
    args = parser.parse_args(argv)
    opts = Options(args.seed, args.as_of, args.t_all, args.b_all, args.obs_min, args.obs_max)
    counts = write_ndjson(args.patients, args.out, opts)
    print(json.dumps({"out": str(args.out), "counts": counts, "total": sum(counts.values())}))
    if args.bundles:
        write_bundles(args.patients, args.out / "bundles", args.bundles, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
