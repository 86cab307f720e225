"""A dense hospital for the files benchmarks (issue 18): real-shaped density, the same ALL population.

    python -m bench.dense --patients 2000 --out /tmp/dense-2k            # bench.synth people, dense
    python -m bench.dense --patients 2000 --out /tmp/dense-2k --synthea  # Synthea people (Java 17)

Everyone but the leukaemia population is either
- a **Synthea** person (MITRE Synthea 3.3.0 from Maven Central, run with a fixed seed; the jar and its
  dependencies are fetched with Maven into ``~/.cache/trial-adapter-bench``, never into the repository;
  US-Core-shaped R4, hundreds of resources each, Claims and EOBs included), or
- a **bench.synth** person made dense: 120-150 routine Observations plus 25-35 panels of the labs the
  criteria read (bilirubin, creatinine, AST, ALT, platelets: the commonest results of every patient),
  ~280 Observations each.

The leukaemia population is fixed at every size: bench.synth's 40 T-ALL and 20 other-ALL patients
(indexes 0-59, ids ``p0000000``-``p0000059``), each with 6 months of daily CBC/chemistry (days 30-210
before the as-of date, older than their deciding results), monthly marrow studies and quarterly echo.
Same (size, seed): the same bytes (Synthea with ``-s``/``-cs`` seeds and a fixed reference date).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

from adapter.samples.vocabulary import BM_BLASTS, LVEF
from bench.synth import Options, PatientBuilder, _dumps, patient_resources

CACHE = Path.home() / ".cache" / "trial-adapter-bench"
SYNTHEA = "org.mitre.synthea:synthea:3.3.0"
ALL_KINDS = ["t"] * 40 + ["b"] * 20
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>synthea-runner</artifactId><version>1</version>
<dependencies><dependency><groupId>org.mitre.synthea</groupId><artifactId>synthea</artifactId>
<version>3.3.0</version></dependency></dependencies></project>
"""


def leukaemia_patient(index: int, opts: Options) -> list[dict[str, Any]]:
    """bench.synth's ALL patient ``index`` plus months of daily labs, marrow studies and echo."""
    resources = patient_resources(index, ALL_KINDS[index], opts)
    pid = resources[0]["id"]
    rng = random.Random(f"{opts.seed}:{index}:dense")
    b = PatientBuilder(f"{pid}-h", rng, opts)
    b.patient = resources[0]
    b.pid = pid
    molar = rng.random() < 0.4
    for days in range(30, 211):
        b.labs(
            days,
            molar=molar,
            creatinine_mg=round(rng.uniform(0.3, 1.4), 2),
            bilirubin_mg=round(rng.uniform(0.2, 2.0), 1),
            platelets=float(rng.randint(8, 400)),
        )
    for days in range(30, 211, 30):
        b.measured(BM_BLASTS, days, float(rng.randint(1, 90)), "%")
    for days in range(30, 211, 90):
        b.measured(LVEF, days, float(rng.randint(45, 70)), "%", category="imaging")
    for res in b.resources:  # ids unique within the patient: prefix them apart from the base record
        res["id"] = f"{pid}-h{res['id'].removeprefix(f'{pid}-')}"
    return resources + b.resources


def dense_person(index: int, opts: Options) -> list[dict[str, Any]]:
    """A bench.synth person with routine noise and the criteria's common labs, ~280 Observations."""
    resources = patient_resources(index, None, opts)
    rng = random.Random(f"{opts.seed}:{index}:dense")
    b = PatientBuilder(resources[0]["id"], rng, opts)
    b._serial = 10_000  # ids after the base record's
    for _ in range(rng.randint(25, 35)):
        b.labs(
            rng.randint(-2, 1500),
            molar=rng.random() < 0.3,
            creatinine_mg=round(rng.uniform(0.4, 1.3), 2),
            bilirubin_mg=round(rng.uniform(0.2, 1.4), 1),
            platelets=float(rng.randint(120, 420)),
        )
    return resources + b.resources


def synthea_dir(people: int, seed: int) -> Path:
    """Synthea's Bulk NDJSON for ``people`` people (cached per size and seed)."""
    out = CACHE / f"synthea-{people}-s{seed}"
    fhir = out / "fhir"
    if (out / "done").exists():
        return fhir
    lib = CACHE / "lib"
    if not (lib / "synthea-3.3.0.jar").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "pom.xml").write_text(_POM)
        subprocess.run(
            ["mvn", "-q", "-B", f"-Dmaven.repo.local={CACHE / 'm2'}", "-f", str(CACHE / "pom.xml"),
             "dependency:copy-dependencies", f"-DoutputDirectory={lib}"],
            check=True,
        )  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        ["java", "-Xmx3g", "-cp", f"{lib}/*", "App", "-s", str(seed), "-cs", str(seed), "-r", "20261123",
         "-p", str(people), "--exporter.fhir.bulk_data=true", f"--exporter.baseDirectory={out}",
         "--exporter.years_of_history=10", "--exporter.hospital.fhir.export=false",
         "--exporter.practitioner.fhir.export=false", "--generate.only_alive_patients=false",
         "Massachusetts"],
        check=True, cwd=CACHE, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    (out / "done").touch()
    return fhir


def write_dense(n: int, out: Path, seed: int = 7, synthea: bool = False) -> dict[str, int]:
    """``out/<Type>.ndjson``: the 60 ALL patients plus ``n - 60`` other people."""
    opts = Options(seed=seed, obs_min=120, obs_max=150)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ndjson"):
        old.unlink()
    counts: dict[str, int] = {}
    handles: dict[str, Any] = {}

    def write(line: str, rtype: str) -> None:
        handle = handles.get(rtype)
        if handle is None:
            handle = handles[rtype] = (out / f"{rtype}.ndjson").open("a", encoding="utf-8")
        handle.write(line)
        counts[rtype] = counts.get(rtype, 0) + 1

    try:
        for index in range(len(ALL_KINDS)):
            for res in leukaemia_patient(index, opts):
                write(_dumps(res) + "\n", res["resourceType"])
        others = max(0, n - len(ALL_KINDS))
        if synthea:
            for file in sorted(synthea_dir(others, seed).glob("*.ndjson")):
                with file.open(encoding="utf-8") as lines:
                    for line in lines:
                        write(line if line.endswith("\n") else line + "\n", file.stem)
        else:
            for index in range(len(ALL_KINDS), len(ALL_KINDS) + others):
                for res in dense_person(index, opts):
                    write(_dumps(res) + "\n", res["resourceType"])
    finally:
        for handle in handles.values():
            handle.close()
    manifest = {"patients": n, "seed": seed, "synthea": synthea, "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dense", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--synthea", action="store_true", help="Synthea people (Java 17 + Maven)")
    args = parser.parse_args(argv)
    counts = write_dense(args.patients, args.out, args.seed, args.synthea)
    print(json.dumps({"out": str(args.out), "total": sum(counts.values()), "counts": counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
