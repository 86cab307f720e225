"""Helpers to put test data on a FHIR server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_BUNDLE = ROOT / "adapter" / "samples" / "nct06849401-sample-bundle.json"
PROFILE_DIR = ROOT / "fhir_profiles" / "fsh-generated" / "resources"
CONFORMANCE_TYPES = ("StructureDefinition", "CodeSystem", "ValueSet")


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle as a transaction of PUT Type/id, so the server keeps the ids."""
    entries = []
    for entry in bundle.get("entry") or ():
        resource = entry["resource"]
        url = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def sample_bundle() -> dict[str, Any]:
    return json.loads(SAMPLE_BUNDLE.read_text(encoding="utf-8"))


def conformance_resources() -> list[dict[str, Any]]:
    """Our compiled profiles, extensions, CodeSystem and ValueSets (not the examples)."""
    out = []
    for path in sorted(PROFILE_DIR.glob("*.json")):
        if path.name.split("-", 1)[0] in CONFORMANCE_TYPES:
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out
