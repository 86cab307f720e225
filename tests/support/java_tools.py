"""The small Java tools the tests run (built by `make cql-runner` / `make r5-validator`, Maven Central):

- ``run_cql``: the exported CQL library with the reference CQL engine (tools/cql-runner);
- ``validate_r5``: FHIR R5 resources with HAPI's validator and the official R5 definitions, offline
  (tools/r5-validator).

Each tool is built with Maven when its classpath is missing or older than its sources (as make does).
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _classpath(tool: str) -> str:
    module = ROOT / "tools" / tool
    classpath = module / "target" / "classpath.txt"
    sources = [module / "pom.xml", *(module / "src").rglob("*.java")]
    if not classpath.exists() or any(s.stat().st_mtime > classpath.stat().st_mtime for s in sources):
        subprocess.run(["mvn", "-B", "-q", "-f", str(module / "pom.xml"), "compile"], check=True, timeout=900)
    return f"{module / 'target' / 'classes'}:{classpath.read_text().strip()}"


def run_cql(library: Path, bundle: Path, as_of: date) -> dict[str, dict[str, bool | None]]:
    """patient id -> {define name -> True | False | None} from the reference engine."""
    command = ["java", "-cp", _classpath("cql-runner"), "org.trialadapter.cql.Runner"]
    done = subprocess.run(
        [*command, str(library), str(bundle), as_of.isoformat()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise AssertionError(f"cql-runner failed ({done.returncode}): {done.stderr[-3000:]}")
    result: dict[str, dict[str, bool | None]] = json.loads(done.stdout)
    return result


def validate_r5(files: list[Path]) -> tuple[int, list[tuple[str, str, str, str]]]:
    """(exit code, [(severity, file, location, message)]): exit 1 when any issue is an error."""
    done = subprocess.run(
        ["java", "-cp", _classpath("r5-validator"), "org.trialadapter.validate.ValidateR5", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    issues = [tuple(line.split("\t", 3)) for line in done.stdout.splitlines() if line.count("\t") >= 3]
    return done.returncode, issues  # type: ignore[return-value]
