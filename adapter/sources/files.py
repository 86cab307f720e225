"""Patient data from files: a FHIR Bundle (JSON) or a directory of Bulk Data ``$export`` NDJSON files.

Files are an edge like the ingestion service: what screening reads is checked here, so a broken file
ends with one error naming the file, the entry (or line) and the problem, never with a crash deep in
screening or a report built from half-understood data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapter.collector import collector_paused
from adapter.errors import InputError
from adapter.fhir.parsing import InvalidJson, fhir_problem, parse_fhir_json, unresolved_urn
from adapter.screening.reads import ScreeningReads
from mappings.clinical.record import RecordBuilder
from mappings.clinical.resource_types import SUBJECT_ELEMENT

log = logging.getLogger(__name__)

#: Types screening reads: validated against the FHIR R4 model. Other known types are skipped unread.
SCREENED_TYPES = frozenset({"Patient", "Medication", *SUBJECT_ELEMENT})


class SourceError(InputError, ValueError):
    """The input cannot be read; the message names the file (and line) and the problem."""


def _resource(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise SourceError(f"{where}: not a FHIR resource (no resourceType)")
    return value


def _checked(value: Any, where: str, reads: ScreeningReads | None) -> dict[str, Any]:
    """A resource of a known FHIR type, validated against the FHIR R4 model when screening reads it.

    With ``reads`` (None: validate every resource of a screened type), only resources whose content
    can change a result are validated: a hospital export's vital signs and ordinary diagnoses are
    never read, so a malformed one cannot stop a run, and model validation (~100-200 us a resource)
    is not paid for them.
    """
    resource = _resource(value, where)
    rtype = resource["resourceType"]
    validate = rtype in SCREENED_TYPES and (reads is None or reads.reads(resource))
    problem = fhir_problem(reads.read_part(resource) if reads else resource, validate=validate)
    if problem:
        raise SourceError(f"{where}: {problem}")
    return resource


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return parse_fhir_json(handle.read())
    except InvalidJson as exc:
        raise SourceError(f"{path}: {exc}") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None


def bundle_entries(bundle: Any, where: str) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(resource, fullUrl) for each entry of a Bundle."""
    bundle = _resource(bundle, where)
    if bundle["resourceType"] != "Bundle":
        raise SourceError(f"{where}: expected a Bundle, got {bundle['resourceType'][:100]}")
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


def _bundle_resources(
    path: Path, reads: ScreeningReads | None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """A Bundle file's resources, checked: valid FHIR, unique fullUrls (bdl-7), urn references resolved."""
    bundle = _read_json(path)
    history = isinstance(bundle, dict) and bundle.get("type") == "history"
    seen: set[tuple[str, Any]] = set()
    entries = list(bundle_entries(bundle, str(path)))
    full_urls = {full_url for _, full_url in entries if full_url}
    for index, (resource, full_url) in enumerate(entries):
        where = f"{path}: entry {index}"
        _checked(resource, where, reads)
        if full_url and not history:
            version = (resource.get("meta") or {}).get("versionId")
            if (full_url, version) in seen:
                raise SourceError(f"{where}: duplicate fullUrl {full_url[:200]}")
            seen.add((full_url, version))
        ref = unresolved_urn(resource, full_urls)
        if ref is not None:
            raise SourceError(f"{where}: reference {ref[:200]} points at no entry of the Bundle")
        yield resource, full_url


def parse_ndjson_line(
    raw: bytes, where: str, reads: ScreeningReads | None, defer: bool = False, skip_unread: bool = True
) -> dict[str, Any] | None:
    """One NDJSON line, checked; None when it is blank or a resource no criterion reads.

    ``defer``: an Observation screening reads is type-checked only; the caller validates the ones that
    decide (``check_resource``), so a long history is not validated result by result."""
    if skip_unread and reads is not None and reads.skippable_line(raw):
        return None  # a resource no criterion reads: not worth parsing
    if not raw.strip():
        return None
    try:
        value = parse_fhir_json(raw, positions=False)
    except InvalidJson as exc:
        raise SourceError(f"{where}: {exc}") from None
    if defer and isinstance(value, dict) and value.get("resourceType") == "Observation":
        resource = _resource(value, where)
    else:
        resource = _checked(value, where, reads)
    if b"urn:" in raw or b"\\u" in raw:  # the walk is costly; most lines cannot hold one
        ref = unresolved_urn(resource, frozenset())
        if ref is not None:
            raise SourceError(f"{where}: reference {ref[:200]} cannot be resolved in NDJSON")
    return resource


def check_resource(resource: dict[str, Any], where: str, reads: ScreeningReads | None) -> None:
    """The check ``parse_ndjson_line(defer=True)`` left to the caller."""
    _checked(resource, where, reads)


def _ndjson(path: Path, reads: ScreeningReads | None) -> Iterator[dict[str, Any]]:
    skipped = 0
    skippable = reads.skippable_line if reads is not None else None
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if skippable is not None and skippable(raw):
                    skipped += 1  # a resource no criterion reads: not worth parsing
                    continue
                resource = parse_ndjson_line(raw, f"{path}:{number}", reads, skip_unread=False)
                if resource is not None:
                    yield resource
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    if skipped:
        log.info("resources not read", extra={"file": path.name, "count": skipped})


def ndjson_files(path: Path) -> list[Path]:
    """The NDJSON files of an export directory (sorted: the order resources are read in), or the file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".ndjson" and p.is_file())
        if not files:
            raise SourceError(f"{path}: no .ndjson files (expected a Bulk Data export directory)")
        return files
    if path.is_file():
        return [path]
    raise SourceError(f"{path}: no such file or directory")


def load_records(path: Path, reads: ScreeningReads | None = None) -> RecordBuilder:
    """Read every resource under ``path`` into a RecordBuilder (one record per Patient).

    ``reads``: what screening reads; resources it never reads are not validated, and NDJSON lines of
    Observations it never reads are not parsed (None: parse and validate everything screened)."""
    with collector_paused():
        return _load(path, reads)


def _load(path: Path, reads: ScreeningReads | None) -> RecordBuilder:
    builder = RecordBuilder()
    if path.is_dir() or path.suffix == ".ndjson":
        for file in ndjson_files(path):
            for resource in _ndjson(file, reads):
                builder.add(resource)
    elif path.is_file():
        for resource, full_url in _bundle_resources(path, reads):
            builder.add(resource, full_url)
    else:
        raise SourceError(f"{path}: no such file or directory")
    return builder
