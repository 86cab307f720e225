"""Forwarding pushed data to the FHIR server (the system of record): scoped by source, never duplicated.

Every entry becomes an idempotent request, and every identity is the source's own:
- an identifier in a system the source is authoritative for: conditional update on it
  (``PUT Type?identifier=s|v``). A Patient can only be written this way (checked before acceptance);
- otherwise ``PUT Type/<id>`` with an id derived from the source, the type, the engine's id and the
  patient it is about (or the source's namespaced identifier, or the content). Two sources, or one
  engine reusing ids across patients, can never land on the same server resource; an engine whose ids
  are unique only per message (``engine_ids: per-message``) gets ids scoped by the message's content;
- an entry addressed to a server id (``request: PUT Type/<id>``) updates that resource if the source may
  (see ``processor``), never a copy of it;
- an entry the sender asked to create only (``request: POST`` with ``ifNoneExist``) and that has an
  authoritative identifier becomes a conditional create on that identifier: it links to the resource
  already there and never changes it (a lab result's minimal PID must not rewrite demographics).
Identifiers in systems the source is not authoritative for are namespaced (system ``SOURCE_SYSTEM/<name>``,
value ``system|value``), so they never match another source's conditional update. Every resource
carries ``meta.source`` and each transaction a Provenance naming the source (agent) and the payload.

Collection and batch Bundles are split into transactions of at most ``max_entries`` (referenced entries
first, so each reference points into the same or an earlier transaction); a transaction Bundle, which
asks for all-or-nothing, is forwarded whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.parsing import references_in
from adapter.fhir.transaction import identifier_condition, rewrite_references, transaction, uuid_urn
from mappings.clinical.resource_types import SUBJECT_ELEMENT

from .checks import InputError
from .sources import SOURCE_SYSTEM, Source

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
# Provenance.agent.type "author" ("a party that originates the resource"):
# https://hl7.org/fhir/R4/codesystem-provenance-agent-type.html
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
CODE_ELEMENTS = ("code", "vaccineCode", "medicationCodeableConcept")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """The hash an idempotency key is bound to: the same JSON content, however it is formatted."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def derived_id(*parts: str) -> str:
    # Alphanumeric with a letter first: valid as a client-assigned id on every server.
    return "ta" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def _identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (i["system"], i["value"])
        for i in resource.get("identifier") or ()
        if isinstance(i, dict) and isinstance(i.get("system"), str) and i["system"] and i.get("value")
    ]


def authoritative_identifier(resource: dict[str, Any], source: Source) -> tuple[str, str] | None:
    return next(((s, v) for s, v in _identifiers(resource) if source.authoritative_for(s)), None)


def _conditional_patient_refs(resource: dict[str, Any]) -> list[str]:
    return [r for r in references_in(resource) if r.startswith("Patient?")]


def create_only(entry: dict[str, Any]) -> bool:
    """The sender asked for a conditional create (``POST`` + ``ifNoneExist``), never an update."""
    request = entry.get("request") or {}
    return request.get("method") == "POST" and bool(request.get("ifNoneExist"))


def _server_address(entry: dict[str, Any]) -> str | None:
    """``Type/id`` when the sender addressed an update to that id (``request: PUT Type/id``)."""
    request = entry.get("request") or {}
    url = str(request.get("url") or "")
    rtype = entry["resource"]["resourceType"]
    if request.get("method") == "PUT" and url.startswith(f"{rtype}/") and "?" not in url:
        rid = url.split("/")[1]
        return f"{rtype}/{rid}" if rid else None
    return None


def check_authority(bundle: dict[str, Any], source: Source) -> None:
    """Before acceptance: what this source may assert. Raises a 403 InputError naming the entry."""
    for index, entry in enumerate(bundle.get("entry") or ()):
        resource = entry["resource"]
        rtype = resource["resourceType"]
        where = f"Bundle.entry[{index}].resource"
        if rtype not in source.resource_types:
            raise InputError(403, "forbidden", f"{where}: source {source.name} may not write {rtype}", where)
        if rtype == "Patient" and authoritative_identifier(resource, source) is None:
            raise InputError(
                403,
                "forbidden",
                f"{where}: a Patient needs an identifier in a system source {source.name} is "
                "authoritative for (its own MRN); others' patients cannot be created or updated",
                where,
            )
        for ref in _conditional_patient_refs(resource):
            systems = [v.split("|")[0] for k, v in _query_pairs(ref) if k == "identifier"]
            if not systems or not all(source.authoritative_for(s) for s in systems):
                raise InputError(
                    403,
                    "forbidden",
                    f"{where}: a conditional reference to a Patient must use an identifier system "
                    f"source {source.name} is authoritative for",
                    where,
                )


def _query_pairs(conditional: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(conditional.split("?", 1)[1] if "?" in conditional else "")


@dataclass
class Chunk:
    """One transaction to send. ``addressed``: entry index -> the server id the sender addressed."""

    bundle: dict[str, Any]
    marker: str  # the Provenance id: present on the server once this transaction committed
    addressed: dict[int, str] = field(default_factory=dict)

    @property
    def urns(self) -> list[str]:
        return [e["fullUrl"] for e in self.bundle["entry"][:-1]]  # the last entry is the Provenance


@dataclass
class Plan:
    chunks: list[Chunk]
    conditional_patients: list[str]  # Patient?identifier=... references to resolve before sending


class _Identities:
    def __init__(self, bundle: dict[str, Any], source: Source) -> None:
        self.source = source
        self.entries = bundle.get("entry") or []
        self.per_message = content_hash(bundle) if source.engine_ids == "per-message" else ""
        self.by_name: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            resource = entry["resource"]
            if entry.get("fullUrl"):
                self.by_name[entry["fullUrl"]] = index
            if resource.get("id"):
                self.by_name[f"{resource['resourceType']}/{resource['id']}"] = index
            if resource["resourceType"] == "Patient":  # a conditional reference to a Patient sent along
                for system, value in _identifiers(resource):
                    self.by_name[f"Patient?identifier={system}|{value}"] = index
        self.keys: dict[int, tuple[str, str]] = {}

    def key(self, index: int, seen: frozenset[int] = frozenset()) -> tuple[str, str]:
        """(kind, key): 'identifier', 's|v' for an authoritative identifier, else 'derived', a scoped key."""
        if index in self.keys:
            return self.keys[index]
        resource = self.entries[index]["resource"]
        rtype = resource["resourceType"]
        name = self.source.name
        found = authoritative_identifier(resource, self.source)
        if found:
            result = ("identifier", f"{found[0]}|{found[1]}")
        elif _identifiers(resource):
            system, value = _identifiers(resource)[0]
            result = ("derived", canonical([name, rtype, "identifier", system, value]))
        elif resource.get("id"):
            about = ""
            element = SUBJECT_ELEMENT.get(rtype)
            subject = ((resource.get(element) or {}) if element else {}).get("reference")
            if isinstance(subject, str):
                target = self.by_name.get(subject)
                about = (
                    canonical(self.key(target, seen | {index}))
                    if target is not None and target not in seen
                    else subject
                )
            codes = [resource.get(c) for c in CODE_ELEMENTS if resource.get(c)]
            result = (
                "derived",
                canonical([name, rtype, "id", resource["id"], about, codes, self.per_message]),
            )
        else:
            result = ("derived", canonical([name, rtype, "content", content_hash(resource)]))
        self.keys[index] = result
        return result


def _body(resource: dict[str, Any], source: Source, aliases: dict[str, str]) -> dict[str, Any]:
    body = rewrite_references({k: v for k, v in resource.items() if k not in ("id", "meta")}, aliases)
    if "identifier" in body and isinstance(body["identifier"], list):
        body["identifier"] = [_namespaced(i, source) for i in body["identifier"]]
    body["meta"] = {"source": source.uri}
    return body


def _namespaced(identifier: Any, source: Source) -> Any:
    if (
        not isinstance(identifier, dict)
        or not identifier.get("system")
        or source.authoritative_for(identifier["system"])
    ):
        return identifier
    out = {k: v for k, v in identifier.items() if k not in ("system", "value")}
    out.update(
        system=f"{SOURCE_SYSTEM}/{source.name}", value=f"{identifier['system']}|{identifier.get('value', '')}"
    )
    return out


def _order(entries: list[dict[str, Any]], names: dict[str, int]) -> list[int] | None:
    """Entries with what they reference first; None when references form a cycle."""
    deps = {
        i: {names[r] for r in references_in(e["resource"]) if r in names and names[r] != i}
        for i, e in enumerate(entries)
    }
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(entries):
        ready = [i for i in range(len(entries)) if i not in placed and deps[i] <= placed]
        if not ready:
            return None
        order += ready
        placed |= set(ready)
    return order


def provenance(source: Source, item_id: str, marker: str, targets: list[str], now: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": marker,
        "meta": {"source": source.uri},
        "target": [{"reference": t} for t in targets],
        "recorded": now,
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE"}], "text": "forwarded"},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                "who": {
                    "identifier": {"system": SOURCE_SYSTEM, "value": source.name},
                    "display": source.name,
                },
            }
        ],
        "reason": [{"text": f"pushed to the trial-adapter ingestion service as payload {item_id}"}],
    }


def plan_forward(
    bundle: dict[str, Any], source: Source, item_id: str, now: str, max_entries: int = 500
) -> Plan:
    """The transactions that forward this payload, in the order they must be sent."""
    ids = _Identities(bundle, source)
    entries = ids.entries
    urns = {}
    for index, entry in enumerate(entries):
        rtype = entry["resource"]["resourceType"]
        urns[index] = uuid_urn(source.name, rtype, *ids.key(index))
    aliases = {name: urns[index] for name, index in ids.by_name.items()}
    order = list(range(len(entries)))
    split = bundle.get("type") != "transaction"
    if split and len(entries) > max_entries:
        ordered = _order(entries, ids.by_name)
        split = ordered is not None  # references in a cycle: one transaction
        order = ordered or order
    size = max_entries if split else max(1, len(entries))
    chunks = []
    conditional: list[str] = []
    for start in range(0, len(order), size):
        out: list[dict[str, Any]] = []
        addressed: dict[int, str] = {}
        for position, index in enumerate(order[start : start + size]):
            entry = entries[index]
            resource = entry["resource"]
            rtype = resource["resourceType"]
            body = _body(resource, source, aliases)
            conditional += _conditional_patient_refs(body)
            kind, key = ids.key(index)
            if kind == "identifier":
                system, _, value = key.partition("|")
                condition = identifier_condition(system, value)
                if create_only(entry):  # the sender's own condition is not trusted: ours, on its identifier
                    request = {"method": "POST", "url": rtype, "ifNoneExist": condition}
                else:
                    request = {"method": "PUT", "url": f"{rtype}?{condition}"}
            else:
                body["id"] = derived_id(rtype, key)
                request = {"method": "PUT", "url": f"{rtype}/{body['id']}"}
            address = _server_address(entry)
            if address:
                addressed[position] = address
            out.append({"fullUrl": urns[index], "resource": body, "request": request})
        marker = derived_id("provenance", source.name, item_id, str(start))
        record = provenance(source, item_id, marker, [e["fullUrl"] for e in out], now)
        out.append({"resource": record, "request": {"method": "PUT", "url": f"Provenance/{marker}"}})
        chunks.append(Chunk(transaction(out), marker, addressed))
    return Plan(chunks, sorted(set(conditional)))


def located(chunk: Chunk, reply: dict[str, Any]) -> dict[str, str]:
    """urn -> ``Type/id`` the server gave each entry of a committed chunk."""
    out = {}
    for entry, response in zip(chunk.bundle["entry"], reply.get("entry") or (), strict=False):
        location = str(((response or {}).get("response") or {}).get("location") or "")
        parts = location.split("/_history")[0].rstrip("/").split("/")
        if len(parts) >= 2 and entry.get("fullUrl"):
            out[entry["fullUrl"]] = f"{parts[-2]}/{parts[-1]}"
    return out


def patients_touched(chunks: list[Chunk], locations: dict[str, str]) -> set[str]:
    """Server ids of the patients the forwarded data is about."""
    patients: set[str] = set()
    for chunk in chunks:
        for entry in chunk.bundle["entry"]:
            resource = entry["resource"]
            rtype = resource["resourceType"]
            if rtype == "Patient":
                ref = locations.get(entry.get("fullUrl", ""), "")
            elif rtype in SUBJECT_ELEMENT:
                raw = (resource.get(SUBJECT_ELEMENT[rtype]) or {}).get("reference") or ""
                ref = locations.get(raw, raw)
            else:
                continue
            if ref.startswith("Patient/") and "?" not in ref:
                patients.add(ref.split("/")[1])
    return patients
