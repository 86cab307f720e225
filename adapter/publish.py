"""Publish the study's resources to a FHIR server, idempotently.

Each resource is looked up by its business identifier first (the criteria's concept-set ValueSets by
their canonical url). Unchanged resources are not sent at all, so a second run creates no new versions
even on servers that version identical updates. Changed ones are updated in place (PUT Type/id); new ones
are created by conditional update (PUT Type?identifier=, PUT ValueSet?url=), all in one transaction,
which a retry may safely resend.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from adapter.fhir.client import FhirClient, FhirError
from adapter.fhir.transaction import rewrite_references, search_matches, transaction, transaction_bundle
from mappings.criteria import CriteriaDefinition
from mappings.resources import build_study_resources
from mappings.study import Study

log = logging.getLogger(__name__)

_IGNORED = ("id", "meta")


@dataclass
class PlannedChange:
    action: str  # create | update | unchanged
    resource_type: str
    search: str  # the conditional URL (Type?identifier=... or ValueSet?url=...)
    full_url: str
    resource: dict[str, Any]
    existing_id: str | None = None
    changed: tuple[str, ...] = ()


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in _IGNORED}


async def plan(client: FhirClient, bundle: dict[str, Any]) -> list[PlannedChange]:
    """What publishing would do, from what the server holds now."""
    changes = []
    for entry in bundle["entry"]:
        search = entry["request"]["url"]
        resource_type = search.split("?", 1)[0]
        found = await client.get_json(search)
        matches = search_matches(found)
        if len(matches) > 1:
            ids = ", ".join(f"{resource_type}/{m.get('id')}" for m in matches)
            raise FhirError(f"{len(matches)} resources match {search} ({ids}); remove the duplicates first")
        existing = matches[0] if matches else None
        changes.append(
            PlannedChange(
                action="create" if existing is None else "unchanged",
                resource_type=resource_type,
                search=search,
                full_url=entry["fullUrl"],
                resource=entry["resource"],
                existing_id=existing.get("id") if existing else None,
            )
        )
        if existing is not None:
            changes[-1].resource = existing  # compared below, once references are known
    aliases = {c.full_url: f"{c.resource_type}/{c.existing_id}" for c in changes if c.existing_id}
    for change, entry in zip(changes, bundle["entry"], strict=True):
        wanted = rewrite_references(entry["resource"], aliases)
        if change.existing_id is not None:
            old, new = _content(change.resource), _content(wanted)
            differing = tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))
            if differing:
                change.action, change.changed = "update", differing
            wanted["id"] = change.existing_id
        change.resource = wanted
    return changes


def transaction_for(changes: list[PlannedChange]) -> dict[str, Any] | None:
    entries = []
    for change in changes:
        if change.action == "unchanged":
            continue
        if change.action == "update":
            request = {"method": "PUT", "url": f"{change.resource_type}/{change.existing_id}"}
        else:
            request = {"method": "PUT", "url": change.search}
        entries.append({"fullUrl": change.full_url, "resource": change.resource, "request": request})
    return transaction(entries) if entries else None


def describe(change: PlannedChange) -> str:
    target = f"{change.resource_type}/{change.existing_id}" if change.existing_id else unquote(change.search)
    extra = f" (changed: {', '.join(change.changed)})" if change.changed else ""
    return f"{change.action:<9} {target}{extra}"


async def publish(client: FhirClient, study: Study, criteria: CriteriaDefinition, dry_run: bool) -> int:
    built = build_study_resources(study, criteria)
    changes = await plan(client, transaction_bundle(built.published()))
    for change in changes:
        print(describe(change))
    tx = transaction_for(changes)
    if dry_run:
        print("dry run: nothing was written", file=sys.stderr)
        return 0
    if tx is None:
        print("the server already holds these resources: nothing to do", file=sys.stderr)
        return 0
    reply = await client.transaction(tx, idempotent=True)
    for entry in reply.get("entry") or ():
        response = entry.get("response") or {}
        print(f"{response.get('status', '?'):<12} {response.get('location', '')}")
    log.info("study published", extra={"written": len(tx["entry"])})
    return 0
