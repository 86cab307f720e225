"""Bulk Data exports (NDJSON) written for tests: the bundled sample as an export, and the line writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parents[2] / "adapter" / "samples" / "nct06849401-sample-bundle.json"


def compact(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode() + b"\n"


def write(folder: Path, files: dict[str, list[bytes]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (folder / name).write_bytes(b"".join(lines))
    return folder


def sample_export(folder: Path) -> Path:
    """The bundled sample population as an NDJSON export, one file per resource type."""
    bundle = json.loads(SAMPLE.read_text())
    by_type: dict[str, list[bytes]] = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(compact(entry["resource"]))
    return write(folder, {f"{t}.ndjson": lines for t, lines in by_type.items()})
