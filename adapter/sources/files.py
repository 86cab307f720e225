"""Patient data from files: a FHIR Bundle (JSON) or a directory of Bulk Data ``$export`` NDJSON files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapter.screening.record import RecordBuilder


class SourceError(ValueError):
    """The input cannot be read; the message names the file (and line) and the problem."""


def _resource(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise SourceError(f"{where}: not a FHIR resource (no resourceType)")
    return value


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise SourceError(f"{path}: JSON nested too deeply") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None


def bundle_entries(bundle: Any, where: str) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(resource, fullUrl) for each entry of a Bundle."""
    bundle = _resource(bundle, where)
    if bundle["resourceType"] != "Bundle":
        raise SourceError(f"{where}: expected a Bundle, got {bundle['resourceType']}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise SourceError(f"{where}: Bundle.entry must be a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "resource" not in entry:
            continue  # e.g. a transaction-response entry or a DELETE
        full_url = entry.get("fullUrl")
        yield (
            _resource(entry["resource"], f"{where}: entry {index}"),
            full_url if isinstance(full_url, str) else None,
        )


def _ndjson(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    value = json.loads(raw)
                except UnicodeDecodeError:
                    raise SourceError(f"{path}:{number}: not UTF-8 text") from None
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
                except RecursionError:
                    raise SourceError(f"{path}:{number}: JSON nested too deeply") from None
                yield _resource(value, f"{path}:{number}")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None


def load_records(path: Path) -> RecordBuilder:
    """Read every resource under ``path`` into a RecordBuilder (one record per Patient)."""
    builder = RecordBuilder()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file())
        if not files:
            raise SourceError(f"{path}: no .ndjson files (expected a Bulk Data export directory)")
        for file in files:
            for resource in _ndjson(file):
                builder.add(resource)
    elif path.is_file():
        if path.suffix == ".ndjson":
            for resource in _ndjson(path):
                builder.add(resource)
        else:
            for resource, full_url in bundle_entries(_read_json(path), str(path)):
                builder.add(resource, full_url)
    else:
        raise SourceError(f"{path}: no such file or directory")
    return builder
