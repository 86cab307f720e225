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

import logging
from dataclasses import dataclass
from typing import Any

from adapter.fhir.client import FhirClient, FhirConflict, FhirError, FhirPreconditionFailed
from adapter.fhir.search import token
from adapter.fhir.transaction import identifier_condition, search_matches, transaction, uuid_urn
from adapter.flag_resources import (
    ADAPTER_INELIGIBLE_TAG,
    DEVICE_ID,
    DEVICE_SYSTEM,
    LOCAL_CODES,
    NCT_SYSTEM,
    OPEN_TASK_STATUSES,
    SUBJECT_SYSTEM,
    TASK_SYSTEM,
    FlagResources,
    has_adapter_tag,
    ineligible_reason,
    now,
    review_description,
    version,
    without_adapter_tag,
)
from adapter.screening.results import PatientResult

log = logging.getLogger(__name__)


class StudyNotPublished(FhirError):
    pass


@dataclass(frozen=True)
class FlagOutcome:
    patient: str
    action: str  # flagged | reopened | task-updated | made-ineligible | unchanged | left-alone | not-flagged
    research_subject: str | None = None


class Flagger:
    """Writes flags for one study. Call ``prepare()`` once, then ``apply(result)`` per patient."""

    def __init__(self, client: FhirClient, nct: str, *, link_evidence: bool = True) -> None:
        self.client = client
        self.nct = nct
        # The resources' shapes; Provenance.entity points at the evidence only when its ids are the server's.
        self.build = FlagResources(nct, link_evidence=link_evidence)

    @property
    def study_ref(self) -> str | None:
        return self.build.study_ref

    @property
    def device_ref(self) -> str | None:
        return self.build.device_ref

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
        self.build.study_ref = f"ResearchStudy/{found[0]['id']}"
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
        self.build.device_ref = f"Device/{response.json()['id']}"

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
            if status == "ineligible" and has_adapter_tag(subject):
                return await self._reopen(result, identifier, subject)
            return FlagOutcome(result.patient, "left-alone", f"ResearchSubject/{subject['id']}")
        if subject is None:
            return FlagOutcome(result.patient, "not-flagged")
        if subject.get("status") == "candidate":
            return await self._make_ineligible(result, identifier, subject)
        return FlagOutcome(result.patient, "left-alone", f"ResearchSubject/{subject['id']}")

    async def _commit(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        # Conditional creates, If-Match updates and PUTs to derived ids: safe to resend after a lost answer.
        return await self.client.transaction(transaction(entries), idempotent=True)

    async def _flag_new(self, result: PatientResult, identifier: str) -> FlagOutcome:
        subject_urn, task_urn = uuid_urn(SUBJECT_SYSTEM, identifier), uuid_urn(TASK_SYSTEM, identifier)
        subject = self.build.subject(result, identifier, "candidate")
        task = self.build.task(result, identifier, subject_urn, "requested", None)
        prov_url, provenance = self.build.provenance(
            result, identifier, "flagged", [subject_urn, task_urn], "screening result: candidate", now()
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
        new_task = self.build.task(result, identifier, subject_ref, "requested", None)
        entries = [self.build.task_entry(new_task, task, identifier)]
        prov_url, provenance = self.build.provenance(
            result,
            identifier,
            "task-updated",
            [subject_ref],
            "screening result: candidate; unknown criteria changed",
            version(task) if task is not None else now(),
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        return FlagOutcome(result.patient, "task-updated", subject_ref)

    async def _make_ineligible(self, result: PatientResult, identifier: str, subject: dict) -> FlagOutcome:
        subject_ref = f"ResearchSubject/{subject['id']}"
        reason = ineligible_reason(result)
        meta = without_adapter_tag(subject.get("meta"))
        meta["tag"] = [*meta.get("tag", []), ADAPTER_INELIGIBLE_TAG]
        entries = [
            self.build.subject_update(subject, self.build.subject(result, identifier, "ineligible", meta))
        ]
        task = await self._find("Task", TASK_SYSTEM, f"{identifier}/review")
        targets = [subject_ref]
        if task is not None and task.get("status") in OPEN_TASK_STATUSES:
            entries.append(
                self.build.task_entry(
                    self.build.task(result, identifier, subject_ref, "cancelled", reason), task, identifier
                )
            )
            targets.append(f"Task/{task['id']}")
        prov_url, provenance = self.build.provenance(
            result, identifier, "made-ineligible", targets, reason, version(subject)
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        log.info(
            "candidate made ineligible", extra={"patient": result.patient, "research_subject": subject_ref}
        )
        return FlagOutcome(result.patient, "made-ineligible", subject_ref)

    async def _reopen(self, result: PatientResult, identifier: str, subject: dict) -> FlagOutcome:
        subject_ref = f"ResearchSubject/{subject['id']}"
        meta = without_adapter_tag(subject.get("meta"))
        entries = [
            self.build.subject_update(subject, self.build.subject(result, identifier, "candidate", meta))
        ]
        task = await self._find("Task", TASK_SYSTEM, f"{identifier}/review")
        entries.append(
            self.build.task_entry(
                self.build.task(result, identifier, subject_ref, "requested", None), task, identifier
            )
        )
        prov_url, provenance = self.build.provenance(
            result,
            identifier,
            "reopened",
            [subject_ref],
            "screening result: candidate again",
            version(subject),
        )
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": prov_url}})
        await self._commit(entries)
        return FlagOutcome(result.patient, "reopened", subject_ref)
