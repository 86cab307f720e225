"""What a flag is made of, built without any I/O: the candidate ResearchSubject, the coordinator's review
Task and the Provenance of each change (``FlagResources``), and the identifiers and tags that find them
again. ``adapter.flagging.Flagger`` decides what to write and writes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapter.fhir.transaction import identifier_condition, if_match
from adapter.screening.results import PatientResult

BASE = "http://trial-adapter.org/fhir"
NCT_SYSTEM = "https://clinicaltrials.gov"
SUBJECT_SYSTEM = f"{BASE}/sid/research-subject"
TASK_SYSTEM = f"{BASE}/sid/screening-task"
DEVICE_SYSTEM = f"{BASE}/sid/device"
DEVICE_ID = "trial-adapter"
SUBJECT_PROFILE = f"{BASE}/StructureDefinition/candidate-research-subject"
LOCAL_CODES = f"{BASE}/CodeSystem/trial-adapter-local"
TAG_SYSTEM = f"{BASE}/CodeSystem/flag-tags"
ADAPTER_INELIGIBLE_TAG = {"system": TAG_SYSTEM, "code": "set-ineligible-by-adapter"}
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
OPEN_TASK_STATUSES = {"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def version(resource: dict[str, Any]) -> str:
    """The version a change starts from (with the id: unique per change of that resource)."""
    meta = resource.get("meta") or {}
    return f"{resource.get('id')}/{meta.get('versionId') or meta.get('lastUpdated') or now()}"


def has_adapter_tag(resource: dict[str, Any]) -> bool:
    return any(
        t.get("system") == TAG_SYSTEM and t.get("code") == ADAPTER_INELIGIBLE_TAG["code"]
        for t in (resource.get("meta") or {}).get("tag") or ()
    )


def without_adapter_tag(meta: dict[str, Any] | None) -> dict[str, Any]:
    tags = [t for t in (meta or {}).get("tag") or () if t.get("system") != TAG_SYSTEM]
    return {"profile": [SUBJECT_PROFILE], **({"tag": tags} if tags else {})}


def review_description(result: PatientResult, nct: str) -> str:
    """The coordinator's Task: what to collect next and who decides the rest (from each unknown's
    ``resolve``, the same list as the reports), then the criteria still unknown."""
    from adapter.screening.resolve import collect_next, judgements

    unknown = [c.id for c in result.unknown_criteria()]
    listed = ", ".join(unknown) if unknown else "none"
    lines = [f"Review {result.patient} as a candidate for {nct}."]
    todo = collect_next(result)
    if todo:
        lines.append(f"Collect next: {'; '.join(todo)}.")
    decided = judgements(result)
    for who in ("investigator", "consent"):
        items = [text for text, by in decided if by == who]
        if items:
            lines.append(
                f"{'Investigator decides' if who == 'investigator' else 'At consent'}: {'; '.join(items)}."
            )
    lines.append(f"Criteria still unknown: {listed}.")
    return " ".join(lines)


def ineligible_reason(result: PatientResult) -> str:
    deciding = result.deciding_criteria()
    return "Not eligible: " + "; ".join(f"{c.id} {c.result}: {c.reason}" for c in deciding)


@dataclass
class FlagResources:
    """Builds one study's flag resources; ``study_ref`` and ``device_ref`` are the server's (``prepare``)."""

    nct: str
    study_ref: str | None = None
    device_ref: str | None = None
    # Provenance.entity points at the evidence; only when the evidence ids are the server's own.
    link_evidence: bool = True

    def subject(self, result: PatientResult, identifier: str, status: str, meta: dict | None = None) -> dict:
        return {
            "resourceType": "ResearchSubject",
            "meta": meta or {"profile": [SUBJECT_PROFILE]},
            "identifier": [{"system": SUBJECT_SYSTEM, "value": identifier}],
            "status": status,
            "study": {"reference": self.study_ref},
            "individual": {"reference": result.patient},
        }

    def task(
        self, result: PatientResult, identifier: str, subject_ref: str, status: str, reason: str | None
    ) -> dict:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "identifier": [{"system": TASK_SYSTEM, "value": f"{identifier}/review"}],
            "status": status,
            "intent": "order",
            "priority": "routine",
            "code": {"text": f"Review trial candidate for {self.nct}"},
            "description": review_description(result, self.nct),
            "focus": {"reference": subject_ref},
            "for": {"reference": result.patient},
            "authoredOn": now(),
        }
        if reason:
            task["statusReason"] = {"text": reason}
        return task

    def provenance(
        self, result: PatientResult, identifier: str, action: str, targets: list[str], why: str, basis: str
    ) -> tuple[str, dict]:
        """``basis``: what this change starts from (the changed resource's version; for a first flag, the
        time): one Provenance per change, the same one for a resend of that change."""
        digest = hashlib.sha256(
            "|".join(
                [identifier, action, basis, result.status, *(f"{c.id}={c.result}" for c in result.criteria)]
            ).encode()
        ).hexdigest()[:32]
        provenance = {
            "resourceType": "Provenance",
            "id": f"flag-{digest}",
            "target": [{"reference": t} for t in targets],
            "recorded": now(),
            "activity": {
                "coding": [
                    {
                        "system": DATA_OPERATION,
                        "code": "CREATE" if action == "flagged" else "UPDATE",
                    }
                ],
                "text": action,
            },
            "reason": [{"text": why[:1000]}],
            "agent": [{"who": {"reference": self.device_ref}}],
        }
        if self.link_evidence:
            evidence = dict.fromkeys(e for c in result.criteria for e in c.evidence)
            provenance["entity"] = [{"role": "source", "what": {"reference": ref}} for ref in evidence][:100]
        return f"Provenance/{provenance['id']}", provenance

    def task_entry(self, new_task: dict, existing: dict | None, identifier: str) -> dict[str, Any]:
        if existing is None:
            return {
                "resource": new_task,
                "request": {
                    "method": "POST",
                    "url": "Task",
                    "ifNoneExist": identifier_condition(TASK_SYSTEM, f"{identifier}/review"),
                },
            }
        new_task["id"] = existing["id"]
        return {
            "resource": new_task,
            "request": if_match({"method": "PUT", "url": f"Task/{existing['id']}"}, existing),
        }

    def subject_update(self, subject: dict, new: dict) -> dict[str, Any]:
        new["id"] = subject["id"]
        request = if_match({"method": "PUT", "url": f"ResearchSubject/{subject['id']}"}, subject)
        return {"resource": new, "request": request}
