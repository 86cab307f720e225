"""Forwarding pushed data to the FHIR server (the system of record) so that repeats never duplicate.

Every entry becomes an idempotent request in one transaction:
- a resource with a business identifier: conditional update on it (``PUT Type?identifier=s|v``);
- otherwise: ``PUT Type/<id>`` with an id derived from the engine's own id (or, lacking one, from the
  content), so the same resource pushed again lands on the same server resource. Engines' ids are
  often numeric, which many servers refuse as client ids; derived ids are always acceptable.
References between entries are rewritten to deterministic ``urn:uuid`` full URLs that the server
resolves, so they hold whatever ids the server ends up using.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote

from adapter.fhir.search import token
from adapter.screening.record import SUBJECT_ELEMENT, normalise_reference
from mappings.resources import rewrite_references


def _identity(resource: dict[str, Any]) -> tuple[str, str]:
    """(kind, key) naming this resource across pushes: an identifier, the engine id, or the content."""
    rtype = resource["resourceType"]
    for identifier in resource.get("identifier") or ():
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return "identifier", f"{identifier['system']}|{identifier['value']}"
    if resource.get("id"):
        return "id", f"{rtype}/{resource['id']}"
    content = json.dumps(resource, sort_keys=True, separators=(",", ":"))
    return "content", hashlib.sha256(content.encode()).hexdigest()


def derived_id(rtype: str, key: str) -> str:
    # Alphanumeric with a letter first: valid as a client-assigned id on every server.
    return "ta" + hashlib.sha256(f"{rtype}|{key}".encode()).hexdigest()[:40]


def to_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = bundle.get("entry") or []
    plans = []
    aliases: dict[str, str] = {}
    for entry in entries:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        kind, key = _identity(resource)
        urn = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{rtype}|{kind}|{key}')}"
        for name in (entry.get("fullUrl"), f"{rtype}/{resource['id']}" if resource.get("id") else None):
            if name:
                aliases[name] = urn
        plans.append((resource, rtype, kind, key, urn))
    out = []
    for resource, rtype, kind, key, urn in plans:
        body = rewrite_references({k: v for k, v in resource.items() if k not in ("id", "meta")}, aliases)
        if kind == "identifier":
            system, _, value = key.partition("|")
            request = {"method": "PUT", "url": f"{rtype}?identifier={quote(token(system, value), safe='')}"}
        else:
            new_id = derived_id(rtype, key)
            body["id"] = new_id
            request = {"method": "PUT", "url": f"{rtype}/{new_id}"}
        out.append({"fullUrl": urn, "resource": body, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": out}


def touched_patients(transaction: dict[str, Any], reply: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Patient ids the forwarded data is about: (known ids, conditional references to resolve)."""
    located: dict[str, str] = {}
    for entry, response in zip(transaction["entry"], reply.get("entry") or (), strict=False):
        location = normalise_reference(((response or {}).get("response") or {}).get("location"))
        if location:  # relative or absolute, with or without /_history/n
            located[entry["fullUrl"]] = location
    patients: set[str] = set()
    conditional: set[str] = set()
    for entry in transaction["entry"]:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if rtype == "Patient":
            ref = located.get(entry["fullUrl"]) or ""
        elif rtype in SUBJECT_ELEMENT:
            raw = (resource.get(SUBJECT_ELEMENT[rtype]) or {}).get("reference") or ""
            ref = located.get(raw, raw)
        else:
            continue
        if ref.startswith("Patient?"):
            conditional.add(ref)
        elif ref.startswith("Patient/"):
            patients.add(ref.split("/")[1])
    return patients, conditional
