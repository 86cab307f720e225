"""Several searches in one POSTed batch Bundle, each answered on its own.

``FhirClient.batch_searches`` fails the whole batch when one search fails; a population search mixes
required searches (by code) with optional ones a server may refuse (``:text``, ``:missing``), so here
each entry keeps its own status. Search URLs travel in the body, so no proxy cuts a long code list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.client import FhirClient, FhirError, FhirHttpError

# A server or proxy that refuses a batch POST outright (method not allowed, unsupported, too large,
# forbidden to this client, not implemented) is asked again with plain GETs by the caller.
REFUSED_STATUSES = frozenset({400, 403, 404, 405, 406, 413, 415, 422, 501})


@dataclass
class EntryResult:
    """One search's answer: its status, the first page's ``total`` and every resource of every page."""

    status: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None

    @property
    def ok(self) -> bool:
        return self.status.startswith("2")


def refused(error: FhirError) -> bool:
    """True when a batch POST was refused as such (fall back to GET), not when the server is failing."""
    return isinstance(error, FhirHttpError) and error.status in REFUSED_STATUSES


async def batch_entries(client: FhirClient, searches: list[str]) -> list[EntryResult]:
    """Run ``Type?params`` searches in one batch Bundle; follow each one's next links (same server)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in searches],
    }
    reply = await client.transaction(bundle, idempotent=True)  # only GETs: safe to resend
    entries = (reply.get("entry") or []) if isinstance(reply, dict) else []
    if len(entries) != len(searches):
        raise FhirError(
            f"the server answered a batch of {len(searches)} searches with {len(entries)} entries"
        )
    results = []
    for entry in entries:
        status = str((entry.get("response") or {}).get("status", "")).strip()
        page = entry.get("resource")
        if not status.startswith("2") or not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            # a 2xx without a searchset is not "nobody found": it counts as a failed search
            results.append(EntryResult(status if not status.startswith("2") else f"no searchset ({status})"))
            continue
        result = EntryResult(status, total=page.get("total") if isinstance(page.get("total"), int) else None)
        result.resources.extend(_resources(page))
        next_url = _next(page)
        if next_url:
            async for later in client.pages(next_url):
                result.resources.extend(_resources(later))
        results.append(result)
    return results


def _resources(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["resource"] for item in page.get("entry") or () if isinstance(item.get("resource"), dict)]


def _next(page: dict[str, Any]) -> str | None:
    return next((ln.get("url") for ln in page.get("link") or () if ln.get("relation") == "next"), None)
