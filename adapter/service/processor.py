"""Background processing of accepted payloads: forward to the FHIR server, screen, flag.

Each step is idempotent (conditional/derived-id writes, flagging by deterministic identifiers), so a
payload interrupted by a crash is simply processed again after its lease expires. The server's 4xx
answers are permanent: the payload goes to the dead-letter state with the server's diagnostics at
once. Transient failures (5xx, 429, timeouts, connection errors) are retried with bounded backoff and
dead-lettered after ``max_attempts``. Dead letters are visible in the status API and can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

from adapter.fault_points import crash_point
from adapter.fhir.client import FhirClient, FhirError, FhirHttpError
from adapter.flagging import Flagger, StudyNotPublished
from adapter.screening.engine import Screener
from adapter.screening.record import patients_in, resources_in
from adapter.screening.resolve import with_resolve
from adapter.sources.server import ServerSource
from mappings.criteria import CriteriaDefinition

from .forward import to_transaction, touched_patients
from .inbox import Inbox, InboxItem

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Processor:
    def __init__(
        self,
        client: FhirClient,
        definition: CriteriaDefinition,
        inbox: Inbox,
        *,
        max_attempts: int = 5,
        lease_seconds: float = 300.0,
        backoff: float = 2.0,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.client = client
        self.definition = definition
        self.inbox = inbox
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff = backoff
        self.today = today
        self.flagger = Flagger(client, definition.study)
        self.source = ServerSource(client, definition)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.processed = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Process until stopped; the current item is finished before returning."""
        while not self._stop.is_set():
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
        except FhirHttpError as exc:
            if exc.status in TRANSIENT_STATUS:
                self._retry_or_dead(item, str(exc))
            else:
                log.warning("payload dead-lettered", extra={"item": item.id, "status": exc.status})
                await asyncio.to_thread(self.inbox.dead, item.id, str(exc))
            return
        except (FhirError, StudyNotPublished) as exc:
            self._retry_or_dead(item, str(exc))
            return
        except Exception as exc:  # a bug or unforeseen data: keep the payload, stop retrying it
            log.exception("payload processing failed", extra={"item": item.id})
            await asyncio.to_thread(self.inbox.dead, item.id, f"internal error ({type(exc).__name__})")
            return
        crash_point("service-after-flag")
        await asyncio.to_thread(self.inbox.done, item.id, result)
        self.processed += 1
        log.info("payload processed", extra={"item": item.id, "patients": len(result.get("patients", []))})

    def _retry_or_dead(self, item: InboxItem, error: str) -> None:
        if item.attempts >= self.max_attempts:
            log.warning(
                "payload dead-lettered after retries", extra={"item": item.id, "attempts": item.attempts}
            )
            self.inbox.dead(item.id, error)
        else:
            delay = min(300.0, self.backoff * 2 ** (item.attempts - 1))
            log.info(
                "payload retry scheduled", extra={"item": item.id, "attempt": item.attempts, "delay": delay}
            )
            self.inbox.retry_later(item.id, error, delay)

    async def _handle(self, item: InboxItem) -> dict[str, Any]:
        payload = json.loads(item.body)
        forwarded = 0
        if item.kind == "bundle":
            transaction = to_transaction(payload)
            reply = await self.client.transaction(transaction, idempotent=True)
            crash_point("service-after-forward")
            forwarded = len(transaction["entry"])
            patients, conditional = touched_patients(transaction, reply)
            for search in sorted(conditional):
                patients |= patients_in(await self.client.search_resources("Patient", _query(search)))
        else:  # a subscription notification: the data is already on the server
            patients = patients_in(resources_in(payload))
        flags: dict[str, int] = {}
        screened = []
        if patients:
            await self.flagger.prepare()
            screener = Screener(self.definition, self.today())
            async for record in self.source.records(sorted(patients)):
                result = with_resolve(screener, record, screener.screen(record))  # the Task's "collect next"
                outcome = await self.flagger.apply(result)
                flags[outcome.action] = flags.get(outcome.action, 0) + 1
                screened.append({"patient": result.patient, "status": result.status, "flag": outcome.action})
        return {"forwarded": forwarded, "patients": screened, "flags": flags}


def _query(conditional_reference: str) -> list[tuple[str, str]]:
    return parse_qsl(conditional_reference.split("?", 1)[1])
