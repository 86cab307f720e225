"""Prototype of the proposed files-path fixes (monkeypatched, nothing in adapter/ edited)."""

import functools
import json
import re
import sys
import time
from datetime import date
from pathlib import Path

from adapter.screening import units
from adapter.screening.record import RecordBuilder
from adapter.screening.run import screen_files, screen_records
from adapter.sources.server import observation_tokens
from mappings.criteria import ConceptSet, load_criteria

d = load_criteria(Path("mappings/studies/NCT06849401/criteria.yaml"))
units._registry()
src = Path(sys.argv[1])
as_of = date(2026, 11, 23)
n = json.loads((src / "manifest.json").read_text())["patients"]

t = time.perf_counter()
rep = screen_files(src, d, as_of)
base = time.perf_counter() - t
print(f"baseline screen_files: {base:.2f}s {n / base:.0f} patients/s, candidates {rep.summary.candidates}")

codes = sorted({tok.split("|", 1)[1] for tok in observation_tokens(d)})
needed = re.compile(b"|".join(re.escape(f'"code":"{c}"'.encode()) for c in codes))
pop = d.population_concepts()


def load(src, prefilter=True):
    b = RecordBuilder()
    for f in sorted(src.glob("*.ndjson")):
        obs = f.stem == "Observation"
        with f.open("rb") as fh:
            for line in fh:
                if prefilter and obs and not needed.search(line):
                    continue  # an Observation no criterion reads: never parsed
                b.add(json.loads(line))
    return b


def in_population(rec):
    return any(s.matching_coding(c.get("code")) for c in rec.of_type("Condition") for s in pop)


t = time.perf_counter()
b = load(src)
recs = list(b.records())
t_load = time.perf_counter() - t
t = time.perf_counter()
res = screen_records(recs, d, as_of)
t_scr = time.perf_counter() - t
print(
    f"A prefilter obs: load {t_load:.2f}s screen-all {t_scr:.2f}s -> {n / (t_load + t_scr):.0f} patients/s, candidates {sum(r.status == 'candidate' for r in res)}"
)
t = time.perf_counter()
pop_recs = [r for r in recs if in_population(r)]
res = screen_records(pop_recs, d, as_of)
t_pop = time.perf_counter() - t
print(
    f"A+B population only: load {t_load:.2f}s screen {len(pop_recs)} in {t_pop:.2f}s -> {n / (t_load + t_pop):.0f} hospital patients/s, candidates {sum(r.status == 'candidate' for r in res)}"
)
orig = ConceptSet.matches
ConceptSet.matches = functools.lru_cache(maxsize=None)(orig)
t = time.perf_counter()
res = screen_records(recs, d, as_of)
t_c = time.perf_counter() - t
print(
    f"C memoised ConceptSet.matches: screen-all {t_scr:.2f}s -> {t_c:.2f}s ({n / t_c:.0f}/s engine), candidates {sum(r.status == 'candidate' for r in res)}"
)
