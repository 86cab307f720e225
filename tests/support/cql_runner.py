"""Run a CQL library with the reference CQL engine (tools/cql-runner, built by `make cql-runner`).

``run_cql`` builds the runner with Maven when its classpath is missing or older than its sources (as
``make cql-runner`` does), then evaluates every Boolean define for every patient of a FHIR R4 Bundle.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tools" / "cql-runner"
CLASSPATH = RUNNER / "target" / "classpath.txt"


def _stale() -> bool:
    if not CLASSPATH.exists():
        return True
    built = CLASSPATH.stat().st_mtime
    sources = [RUNNER / "pom.xml", *(RUNNER / "src").rglob("*.java")]
    return any(s.stat().st_mtime > built for s in sources)


def build_runner() -> None:
    if _stale():
        subprocess.run(["mvn", "-B", "-q", "-f", str(RUNNER / "pom.xml"), "compile"], check=True, timeout=900)


def run_cql(library: Path, bundle: Path, as_of: date) -> dict[str, dict[str, bool | None]]:
    """patient id -> {define name -> True | False | None} from the reference engine."""
    build_runner()
    classpath = f"{RUNNER / 'target' / 'classes'}:{CLASSPATH.read_text().strip()}"
    done = subprocess.run(
        [
            "java",
            "-cp",
            classpath,
            "org.trialadapter.cql.Runner",
            str(library),
            str(bundle),
            as_of.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise AssertionError(f"cql-runner failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, dict[str, bool | None]] = json.loads(done.stdout)
    return result
