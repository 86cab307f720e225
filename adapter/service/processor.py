"""Background processing of accepted payloads: forward to the FHIR server, screen, flag.

Each step is idempotent (conditional/derived-id writes, flagging by deterministic identifiers), so a
payload interrupted by a crash is simply processed again after its lease expires.

What happens on failure:
- the server's 4xx answers are permanent: the payload is dead-lettered at once;
- a transient failure (5xx, 429, timeout, connection error): the circuit breaker probes the server; if
  it is down, processing pauses and the attempt does not count (an outage makes no dead letters);
  if it is up, the attempt counts, with backoff, and the payload is dead-lettered after ``max_attempts``;
- a transaction that times out may still be running on the server: it is never resent before its
  Provenance (part of the same transaction) is looked for, after a grace period; found, it committed;
- a conditional reference to a Patient not yet on the server waits (``reference_wait`` seconds at most).
Errors kept in the status carry the HTTP status, path and issue codes only, never the server's
diagnostics (they can quote patient data).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

from adapter.fault_points import crash_point
from adapter.fhir.client import FhirClient, FhirError, FhirHttpError, FhirNotFound
from adapter.flagging import Flagger, StudyNotPublished
from adapter.screening.engine import Screener
from adapter.screening.record import PatientRecord, patients_in, resources_in
from adapter.screening.resolve import with_resolve
from adapter.screening.results import PatientResult
from adapter.sources.server import ServerSource
from mappings.criteria import CriteriaDefinition
from mappings.resources import rewrite_references

from .breaker import CircuitBreaker
from .forward import Chunk, authoritative_identifier, located, patients_touched, plan_forward
from .inbox import Inbox, InboxItem
from .sources import Source, Sources

log = logging.getLogger(__name__)


def _screen_for_flag(screener: Screener, record: PatientRecord) -> PatientResult:
    """One patient's result with its "collect next" entries, as the worker's Task shows them."""
    return with_resolve(screener, record, screener.screen(record))


# 409: HAPI's answer to a version conflict (If-Match) or a concurrent write; read again and retry.
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_HAPI_CODE = re.compile(r"\bHAPI-\d{4}\b")


class Wait(Exception):
    """A referenced Patient is not on the server yet: try again after ``delay`` without counting an
    attempt, for ``reference_wait`` seconds after receipt at most."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class TimedOut(Exception):
    """A transaction got no answer in time and may still be running: nothing is sent for ``grace``."""

    def __init__(self, grace: float) -> None:
        super().__init__("a transaction timed out and may still be running on the server")
        self.grace = grace


class Refused(Exception):
    """The payload cannot be forwarded as it is (e.g. not this source's resource): dead letter."""


def scrubbed(error: BaseException) -> str:
    """An error for the status API and logs: status, path, issue codes; never diagnostics text."""
    if isinstance(error, FhirHttpError):
        issues = (error.outcome or {}).get("issue") or []
        codes = sorted({str(i.get("code")) for i in issues if isinstance(i, dict) and i.get("code")})
        codes += sorted(set(_HAPI_CODE.findall(error.body or "")))
        text = str(error).split(":", 1)[0]  # "HTTP 412 from PUT /fhir/Patient"
        return text + (f" (issue: {', '.join(codes)})" if codes else "")
    if isinstance(error, FhirError):
        return type(error).__name__
    return str(error)


class Processor:
    def __init__(
        self,
        client: FhirClient,
        definition: CriteriaDefinition,
        inbox: Inbox,
        *,
        sources: Sources | None = None,
        forward_client: FhirClient | None = None,
        max_attempts: int = 5,
        lease_seconds: float = 3600.0,
        backoff: float = 2.0,
        timeout: float = 60.0,
        seconds_per_entry: float = 0.05,
        max_transaction_entries: int = 500,
        reference_wait: float = 3600.0,
        breaker_wait: float = 1.0,
        purge_every: float = 60.0,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.client = client
        self.forward_client = forward_client or client
        self.definition = definition
        self.inbox = inbox
        self.sources = sources or Sources()
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff = backoff
        self.timeout = timeout
        self.seconds_per_entry = seconds_per_entry
        self.max_transaction_entries = max_transaction_entries
        self.reference_wait = reference_wait
        self.purge_every = purge_every
        self.today = today
        self.flagger = Flagger(client, definition.study)
        self.source = ServerSource(client, definition)
        self.breaker = CircuitBreaker(self._server_up, first_wait=breaker_wait)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._purged_at = 0.0
        self.processed = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def _server_up(self) -> bool:
        try:
            await asyncio.wait_for(self.forward_client.request("GET", "metadata"), timeout=10)
        except (FhirError, TimeoutError):
            return False
        return True

    async def run(self) -> None:
        """Process until stopped; the current item is finished before returning."""
        while not self._stop.is_set():
            if time.monotonic() - self._purged_at > self.purge_every:
                self._purged_at = time.monotonic()
                purged = await asyncio.to_thread(self.inbox.purge)
                if purged:
                    log.info("payload bodies deleted after their retention", extra={"count": purged})
            await self.breaker.wait_closed(self._stop.is_set)
            item = await asyncio.to_thread(self.inbox.claim, self.lease_seconds)
            if item is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                continue
            await self.process(item)

    async def process(self, item: InboxItem) -> None:
        try:
            result = await self._handle(item)
        except Wait as exc:
            await self._wait(item, str(exc), exc.delay)
            return
        except TimedOut as exc:
            await self._transient(item, exc, min_delay=exc.grace)
            return
        except Refused as exc:
            log.warning("payload dead-lettered: refused", extra={"item": item.id})
            await asyncio.to_thread(self.inbox.dead, item.id, str(exc))
            return
        except FhirHttpError as exc:
            if exc.status in TRANSIENT_STATUS:
                await self._transient(item, exc)
            else:
                log.warning("payload dead-lettered", extra={"item": item.id, "status": exc.status})
                await asyncio.to_thread(self.inbox.dead, item.id, scrubbed(exc))
            return
        except (FhirError, StudyNotPublished) as exc:
            await self._transient(item, exc)
            return
        except Exception as exc:  # a bug or unforeseen data: keep the payload, stop retrying it
            log.exception("payload processing failed", extra={"item": item.id})
            await asyncio.to_thread(self.inbox.dead, item.id, f"internal error ({type(exc).__name__})")
            return
        crash_point("service-after-flag")
        await asyncio.to_thread(self.inbox.done, item.id, result)
        self.processed += 1
        log.info("payload processed", extra={"item": item.id, "patients": len(result.get("patients", []))})

    async def _wait(self, item: InboxItem, reason: str, delay: float) -> None:
        if time.time() - item.received_at > self.reference_wait:
            log.warning("payload dead-lettered: waited too long", extra={"item": item.id})
            await asyncio.to_thread(self.inbox.dead, item.id, reason)
            return
        log.info("payload waits", extra={"item": item.id, "delay": delay})
        await asyncio.to_thread(self.inbox.retry_later, item.id, reason, delay, counted=False)

    async def _transient(self, item: InboxItem, error: BaseException, min_delay: float = 0.0) -> None:
        text = scrubbed(error)
        if not await self.breaker.probe():  # the server is down: not this payload's fault
            await asyncio.to_thread(self.inbox.retry_later, item.id, text, min_delay, counted=False)
            return
        if item.attempts >= self.max_attempts:
            log.warning(
                "payload dead-lettered after retries", extra={"item": item.id, "attempts": item.attempts}
            )
            await asyncio.to_thread(self.inbox.dead, item.id, text)
            return
        delay = max(min_delay, min(300.0, self.backoff * 2 ** (item.attempts - 1)))
        log.info("payload retry scheduled", extra={"item": item.id, "attempt": item.attempts, "delay": delay})
        await asyncio.to_thread(self.inbox.retry_later, item.id, text, delay)

    # --- forwarding -----------------------------------------------------------------------------

    def _source(self, item: InboxItem) -> Source:
        source = self.sources.sources.get(item.source)
        if source is None:
            raise Refused(f"source {item.source} is no longer configured")
        return source

    async def _handle(self, item: InboxItem) -> dict[str, Any]:
        if not item.body:
            raise Refused("the payload's body was deleted by retention")
        payload = await asyncio.to_thread(json.loads, item.body)  # 20 MB: not on the event loop
        forwarded = 0
        if item.kind == "bundle":
            source = self._source(item)
            now = datetime.fromtimestamp(item.received_at or time.time(), UTC).isoformat(timespec="seconds")
            plan = await asyncio.to_thread(
                plan_forward, payload, source, item.id, now, self.max_transaction_entries
            )
            locations = await self._resolve_patients(plan.conditional_patients)
            for chunk in plan.chunks:
                locations |= await self._send(chunk, source, locations)
            crash_point("service-after-forward")
            forwarded = sum(len(c.bundle["entry"]) - 1 for c in plan.chunks)
            patients = patients_touched(plan.chunks, locations)
        else:  # a subscription notification: the data is already on the server
            patients = patients_in(resources_in(payload))
        flags: dict[str, int] = {}
        screened = []
        if patients:
            await self.flagger.prepare()
            screener = Screener(self.definition, self.today())
            async for record in self.source.records(sorted(patients)):
                result = await asyncio.to_thread(_screen_for_flag, screener, record)
                outcome = await self.flagger.apply(result)
                flags[outcome.action] = flags.get(outcome.action, 0) + 1
                screened.append({"patient": result.patient, "status": result.status, "flag": outcome.action})
        return {"forwarded": forwarded, "patients": screened, "flags": flags}

    async def _resolve_patients(self, conditional: list[str]) -> dict[str, str]:
        """Each ``Patient?identifier=...`` the payload refers to -> its ``Patient/id``; waits if absent."""
        found: dict[str, str] = {}
        for search in conditional:
            matches = await self.forward_client.search_resources(
                "Patient", parse_qsl(search.split("?", 1)[1])
            )
            if not matches:
                raise Wait(
                    "waiting for a referenced Patient to reach the server", min(60.0, self.backoff * 15)
                )
            if len(matches) > 1:
                raise Refused(f"{len(matches)} Patients match a conditional reference of the payload")
            found[search] = f"Patient/{matches[0]['id']}"
        return found

    async def _committed(self, chunk: Chunk) -> dict[str, str] | None:
        """The chunk's locations if its transaction committed earlier (its Provenance exists)."""
        try:
            marker = await self.forward_client.get_json(f"Provenance/{chunk.marker}")
        except FhirNotFound:
            return None
        targets = [
            str((t or {}).get("reference") or "").split("/_history")[0] for t in marker.get("target") or ()
        ]
        return dict(zip(chunk.urns, targets, strict=False))

    async def _address(self, chunk: Chunk, source: Source) -> None:
        """Entries the sender addressed to a server id: update that resource if the source may."""
        for position, address in chunk.addressed.items():
            try:
                existing = await self.forward_client.get_json(address)
            except FhirNotFound:
                continue  # no such resource: the id is the engine's own, scoped like any other
            entry = chunk.bundle["entry"][position]
            if not _may_update(existing, entry["resource"], source):
                raise Refused(f"{address} belongs to another source; source {source.name} may not update it")
            entry["resource"]["id"] = address.split("/")[1]
            entry["request"] = {"method": "PUT", "url": address}
            version = (existing.get("meta") or {}).get("versionId")
            if version:
                entry["request"]["ifMatch"] = f'W/"{version}"'

    async def _send(self, chunk: Chunk, source: Source, locations: dict[str, str]) -> dict[str, str]:
        # Sent before (a lost answer, a timeout, a crash) and committed: never sent again.
        done = await self._committed(chunk)
        if done is not None:
            return done
        await self._address(chunk, source)
        bundle = rewrite_references(chunk.bundle, locations)  # earlier chunks' entries, resolved patients
        timeout = self.timeout + self.seconds_per_entry * len(bundle["entry"])
        try:
            reply = await asyncio.wait_for(self.forward_client.transaction(bundle, idempotent=False), timeout)
        except TimeoutError:
            # The server may still be running it: look for its Provenance after a grace period.
            log.warning("transaction timed out; may still be running", extra={"timeout": round(timeout, 1)})
            raise TimedOut(timeout) from None
        return located(chunk, reply)


def _may_update(existing: dict[str, Any], new: dict[str, Any], source: Source) -> bool:
    """A source may update a server resource it wrote, or a Patient through an identifier it owns."""
    origin = str((existing.get("meta") or {}).get("source") or "").split("#")[0]
    if origin == source.uri:
        return True
    if existing.get("resourceType") == "Patient":
        mine = authoritative_identifier(existing, source)
        return mine is not None and mine == authoritative_identifier(new, source)
    return False
