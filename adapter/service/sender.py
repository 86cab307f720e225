"""Sending planned transactions (``forward.plan_forward``) to the FHIR server, alone or batched.

Exactly once: a transaction carries its payload's Provenance (``Chunk.marker``); before anything is
sent, the marker is looked for, and a chunk whose marker exists committed earlier (a lost answer, a
timeout, a crash) and is never sent again.

Batching (processing at feed rate): several small payloads of one source go to the server as one
transaction. Only payloads that are one transaction on their own and address no server id (no read and
If-Match needed) are batched, and never two that write the same resource (same fullUrl or request). A
payload's all-or-nothing is kept: its entries and its Provenance are all in the one transaction, which
commits or fails as a whole. When a batch is refused (4xx: some payload in it is bad), each payload is
sent again on its own, so the bad one is dead-lettered alone and the others go through; a transient
failure (5xx, 429, 409) is every payload's, and a batch that timed out is never resent before its
markers are looked for.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from adapter.fault_points import crash_point
from adapter.fhir.client import FhirClient, FhirHttpError, FhirNotFound
from adapter.fhir.transaction import if_match, rewrite_references, transaction

from .forward import Chunk, Plan, authoritative_identifier, located
from .sources import Source

log = logging.getLogger(__name__)

# 409: HAPI's answer to a version conflict (If-Match) or a concurrent write; read again and retry.
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


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


@dataclass
class Outgoing:
    """One payload's single transaction, waiting for a batch."""

    chunk: Chunk
    source: Source
    locations: dict[str, str]  # resolved conditional Patient references

    @property
    def size(self) -> int:
        return len(self.chunk.bundle["entry"])

    def writes(self) -> set[str]:
        """What two entries of one transaction must not share (HAPI refuses duplicates)."""
        out: set[str] = set()
        for entry in self.chunk.bundle["entry"]:
            request = entry.get("request") or {}
            out.add(f"{request.get('method')} {request.get('url')} {request.get('ifNoneExist', '')}")
            if entry.get("fullUrl"):
                out.add(entry["fullUrl"])
        return out


def batchable(plan: Plan) -> bool:
    return len(plan.chunks) == 1 and not plan.chunks[0].addressed


def _targets(chunk: Chunk, marker: dict[str, Any]) -> dict[str, str]:
    targets = [
        str((t or {}).get("reference") or "").split("/_history")[0] for t in marker.get("target") or ()
    ]
    return dict(zip(chunk.urns, targets, strict=False))


class Sender:
    def __init__(
        self,
        client: FhirClient,
        *,
        timeout: float = 60.0,
        seconds_per_entry: float = 0.05,
        backoff: float = 2.0,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.seconds_per_entry = seconds_per_entry
        self.backoff = backoff
        self.batched = 0  # payloads that went in a transaction with others

    async def resolve_patients(self, conditional: list[str]) -> dict[str, str]:
        """Each ``Patient?identifier=...`` the payload refers to -> its ``Patient/id``; waits if absent."""
        found: dict[str, str] = {}
        for search in conditional:
            matches = await self.client.search_resources("Patient", parse_qsl(search.split("?", 1)[1]))
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
            marker = await self.client.get_json(f"Provenance/{chunk.marker}")
        except FhirNotFound:
            return None
        return _targets(chunk, marker)

    async def _address(self, chunk: Chunk, source: Source) -> None:
        """Entries the sender addressed to a server id: update that resource if the source may."""
        for position, address in chunk.addressed.items():
            try:
                existing = await self.client.get_json(address)
            except FhirNotFound:
                continue  # no such resource: the id is the engine's own, scoped like any other
            entry = chunk.bundle["entry"][position]
            if not _may_update(existing, entry["resource"], source):
                raise Refused(f"{address} belongs to another source; source {source.name} may not update it")
            entry["resource"]["id"] = address.split("/")[1]
            entry["request"] = if_match({"method": "PUT", "url": address}, existing)

    async def _post(self, bundle: dict[str, Any]) -> dict[str, Any]:
        timeout = self.timeout + self.seconds_per_entry * len(bundle["entry"])
        try:
            return await asyncio.wait_for(self.client.transaction(bundle, idempotent=False), timeout)
        except TimeoutError:
            # The server may still be running it: look for its Provenance after a grace period.
            log.warning("transaction timed out; may still be running", extra={"timeout": round(timeout, 1)})
            raise TimedOut(timeout) from None

    async def send(self, chunk: Chunk, source: Source, locations: dict[str, str]) -> dict[str, str]:
        """One transaction on its own; returns urn -> ``Type/id`` of its entries."""
        done = await self._committed(chunk)
        if done is not None:  # sent before and committed: never sent again
            return done
        await self._address(chunk, source)
        # Earlier chunks' entries and the resolved patients, by their server ids.
        return located(chunk, await self._post(rewrite_references(chunk.bundle, locations)))

    async def send_batch(self, items: list[Outgoing]) -> list[dict[str, str] | BaseException]:
        """Several payloads' transactions as one (see the module's notes); each item's locations or
        its own failure, in order."""
        results: list[dict[str, str] | BaseException | None] = [None] * len(items)
        markers = {item.chunk.marker: i for i, item in enumerate(items)}
        for marker in await self.client.search_resources(
            "Provenance", [("_id", ",".join(markers)), ("_count", str(len(markers)))]
        ):
            i = markers.get(str(marker.get("id")))
            if i is not None:
                results[i] = _targets(items[i].chunk, marker)
        together: list[int] = []
        alone: list[int] = []
        taken: set[str] = set()
        for i, item in enumerate(items):
            if results[i] is not None:
                continue
            writes = item.writes()
            if writes & taken:
                alone.append(i)  # writes a resource another payload of the batch writes: after it
            else:
                together.append(i)
                taken |= writes
        if len(together) == 1:
            alone.insert(0, together.pop())
        if together:
            await self._send_together([items[i] for i in together], together, results)
        for i in alone:
            results[i] = await self._one(items[i])
        return [r if r is not None else RuntimeError("not sent") for r in results]

    async def _one(self, item: Outgoing) -> dict[str, str] | BaseException:
        try:
            return await self.send(item.chunk, item.source, item.locations)
        except Exception as exc:
            return exc

    async def _send_together(self, items: list[Outgoing], positions: list[int], results: list[Any]) -> None:
        bundles = [rewrite_references(item.chunk.bundle, item.locations) for item in items]
        merged = transaction([e for b in bundles for e in b["entry"]])
        try:
            reply = await self._post(merged)
        except FhirHttpError as exc:
            if exc.status in TRANSIENT_STATUS:
                for i in positions:
                    results[i] = exc
                return
            # Refused as a whole: some payload in it is bad. Each alone, so only that one fails.
            log.info(
                "batched transaction refused; sending its payloads one by one", extra={"status": exc.status}
            )
            for i, item in zip(positions, items, strict=True):
                results[i] = await self._one(item)
            return
        except Exception as exc:  # a timeout (may still be running) or a connection error: everyone's
            for i in positions:
                results[i] = exc
            return
        crash_point("service-after-batch")
        self.batched += len(items)
        answers = reply.get("entry") or []
        offset = 0
        for i, item in zip(positions, items, strict=True):
            size = item.size
            results[i] = located(item.chunk, {"entry": answers[offset : offset + size]})
            offset += size


def _may_update(existing: dict[str, Any], new: dict[str, Any], source: Source) -> bool:
    """A source may update a server resource it wrote, or a Patient through an identifier it owns."""
    origin = str((existing.get("meta") or {}).get("source") or "").split("#")[0]
    if origin == source.uri:
        return True
    if existing.get("resourceType") == "Patient":
        mine = authoritative_identifier(existing, source)
        return mine is not None and mine == authoritative_identifier(new, source)
    return False
