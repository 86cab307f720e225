"""Building FHIR transactions: conditional writes, ``urn:uuid`` full URLs and reference rewriting.

One home for what publishing the study, flagging candidates and forwarding pushed data all do: name
each entry by a ``urn:uuid`` derived (uuid5) from what identifies it, so a resend names it the same;
write it by conditional update or create on its business identifier; point references at the entries'
full URLs, which the server resolves to whatever ids it holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from .parsing import fhir_problem
from .search import token


def uuid_urn(*parts: str) -> str:
    """A stable ``urn:uuid`` (uuid5 in the URL namespace) of ``parts`` joined by ``|``."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '|'.join(parts))}"


def identifier_condition(system: str, value: str) -> str:
    """``identifier=system|value``, escaped and URL-encoded: the query of a conditional write."""
    return f"identifier={quote(token(system, value), safe='')}"


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def if_match(request: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """``request`` with ``ifMatch`` on the resource's version when it has one (a concurrent change then
    fails the write instead of being overwritten)."""
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return request


def search_matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a searchset matched (``_include``d ones left out)."""
    return [
        e["resource"]
        for e in bundle.get("entry") or ()
        if "resource" in e and (e.get("search") or {}).get("mode", "match") == "match"
    ]


def rewrite_references(value: Any, aliases: dict[str, str]) -> Any:
    """A copy of ``value`` with every ``reference`` found in ``aliases`` replaced by its alias."""
    if isinstance(value, dict):
        return {
            k: aliases.get(v, v)
            if k == "reference" and isinstance(v, str)
            else rewrite_references(v, aliases)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite_references(v, aliases) for v in value]
    return value


# --- definitional resources matched on a business identifier or a canonical url ------------------


def business_identifier(resource: dict[str, Any]) -> tuple[str, str]:
    """The identifier a resource is matched on: the first one (the NCT number for the ResearchStudy)."""
    identifier = resource["identifier"][0]
    return identifier["system"], identifier["value"]


def _is_canonical(resource: dict[str, Any]) -> bool:
    """A ValueSet is matched on its canonical ``url`` (what references to it name), not an identifier."""
    return resource["resourceType"] == "ValueSet"


def conditional_url(resource: dict[str, Any]) -> str:
    if _is_canonical(resource):
        return f"ValueSet?url={quote(resource['url'], safe='')}"
    system, value = business_identifier(resource)
    return f"{resource['resourceType']}?{identifier_condition(system, value)}"


def full_url(resource: dict[str, Any]) -> str:
    if _is_canonical(resource):
        return uuid_urn(resource["url"])
    return uuid_urn(*business_identifier(resource))


def transaction_bundle(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A transaction of conditional updates (``PUT Type?identifier=system|value``; ValueSets
    ``PUT ValueSet?url=canonical``), one per resource.

    Entries are identified by ``urn:uuid`` full URLs derived (uuid5) from their business identifiers and
    reference each other (``Type/id`` in the resources) through them, so the server resolves the
    references to whatever ids it holds. Resource ids are left out: with a conditional update and no id
    the server creates when nothing matches and updates the match otherwise (an id in the body would
    need "update as create" support and could disagree with the matched resource).
    """
    resources_list = list(resources)
    aliases = {f"{r['resourceType']}/{r['id']}": full_url(r) for r in resources_list}
    entries = [
        {
            "fullUrl": full_url(resource),
            "resource": rewrite_references({k: v for k, v in resource.items() if k != "id"}, aliases),
            "request": {"method": "PUT", "url": conditional_url(resource)},
        }
        for resource in resources_list
    ]
    bundle = transaction(entries)
    problem = fhir_problem(bundle)
    if problem:  # the resources were validated one by one: this is a bug in building the Bundle
        raise ValueError(f"transaction Bundle: {problem}")
    return bundle
