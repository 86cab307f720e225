"""Background processing of accepted payloads: forward to the FHIR server, screen, flag.

Each step is idempotent (conditional/derived-id writes, flagging by deterministic identifiers), so a
payload interrupted by a crash is simply processed again after its lease expires.

Processing at feed rate (``scheduler``):
- payloads are claimed oldest first, many at a time; up to ``concurrency`` forward at once, and a
  payload that touches a patient an earlier payload is still forwarding waits for it (per-patient
  order; a patient is known by its identifier, a conditional reference's identifier, or a literal
  ``Patient/id``);
- small payloads of one source are forwarded together in one transaction (``sender``), each keeping
  its own all-or-nothing;
- screening is coalesced: the patients of every payload forwarded in the meantime are screened in one
  round (``rescreen``), a patient touched by many payloads once, and only patients who can matter;
- a payload is done (``Inbox.done_many``) only after the round that read its data has flagged: a crash
  before that processes it again, which forwards nothing twice (each transaction's Provenance is
  looked for first) and re-screens.

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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

from adapter.fault_points import crash_point
from adapter.fhir.client import FhirClient, FhirError, FhirHttpError
from adapter.fhir.parsing import references_in
from adapter.flagging import Flagger, StudyNotPublished
from adapter.studies import served
from mappings.clinical.record import patients_in, resources_in
from mappings.criteria import CriteriaDefinition

from .breaker import CircuitBreaker
from .forward import Plan, authoritative_identifier, patients_touched, plan_forward
from .inbox import Inbox, InboxItem
from .rescreen import NOT_SCREENED, Rescreener
from .scheduler import Batcher, Coalescer, Turn, Turns
from .sender import TRANSIENT_STATUS, Outgoing, Refused, Sender, TimedOut, Wait, batchable
from .sources import Source, Sources

log = logging.getLogger(__name__)

__all__ = ["TRANSIENT_STATUS", "Processor", "Refused", "TimedOut", "Wait", "scrubbed"]

_HAPI_CODE = re.compile(r"\bHAPI-\d{4}\b")


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


def patient_keys(payload: dict[str, Any], source: Source | None) -> set[str]:
    """What identifies the patients a payload touches, before anything is sent (for per-patient order):
    a Patient's authoritative identifier, a conditional reference's identifier, or a literal
    ``Patient/id`` that is not one of the payload's own entries (an engine's ids are its own)."""
    keys: set[str] = set()
    own: set[str] = set()
    for entry in payload.get("entry") or ():
        resource = (entry or {}).get("resource") or {}
        if resource.get("resourceType") == "Patient":
            own |= {str(entry.get("fullUrl") or ""), f"Patient/{resource.get('id')}"}
            found = authoritative_identifier(resource, source) if source else None
            if found:
                keys.add(f"identifier {found[0]}|{found[1]}")
            elif resource.get("id"):
                keys.add(f"Patient/{resource['id']}")
    for entry in payload.get("entry") or ():
        for ref in references_in((entry or {}).get("resource") or {}):
            if ref.startswith("Patient?"):
                keys |= {f"identifier {v}" for k, v in parse_qsl(ref.split("?", 1)[1]) if k == "identifier"}
            elif ref.startswith("Patient/") and ref.split("/_history")[0] not in own:
                keys.add(ref.split("/_history")[0])
    return keys


@dataclass
class Job:
    """A claimed payload, parsed and planned, with its turn among the payloads on the same patients."""

    item: InboxItem
    turn: Turn | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    source: Source | None = None
    plan: Plan | None = None
    keys: set[str] = field(default_factory=set)
    error: Exception | None = None


class Processor:
    def __init__(
        self,
        client: FhirClient,
        definitions: CriteriaDefinition | Sequence[CriteriaDefinition],
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
        concurrency: int = 64,
        batches_at_once: int = 2,
        max_in_flight: int = 256,
        max_in_flight_bytes: int = 64_000_000,
        batch_linger: float = 0.02,
        screen_linger: float = 0.05,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.client = client
        self.forward_client = forward_client or client
        self.definitions = served(definitions)
        self.definition = self.definitions[0]
        self.inbox = inbox
        self.sources = sources if sources is not None else Sources()  # Sources() is falsy without keys
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff = backoff
        self.max_transaction_entries = max_transaction_entries
        self.reference_wait = reference_wait
        self.purge_every = purge_every
        self.concurrency = concurrency
        self.max_in_flight = max(1, max_in_flight)
        self.max_in_flight_bytes = max_in_flight_bytes  # payload bodies held at once (memory)
        self._held_bytes = 0
        self.flaggers = {d.study: Flagger(client, d.study) for d in self.definitions}
        self.sender = Sender(
            self.forward_client, timeout=timeout, seconds_per_entry=seconds_per_entry, backoff=backoff
        )
        self.rescreener = Rescreener(client, self.definitions, self.flaggers, today)
        self.breaker = CircuitBreaker(self._server_up, first_wait=breaker_wait)
        self.turns = Turns(concurrency)
        self.batcher: Batcher[Outgoing, dict[str, str]] = Batcher(
            lambda _source, items: self.sender.send_batch(items),
            linger=batch_linger,
            max_size=max_transaction_entries,
            size=lambda item: item.size,
            concurrent=batches_at_once,
        )
        self._large = asyncio.Semaphore(max(1, batches_at_once))  # payloads too big to batch, at once
        self.coalescer: Coalescer[dict[str, Any]] = Coalescer(self.rescreener.run, linger=screen_linger)
        self.finisher: Batcher[tuple[str, dict[str, Any]], None] = Batcher(self._finish, linger=0.005)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._purged_at = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()
        self.processed = 0

    def stats(self) -> dict[str, int]:
        """Counts since start: how much batching and coalescing saved (for /healthz and the bench)."""
        return {
            "inFlight": len(self._in_flight),
            "forwardBatches": self.batcher.batches,
            "payloadsForwardedTogether": self.sender.batched,
            "screeningRounds": self.coalescer.rounds,
            "patientsRequested": self.coalescer.requested,
            "patientsInRounds": self.coalescer.handled,
            "patientsScreened": self.rescreener.screened,
            "patientsNotScreened": self.rescreener.skipped,
            "patientsInError": self.rescreener.errors,
        }

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
        """Process until stopped; the payloads in hand are finished before returning."""
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._purged_at > self.purge_every:
                    self._purged_at = time.monotonic()
                    purged = await asyncio.to_thread(self.inbox.purge)
                    if purged:
                        log.info("payload bodies deleted after their retention", extra={"count": purged})
                await self.breaker.wait_closed(self._stop.is_set)
                room = self.max_in_flight - len(self._in_flight)
                budget = self.max_in_flight_bytes - self._held_bytes
                if room <= 0 or (budget <= 0 and self._in_flight):
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                items = await asyncio.to_thread(
                    self.inbox.claim_many, self.lease_seconds, min(room, 64), max(0, budget)
                )
                if not items:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    continue
                # Parsed together, then every turn taken in claim order (per-patient order) and every
                # job started at once, so that their forwards meet in the batcher.
                jobs = await asyncio.to_thread(self._parse_all, items)
                for job in jobs:
                    self._start(job)
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self.coalescer.close()

    async def process(self, item: InboxItem) -> None:
        """One payload from claim to done (where no dispatcher runs)."""
        job = await asyncio.to_thread(self._parse, item)
        await self._start(job)

    def _start(self, job: Job) -> asyncio.Task[None]:
        job.turn = self.turns.take(job.keys)
        size = len(job.item.body)
        self._held_bytes += size
        task = asyncio.create_task(self._run_job(job))
        self._in_flight.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._in_flight.discard(done)
            self._held_bytes -= size

        task.add_done_callback(finished)
        return task

    def _parse_all(self, items: list[InboxItem]) -> list[Job]:
        return [self._parse(item) for item in items]

    def _parse(self, item: InboxItem) -> Job:
        """The payload parsed and planned, and the patients it touches (in a worker thread)."""
        job = Job(item)
        try:
            if not item.body:
                raise Refused("the payload's body was deleted by retention")
            job.payload = json.loads(item.body)  # 20 MB: not on the event loop
            if item.kind == "bundle":
                job.source = self._source(item)
                now = datetime.fromtimestamp(item.received_at or time.time(), UTC).isoformat(
                    timespec="seconds"
                )
                job.plan = plan_forward(job.payload, job.source, item.id, now, self.max_transaction_entries)
                job.keys = patient_keys(job.payload, job.source)
            else:
                job.keys = {f"Patient/{p}" for p in patients_in(resources_in(job.payload))}
        except Exception as exc:
            job.error = exc
        return job

    async def _run_job(self, job: Job) -> None:
        item = job.item
        try:
            result = await self._handle(job)
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
        finally:
            if job.turn is not None:
                job.turn.release()
        crash_point("service-after-flag")
        await self.finisher.submit("done", (item.id, result))
        self.processed += 1
        log.info("payload processed", extra={"item": item.id, "patients": len(result.get("patients", []))})

    async def _finish(
        self, _group: Hashable, finished: list[tuple[str, dict[str, Any]]]
    ) -> list[BaseException | None]:
        await asyncio.to_thread(self.inbox.done_many, finished)  # one fsync for every payload done now
        return [None] * len(finished)

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

    def _source(self, item: InboxItem) -> Source:
        source = self.sources.sources.get(item.source)
        if source is None:
            raise Refused(f"source {item.source} is no longer configured")
        return source

    async def _handle(self, job: Job) -> dict[str, Any]:
        if job.error is not None:
            raise job.error
        assert job.turn is not None
        forwarded = 0
        async with job.turn:  # after the earlier payloads on the same patients have forwarded
            if job.plan is not None and job.source is not None:
                plan, source = job.plan, job.source
                locations = await self.sender.resolve_patients(plan.conditional_patients)
                if batchable(plan):
                    outgoing = Outgoing(plan.chunks[0], source, locations)
                    locations |= await self.batcher.submit(source.name, outgoing)
                else:
                    async with self._large:
                        for chunk in plan.chunks:
                            locations |= await self.sender.send(chunk, source, locations)
                crash_point("service-after-forward")
                forwarded = sum(len(c.bundle["entry"]) - 1 for c in plan.chunks)
                patients = patients_touched(plan.chunks, locations)
            else:  # a subscription notification: the data is already on the server
                patients = patients_in(resources_in(job.payload))
            job.payload, job.plan = {}, None  # held no longer than needed while screening waits
        # Coalesced: this payload's patients with those of every payload forwarded meanwhile.
        outcomes = await self.coalescer.request(sorted(patients))
        # One entry per (patient, study): the flags per study.
        screened = [s for o in outcomes.values() if o["status"] != NOT_SCREENED for s in o["studies"]]
        flags: dict[str, int] = {}
        for outcome in screened:
            if "flag" in outcome:  # an ``error`` (cannot be screened) is never flagged
                flags[outcome["flag"]] = flags.get(outcome["flag"], 0) + 1
        return {
            "forwarded": forwarded,
            "patients": screened,
            "notScreened": sorted(o["patient"] for o in outcomes.values() if o["status"] == NOT_SCREENED),
            "flags": flags,
        }
