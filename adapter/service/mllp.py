"""The MLLP listener: HL7 v2 messages over TCP (optionally TLS), acknowledged only once durable.

Framing: <0x0B> message <0x1C 0x0D>; several messages per connection, answered in order; a frame may
arrive in any number of reads. Limits: a maximum message size (an oversized message is answered AR
and skipped to its end), an idle timeout per connection, a maximum number of connections.

Security: MLLP has no authentication of its own, so the listener binds to the configured interface,
can require TLS (and client certificates), and accepts only sending facilities (MSH-4) on its
allow-list, each mapped to a named source. An unknown sender gets AR and nothing is stored.

ACKs: AA (CA in enhanced mode) only after ``accept`` has committed the converted Bundle; AE/AR with an
ERR for a message we cannot take, nothing stored; a repeat (same MSH-3, MSH-4, MSH-10) gets the
original ACK back from the ACK store and is not stored again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from adapter.hl7v2.ack import build_ack, msh_fields, wants_ack
from adapter.hl7v2.convert import Header, header, to_bundle
from adapter.hl7v2.datatypes import Context
from adapter.hl7v2.message import DATA_TYPE, INTERNAL_ERROR, VALUE_TOO_LONG, Message, V2Error, parse
from adapter.service.sources import DEV_SOURCE

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"


@dataclass(frozen=True)
class Accepted:
    item_id: str


@dataclass(frozen=True)
class Duplicate:
    item_id: str


class Rejected(ValueError):
    """The accept function refuses the Bundle (it is not valid FHIR): the message gets AE."""


# accept(source, idempotency_key, transaction Bundle): durable when it returns.
Accept = Callable[[str, str, dict[str, Any]], Awaitable[Accepted | Duplicate]]


@dataclass
class MllpSettings:
    host: str
    port: int
    facilities: dict[str, str] = field(default_factory=dict)  # MSH-4 (HD.1 or HD.2) -> source name
    any_facility: bool = False  # development only (--dev-open): every facility pushes as the 'dev' source
    max_message_bytes: int = 1_000_000
    idle_timeout: float = 300.0
    max_connections: int = 100
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    local_base: str = "http://trial-adapter.org/fhir/v2/"
    tz: tzinfo | None = None
    ack_store: Path | None = None  # default: beside the inbox


class AckStore:
    """The ACK sent for each accepted message, so a repeat gets the very same answer (fsynced).
    ACKs older than ``keep_days`` are dropped at start-up: engines resend within minutes or hours;
    a repeat after that is still stored once (the inbox key), it just gets a fresh AA."""

    def __init__(self, path: Path, keep_days: float = 30.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS acks (source TEXT, key TEXT, ack BLOB NOT NULL, item TEXT,"
                " created REAL NOT NULL, PRIMARY KEY (source, key))"
            )
            self._db.execute("DELETE FROM acks WHERE created < ?", (time.time() - keep_days * 86400,))

    def get(self, source: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT ack FROM acks WHERE source = ? AND key = ?", (source, key)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, source: str, key: str, ack: bytes, item: str) -> bytes:
        """Record ``ack`` unless one is there already; returns the one on record."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO acks (source, key, ack, item, created) VALUES (?, ?, ?, ?, ?)",
                (source, key, ack, item, time.time()),
            )
            row = self._db.execute(
                "SELECT ack FROM acks WHERE source = ? AND key = ?", (source, key)
            ).fetchone()
        return bytes(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class Frames:
    """MLLP de-framing over any split of the byte stream. ``feed`` returns events in order:
    ("message", body), ("too-large", its first bytes) or ("truncated", its first bytes)."""

    max_bytes: int
    buffer: bytearray = field(default_factory=bytearray)
    in_frame: bool = False
    skipping: bool = False  # inside an oversized frame, already answered: drop to its end

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buffer += data
        events: list[tuple[str, bytes]] = []
        while True:
            if not self.in_frame:
                start = self.buffer.find(START)
                if start < 0:
                    self.buffer.clear()  # bytes between frames are not HL7: ignored
                    return events
                del self.buffer[: start + 1]
                self.in_frame = True
            end = self.buffer.find(END)
            restart = self.buffer.find(START)
            if 0 <= restart < (end if end >= 0 else len(self.buffer)):
                # A new start block before this frame ended: the frame was cut short.
                if not self.skipping:
                    events.append(("truncated", bytes(self.buffer[:restart][:4000])))
                del self.buffer[:restart]
                self.in_frame, self.skipping = False, False
                continue
            if end < 0:
                if len(self.buffer) > self.max_bytes and not self.skipping:
                    events.append(("too-large", bytes(self.buffer[:4000])))
                    self.skipping = True
                if self.skipping:
                    keep = self.buffer[-1:] if self.buffer.endswith(b"\x1c") else b""
                    self.buffer = bytearray(keep)
                return events
            body = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self.in_frame = False
            if self.skipping:
                self.skipping = False
            elif len(body) > self.max_bytes:
                events.append(("too-large", body[:4000]))
            else:
                events.append(("message", body))


class MllpServer:
    def __init__(self, settings: MllpSettings, accept: Accept, acks: AckStore) -> None:
        self.settings = settings
        self.accept = accept
        self.acks = acks
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, self.settings.host, self.settings.port, ssl=self.settings.tls, limit=65536
        )
        log.info(
            "MLLP listener started",
            extra={
                "port": self.settings.port,
                "tls": self.settings.tls is not None,
                "facilities": len(self.settings.facilities),
            },
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        self.acks.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.settings.max_connections:
            log.warning(
                "MLLP connection refused: too many connections",
                extra={"limit": self.settings.max_connections},
            )
            writer.close()
            return
        assert task is not None
        self._connections.add(task)
        frames = Frames(self.settings.max_message_bytes)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self.settings.idle_timeout)
                except TimeoutError:
                    log.info("MLLP connection idle: closed", extra={"seconds": self.settings.idle_timeout})
                    break
                if not data:
                    break
                for kind, body in frames.feed(data):
                    answer = await self.handle(body) if kind == "message" else self._framing_error(kind, body)
                    if answer:
                        writer.write(START + answer + END)
                        await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the peer went away: whatever it did not get an ACK for, it sends again
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _framing_error(self, kind: str, head: bytes) -> bytes:
        if kind == "too-large":
            error = V2Error(
                VALUE_TOO_LONG, f"message over the limit of {self.settings.max_message_bytes} bytes", ack="AR"
            )
        else:
            error = V2Error(DATA_TYPE, "the frame was cut short by a new start block (0x0B)", ack="AR")
        log.warning("MLLP frame refused", extra={"reason": kind})
        return build_ack(head, "AR", error)

    def source_for(self, head: Header) -> str | None:
        if self.settings.any_facility:  # --dev-open: like every HTTP push, every message is the dev source's
            return DEV_SOURCE
        for name in head.facility_names:
            if name in self.settings.facilities:
                return self.settings.facilities[name]
        return None

    def _convert(self, raw: bytes) -> tuple[Message, Header]:
        msg = parse(raw)
        return msg, header(msg)

    async def handle(self, raw: bytes) -> bytes | None:
        """One complete message -> the ACK bytes to send (None when MSH-15 asks for no ACK)."""
        fields = msh_fields(raw)
        ack = await self._answer(raw)
        code = ack.split(b"\rMSA|", 1)[1][:2] if b"\rMSA|" in ack else b"AR"
        return ack if wants_ack(fields, code in (b"AA", b"CA")) else None

    async def _answer(self, raw: bytes) -> bytes:
        try:
            msg, head = await asyncio.to_thread(self._convert, raw)
        except V2Error as exc:
            log.warning(
                "MLLP message refused", extra={"code": exc.code, "where": exc.location, "ack": exc.ack}
            )
            return build_ack(raw, exc.ack, exc)
        except Exception as exc:  # a bug: the same message would fail again, so AE (do not resend as is)
            # The type only: an exception's text may quote a field of the message.
            log.error("MLLP message could not be read", extra={"error": type(exc).__name__})
            return build_ack(raw, "AE", V2Error(INTERNAL_ERROR, "internal error reading the message"))
        source = self.source_for(head)
        if source is None:
            log.warning("MLLP sender not allowed", extra={"facility": head.facility_names[0][:64]})
            return build_ack(
                raw,
                "AR",
                V2Error(
                    INTERNAL_ERROR,
                    "sending facility (MSH-4) is not allowed here",
                    segment="MSH",
                    field=4,
                    ack="AR",
                ),
            )
        stored = await asyncio.to_thread(self.acks.get, source, head.key)
        if stored is not None:
            log.info("MLLP repeat answered with its original ACK", extra={"source": source})
            return stored
        ctx = Context(
            facility=head.facility_names[0],
            local_base=self.settings.local_base,
            **({"tz": self.settings.tz} if self.settings.tz else {}),
        )
        try:
            bundle = await asyncio.to_thread(to_bundle, msg, head, ctx)
        except V2Error as exc:
            log.warning(
                "MLLP message refused", extra={"code": exc.code, "where": exc.location, "source": source}
            )
            return build_ack(raw, exc.ack, exc)
        except Exception as exc:
            log.error(
                "MLLP message could not be converted", extra={"source": source, "error": type(exc).__name__}
            )
            return build_ack(raw, "AE", V2Error(INTERNAL_ERROR, "internal error converting the message"))
        try:
            result = await self.accept(source, head.key, bundle)
        except Rejected as exc:
            log.warning("MLLP message maps to invalid FHIR", extra={"source": source})
            return build_ack(raw, "AE", V2Error(DATA_TYPE, f"the message does not map to valid FHIR: {exc}"))
        except Exception:
            log.exception("MLLP message could not be stored", extra={"source": source})
            return build_ack(
                raw,
                "AR",
                V2Error(INTERNAL_ERROR, "temporary failure storing the message: send it again", ack="AR"),
            )
        ack = build_ack(raw, "AA")
        ack = await asyncio.to_thread(self.acks.put, source, head.key, ack, result.item_id)
        log.info(
            "MLLP message accepted" if isinstance(result, Accepted) else "MLLP message already accepted",
            extra={"item": result.item_id, "source": source, "type": f"{head.message_type}^{head.event}"},
        )
        return ack


async def start_mllp(settings: MllpSettings, accept: Accept, inbox_path: Path) -> MllpServer:
    acks = AckStore(settings.ack_store or inbox_path.with_name(inbox_path.name + ".mllp-acks"))
    server = MllpServer(settings, accept, acks)
    try:
        await server.start()
    except BaseException:
        acks.close()
        raise
    return server
