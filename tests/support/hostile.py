"""Broken input for the hostile-input tests (command line, files and service): a corpus of bad resources,
Bundle and NDJSON writers that keep broken bytes as they are, the one-line error check, test secrets."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.clinical import candidate_resources

PATIENT, CONDITION, CD7 = 0, 1, 4  # indexes in candidate_resources()


def assert_one_line_error(code: int, err: str, fragment: str, expected_code: int = 1) -> str:
    assert code == expected_code, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("trial-adapter: error: "), last
    assert "unexpected" not in last, last  # a clear error, not the catch-all for bugs
    assert fragment in last, last
    assert len(last) < 1000, last[:300]
    return last


def texts_of(resources: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in resources]


def bundle_bytes(texts: list[bytes], full_urls: list[str] | None = None) -> bytes:
    """A collection Bundle around resources given as JSON bytes (which may be broken on purpose)."""
    entries = []
    for index, text in enumerate(texts):
        full_url = full_urls[index] if full_urls else None
        prefix = b'{"fullUrl": ' + json.dumps(full_url).encode() + b", " if full_url else b"{"
        entries.append(prefix + b'"resource": ' + text + b"}")
    return b'{"resourceType": "Bundle", "type": "collection", "entry": [' + b", ".join(entries) + b"]}"


def write_bundle(path: Path, texts: list[bytes], full_urls: list[str] | None = None) -> Path:
    path.write_bytes(bundle_bytes(texts, full_urls))
    return path


def write_ndjson(folder: Path, texts: list[bytes]) -> Path:
    """One file per resource type, as a Bulk Data export has them."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    for text in texts:
        match = re.search(rb'"resourceType": "([^"]*)"', text)
        by_type.setdefault(match.group(1).decode() if match else "Broken", []).append(text)
    for rtype, lines in by_type.items():
        (folder / f"{rtype or 'Empty'}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return folder


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A bad resource: ``edit`` changes resource ``target`` of the candidate, as a dict or as JSON text."""

    id: str
    target: int
    edit: Callable[[Any], Any]
    text: bool  # edit works on the JSON bytes of the resource
    bundle_error: str
    ndjson_error: str | None = None  # default: the same as in a Bundle


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {**r, key: value}


def _drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {k: v for k, v in r.items() if k != key}


def _value(literal: bytes) -> Callable[[bytes], bytes]:
    return lambda text: text.replace(b'"value": 93.5', b'"value": ' + literal)


def _nested(depth: int) -> Callable[[bytes], bytes]:
    return lambda text: text[:-1] + b', "extension": ' + b"[" * depth + b"]" * depth + b"}"


BAD = [
    Bad("truncated-json", CD7, lambda t: t[: len(t) // 2], True, "invalid JSON"),
    Bad("non-utf8", PATIENT, lambda t: t.replace(b"Test", "Tést".encode("latin-1")), True, "not UTF-8"),
    Bad("unknown-resource-type", CD7, _set("resourceType", "Foo"), False, "unknown resource type 'Foo'"),
    Bad("no-resource-type", CD7, _drop("resourceType"), False, "not a FHIR resource (no resourceType)"),
    Bad("missing-status", CD7, _drop("status"), False, "Observation.status"),
    Bad("missing-subject", CONDITION, _drop("subject"), False, "Condition.subject: Field required"),
    Bad("birthdate-number", PATIENT, _set("birthDate", 20140615), False, "Patient.birthDate"),
    Bad("code-string", CONDITION, _set("code", "T-ALL"), False, "Condition.code"),
    Bad("coding-object", CONDITION, _set("code", {"coding": {"code": "x"}}), False, "Condition.code.coding"),
    Bad("id-number", PATIENT, _set("id", 5), False, "Patient.id"),
    Bad("gender-number", PATIENT, _set("gender", 1), False, "Patient.gender"),
    Bad("nan", CD7, _value(b"NaN"), True, "invalid FHIR JSON: NaN"),
    Bad("infinity", CD7, _value(b"Infinity"), True, "invalid FHIR JSON: Infinity"),
    Bad("minus-infinity", CD7, _value(b"-Infinity"), True, "invalid FHIR JSON: -Infinity"),
    Bad("1e400", CD7, _value(b"1e400"), True, "invalid FHIR JSON: number 1e400 is out of range"),
    Bad("400-digit-integer", CD7, _value(b"1" + b"0" * 400), True, "out of range"),
    Bad("5000-digit-integer", CD7, _value(b"1" + b"0" * 5000), True, "out of range"),
    Bad("impossible-birth-date", PATIENT, _set("birthDate", "2026-02-30"), False, "Patient.birthDate"),
    Bad(
        "impossible-effective-date",
        CD7,
        _set("effectiveDateTime", "2026-02-30"),
        False,
        "Observation.effectiveDateTime",
    ),
    Bad(
        "dangling-urn-reference",
        CD7,
        _set("subject", {"reference": "urn:uuid:7d3f6a4e-0000-4000-8000-000000000000"}),
        False,
        "points at no entry of the Bundle",
        "cannot be resolved in NDJSON",
    ),
    Bad("nesting-1000", PATIENT, _nested(1000), True, "nested too deeply"),
    Bad("nesting-100000", PATIENT, _nested(100_000), True, "nested too deeply"),
]


def bad_texts(case: Bad) -> list[bytes]:
    resources = candidate_resources()
    texts = texts_of(resources)
    if case.text:
        texts[case.target] = case.edit(texts[case.target])
    else:
        texts[case.target] = json.dumps(case.edit(copy.deepcopy(resources[case.target]))).encode()
    return texts


# --- security ----------------------------------------------------------------------------------

SECRETS = {
    "SERVICE_API_KEYS": "svc-key-9f8e7d6c5b4a39281706:push,svc-admin-0a1b2c3d4e5f60718293:admin",
    "FHIR_TOKEN": "fhir-token-5a4b3c2d1e0f99887766",
    "WORKER_NOTIFY_TOKEN": "notify-token-11223344556677889900",
    "SMART_CLIENT_ID": "smart-client-aabbccddeeff00112233",
}


# The hostile service tests' API keys (tests/integration/test_hostile_service.py); the PHI check
# (tests/zz_logs) makes sure none of them reaches the logs.
HOSTILE_PUSH_KEY = "hostile-push-key-5e6f7a8b9c0d1e2f"
HOSTILE_ADMIN_KEY = "hostile-admin-key-a1b2c3d4e5f60718"
HOSTILE_WRONG_KEY = "hostile-wrong-key-99aa88bb77cc66dd"
