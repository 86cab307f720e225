"""Flagging screening results back in FHIR for the study team (shared by the worker and the service).

For each patient and study there is at most one ResearchSubject (profile candidate-research-subject),
found by a deterministic identifier, and one review Task for the study coordinator:

- candidate, no ResearchSubject yet: create it (status candidate) and a Task (requested) listing the
  criteria still unknown, by conditional create, so a re-run never duplicates them;
- candidate, already flagged: keep the Task's list of unknown criteria current;
- not-eligible, flagged candidate: set the ResearchSubject to ineligible and cancel the open Task, with
  the reason;
- candidate again after the adapter set ineligible: back to candidate, Task reopened.

The adapter only moves a ResearchSubject between candidate and the ineligible it set itself (marked
with a meta tag). Any other status means a person has moved it on: it is never touched. Updates carry
If-Match, so a concurrent human change is not overwritten. Every change is recorded in a Provenance
whose id is derived from the change and the version it changes, so a resent write replaces it instead of
adding another, while the same change made again later (candidate, ineligible, candidate, ineligible)
gets its own Provenance and never overwrites the earlier one.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapter.fhir.client import FhirClient, FhirConflict, FhirError, FhirPreconditionFailed
from adapter.fhir.search import token
from adapter.fhir.transaction import identifier_condition, if_match, search_matches, transaction, uuid_urn
from adapter.screening.results import PatientResult

log = logging.getLogger(__name__)

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


class StudyNotPublished(FhirError):
    pass


@dataclass(frozen=True)
class FlagOutcome:
    patient: str
    action: str  # flagged | reopened | task-updated | made-ineligible | unchanged | left-alone | not-flagged
    research_subject: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version(resource: dict[str, Any]) -> str:
    """The version a change starts from (with the id: unique per change of that resource)."""
    meta = resource.get("meta") or {}
    return f"{resource.get('id')}/{meta.get('versionId') or meta.get('lastUpdated') or _now()}"


def _has_adapter_tag(resource: dict[str, Any]) -> bool:
    return any(
        t.get("system") == TAG_SYSTEM and t.get("code") == ADAPTER_INELIGIBLE_TAG["code"]
        for t in (resource.get("meta") or {}).get("tag") or ()
    )


def _without_adapter_tag(meta: dict[str, Any] | None) -> dict[str, Any]:
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


class Flagger:
    """Writes flags for one study. Call ``prepare()`` once, then ``apply(result)`` per patient."""

    def __init__(self, client: FhirClient, nct: str, *, link_evidence: bool = True) -> None:
        self.client = client
        self.nct = nct
        # Provenance.entity points at the evidence; only when the evidence ids are the server's own.
        self.link_evidence = link_evidence
        self.study_ref: str | None = None
        self.device_ref: str | None = None

    async def prepare(self) -> None:
        found = search_matches(
            await self.client.get_json("ResearchStudy", {"identifier": token(NCT_SYSTEM, self.nct)})
        )
        if not found:
            raise StudyNotPublished(
                f"no ResearchStudy with identifier {self.nct} on the server; run `trial-adapter publish` first"
            )
        if len(found) > 1:
            raise FhirError(
                f"{len(found)} ResearchStudy resources carry identifier {self.nct}; remove duplicates"
            )
        self.study_ref = f"ResearchStudy/{found[0]['id']}"
        device = {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": DEVICE_ID}],
            "status": "active",
            "deviceName": [{"name": "trial-adapter", "type": "model-name"}],
            "type": {
                "coding": [
                    {"system": LOCAL_CODES, "code": "adapter-device", "display": "Trial adapter software"}
                ]
            },
        }
        response = await self.client.request(
            "PUT", f"Device?{identifier_condition(DEVICE_SYSTEM, DEVICE_ID)}", json_body=device
        )
        self.device_ref = f"Device/{response.json()['id']}"

    # --- reading --------------------------------------------------------------------------------

    def subject_identifier(self, result: PatientResult) -> str:
        return f"{self.nct}/{result.patient.removeprefix('Patient/')}"

    async def _find(self, resource_type: str, system: str, value: str) -> dict[str, Any] | None:
        found = search_matches(
            await self.client.get_json(resource_type, {"identifier": token(system, value)})
        )
        if len(found) > 1:
            raise FhirError(
                f"{len(found)} {resource_type} resources share identifier {value}; remove duplicates"
            )
        return found[0] if found else None

    # --- writing --------------------------------------------------------------------------------

    async def apply(self, result: PatientResult) -> FlagOutcome:
        if self.study_ref is None:
            await self.prepare()
        for attempt in range(3):
            try:
                return await self._apply_once(result)
            except (FhirPreconditionFailed, FhirConflict):
                # The ResearchSubject or Task changed between our read and write (a person, or our own
                # earlier write whose answer was lost): read again and decide afresh.
                log.info(
                    "flag write raced a change, retrying",
                    extra={"patient": result.patient, "attempt": attempt},
                )
        raise FhirError(f"{result.patient}: the flag kept changing under us; try again later")

    async def _apply_once(self, result: PatientResult) -> FlagOutcome:
        identifier = self.subject_identifier(result)
        subject = await self._find("ResearchSubject", SUBJECT_SYSTEM, identifier)
        if result.status == "candidate":
            if subject is None:
                return await self._flag_new(result, identifier)
            status = subject.get("status")
            if status == "candidate":
                return await self._refresh_task(result, identifier, subject)
            if status == "ineligible" and _has_adapter_tag(subject):
                return await self._reopen(result, identifier, subject)
            return FlagOutcome(result.patient, "left-alone", f"ResearchSubject/{subject['id']}")
        if subject is None:
            return FlagOutcome(result.patient, "not-flagged")
        if subject.get("status") == "candidate":
            return await self._make_ineligible(result, identifier, subject)
        return FlagOutcome(result.patient, "left-alone", f"ResearchSubject/{subject['id']}")

    def _subject(self, result: PatientResult, identifier: str, status: str, meta: dict | None = None) -> dict:
        return {
            "resourceType": "ResearchSubject",
            "meta": meta or {"profile": [SUBJECT_PROFILE]},
            "identifier": [{"system": SUBJECT_SYSTEM, "value": identifier}],
            "status": status,
            "study": {"reference": self.study_ref},
            "individual": {"reference": result.patient},
        }

    def _task(
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
            "authoredOn": _now(),
        }
        if reason:
            task["statusReason"] = {"text": reason}
        return task

    def _provenance(
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
            "recorded": _now(),
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

    async def _commit(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        # Conditional creates, If-Match updates and PUTs to derived ids: safe to resend after a lost answer.
        return await self.client.transaction(transaction(entries), idempotent=True)

    async def _flag_new(self, result: PatientResult, identifier: str) -> FlagOutcome:
        subject_urn, task_urn = uuid_urn(SUBJECT_SYSTEM, identifier), uuid_urn(TASK_SYSTEM, identifier)
        subject = self._subject(result, identifier, "candidate")
        task = self._task(result, identifier, subject_urn, "requested", None)
        prov_url, provenance = self._provenance(
            result, identifier, "flagged", [subject_urn, task_urn], "screening result: candidate", _now()
        )
        reply = await self._commit(
            [
                {
                    "fullUrl": subject_urn,
                    "resource": subject,
                    "request": {
                        "method": "POST",
                        "url": "ResearchSubject",
                        "ifNoneExist": identifier_condition(SUBJECT_SYSTEM, identifier),
                    },
                },
                {
                    "fullUrl": task_urn,
                    "resource": task,
                    "request": {
                        "method": "POST",
                        "url": "Task",
                        "ifNoneExist": identifier_condition(TASK_SYSTEM, f"{identifier}/review"),
                    },
                },
                {"resource": provenance, "request": {"method": "PUT", "url": prov_url}},
            ]
        )
        location = ((reply.get("entry") or [{}])[0].get("response") or {}).get("location", "")
        ref = "/".join(location.split("/")[:2]) or None
        log.info("candidate flagged", extra={"patient": result.patient, "research_subject": ref})
        return FlagOutcome(result.patient, "flagged", ref)

    async def _refresh_task(self, result: PatientResult, identifier: str, subject: dict) -> FlagOutcome:
        subject_ref = f"ResearchSubject/{subject['id']}"
        task = await self._find("Task", TASK_SYSTEM, f"{identifier}/review")
        wanted = review_description(result, self.nct)
        if (
            task is not None
            and task.get("status") in OPEN_TASK_STATUSES
            and task.get("description") == wanted
        ):
            return FlagOutcome(result.patient, "unchanged", subject_ref)
        if task is not None and task.get("status") not in OPEN_TASK_STATUSES | {"cancelled"}:
            return FlagOutcome(result.patient, "left-alone", subject_ref)  # a person completed or rejected it
        new_task = self._task(result, identifier, subject_ref, "requested", None)
        entries = [self._task_entry(new_task, task, identifier)]
        prov_url, provenance = self._provenance(
            result,
            identifier,
            "task-updated",
            [subject_ref],
            "screening result: candidate; unknown criteria changed",
            _version(task) if task is not None else _now(),
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        return FlagOutcome(result.patient, "task-updated", subject_ref)

    def _task_entry(self, new_task: dict, existing: dict | None, identifier: str) -> dict[str, Any]:
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

    def _subject_update(self, subject: dict, new: dict) -> dict[str, Any]:
        new["id"] = subject["id"]
        request = if_match({"method": "PUT", "url": f"ResearchSubject/{subject['id']}"}, subject)
        return {"resource": new, "request": request}

    async def _make_ineligible(self, result: PatientResult, identifier: str, subject: dict) -> FlagOutcome:
        subject_ref = f"ResearchSubject/{subject['id']}"
        reason = ineligible_reason(result)
        meta = _without_adapter_tag(subject.get("meta"))
        meta["tag"] = [*meta.get("tag", []), ADAPTER_INELIGIBLE_TAG]
        entries = [self._subject_update(subject, self._subject(result, identifier, "ineligible", meta))]
        task = await self._find("Task", TASK_SYSTEM, f"{identifier}/review")
        targets = [subject_ref]
        if task is not None and task.get("status") in OPEN_TASK_STATUSES:
            entries.append(
                self._task_entry(
                    self._task(result, identifier, subject_ref, "cancelled", reason), task, identifier
                )
            )
            targets.append(f"Task/{task['id']}")
        prov_url, provenance = self._provenance(
            result, identifier, "made-ineligible", targets, reason, _version(subject)
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        log.info(
            "candidate made ineligible", extra={"patient": result.patient, "research_subject": subject_ref}
        )
        return FlagOutcome(result.patient, "made-ineligible", subject_ref)

    async def _reopen(self, result: PatientResult, identifier: str, subject: dict) -> FlagOutcome:
        subject_ref = f"ResearchSubject/{subject['id']}"
        meta = _without_adapter_tag(subject.get("meta"))
        entries = [self._subject_update(subject, self._subject(result, identifier, "candidate", meta))]
        task = await self._find("Task", TASK_SYSTEM, f"{identifier}/review")
        entries.append(
            self._task_entry(self._task(result, identifier, subject_ref, "requested", None), task, identifier)
        )
        prov_url, provenance = self._provenance(
            result,
            identifier,
            "reopened",
            [subject_ref],
            "screening result: candidate again",
            _version(subject),
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        return FlagOutcome(result.patient, "reopened", subject_ref)
