"""Who moved a ResearchSubject on: shown as "reviewed" in the what-changed report, never overwritten.

Decision: the person comes from the most recent Provenance targeting the ResearchSubject whose agent is
not the adapter's Device (``agent.who.display``, else its reference or identifier); without one, from
``meta.source``; else it says no Provenance was recorded. Provenance is the FHIR record of who did
what, and our own flags write one for every change, so a site's EHR or review tool can too.
"""

from __future__ import annotations

import logging
from typing import Any

from adapter.fhir.client import FhirClient, FhirError

log = logging.getLogger(__name__)

NOT_RECORDED = "not recorded (no Provenance for the change)"


def _who(agent: dict[str, Any]) -> str | None:
    who = agent.get("who") or {}
    identifier = who.get("identifier") or {}
    return who.get("display") or who.get("reference") or identifier.get("value")


async def reviewed_by(client: FhirClient, subject_ref: str, adapter_device: str | None) -> dict[str, Any]:
    """``{"status", "by", "at"}`` for a ResearchSubject a person has moved on."""
    try:
        subject = await client.get_json(subject_ref)
        provenances = await client.search_resources(
            "Provenance", [("target", subject_ref), ("_sort", "-recorded"), ("_count", "20")]
        )
    except FhirError as exc:  # the flag is already safe; the name of the reviewer is a nicety
        log.warning(
            "reviewer lookup failed", extra={"research_subject": subject_ref, "error": type(exc).__name__}
        )
        return {"status": None, "by": NOT_RECORDED, "at": None}
    status = subject.get("status") if isinstance(subject, dict) else None
    meta = (subject.get("meta") if isinstance(subject, dict) else None) or {}
    ordered = sorted(
        (p for p in provenances if p.get("resourceType") == "Provenance"),
        key=lambda p: str(p.get("recorded") or ""),
        reverse=True,
    )
    for provenance in ordered:
        agents = provenance.get("agent") or ()
        if any((a.get("who") or {}).get("reference") == adapter_device for a in agents):
            continue  # our own flag
        names = [name for name in (_who(a) for a in agents) if name]
        if names:
            return {"status": status, "by": ", ".join(names), "at": provenance.get("recorded")}
    return {"status": status, "by": meta.get("source") or NOT_RECORDED, "at": meta.get("lastUpdated")}
