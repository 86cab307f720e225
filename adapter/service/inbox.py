"""The ingestion inbox: accepted payloads, durable before they are acknowledged.

A payload is inserted and committed with synchronous=FULL (fsync) before the service answers 202, so
once an engine has its 202, a crash cannot lose the data. Processing claims an item with a lease;
a crash mid-processing leaves the lease to expire and the item is processed again, which is safe
because forwarding and flagging are idempotent.

Idempotency keys (Bundle.identifier or the Idempotency-Key header) are scoped by source and bound to a
hash of the content: the same key with the same content is the same payload (stored and processed
once); the same key with other content is refused (``IdempotencyConflict``), never silently dropped.

Retention: a payload's body (patient data) is deleted ``replay_window`` seconds after it was processed,
and a dead letter's ``dead_window`` seconds after it died; the row (ids, states, hash) stays so that a
late repeat is still recognised. The file is created readable by its owner only (0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    kind TEXT NOT NULL,                  -- bundle | notification
    body BLOB NOT NULL,
    state TEXT NOT NULL,                 -- accepted | processing | done | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    not_before REAL NOT NULL,
    lease_until REAL,
    last_error TEXT,
    result TEXT,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS inbox_ready ON inbox (state, not_before);
"""
# Added after the first release; an older inbox gets them on open (its rows belong to 'default').
_COLUMNS = {"source": "TEXT", "content_hash": "TEXT", "purged_at": "REAL"}
_KEY_SEP = "\n"  # idempotency_key is stored as source + _KEY_SEP + key: unique per source


class IdempotencyConflict(Exception):
    """The key is known for this source, bound to other content."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


class BodyExpired(Exception):
    """The payload's body was deleted by retention; it cannot be replayed."""


@dataclass(frozen=True)
class InboxItem:
    id: str
    kind: str
    body: bytes
    attempts: int
    source: str = "default"
    received_at: float = 0.0


class Inbox:
    def __init__(
        self,
        path: Path,
        *,
        replay_window: float = 7 * 86400.0,
        dead_window: float = 30 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)  # SQLite creates the -wal and -shm files with the same mode
        self.replay_window = replay_window
        self.dead_window = dead_window
        self.clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()  # one connection, used from the event loop and worker threads
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(inbox)")}
            for column, kind in _COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE inbox ADD COLUMN {column} {kind}")
            self._db.execute(
                "UPDATE inbox SET idempotency_key = 'default' || ? || idempotency_key"
                " WHERE source IS NULL AND idempotency_key IS NOT NULL",
                (_KEY_SEP,),
            )
            self._db.execute("UPDATE inbox SET source = 'default' WHERE source IS NULL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def accept(
        self,
        source: str,
        idempotency_key: str | None,
        body: bytes,
        kind: str,
        *,
        content_hash: str | None = None,
    ) -> tuple[str, bool]:
        """Store a payload durably (committed and fsynced on return). The entry point for every listener.

        ``source`` is the sending source's name; ``idempotency_key`` its own key for this message
        (None: none); ``kind`` ``bundle`` (a FHIR Bundle, JSON) or ``notification``. ``content_hash``
        defaults to the SHA-256 of the body. Returns (id, created): a repeat of a known key with the same
        content returns the first id and False; with other content it raises ``IdempotencyConflict``.
        """
        now = self.clock()
        digest = content_hash or hashlib.sha256(body).hexdigest()
        scoped = f"{source}{_KEY_SEP}{idempotency_key}" if idempotency_key else None
        with self._lock:
            known = self._known(scoped, digest)
            if known:
                return known, False
            item_id = str(uuid.uuid4())
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO inbox (id, idempotency_key, kind, body, state, received_at, not_before,"
                    " source, content_hash) VALUES (?, ?, ?, ?, 'accepted', ?, ?, ?, ?)",
                    (item_id, scoped, kind, body, now, now, source, digest),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                known = self._known(scoped, digest)
                if known is None:
                    raise
                return known, False
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return item_id, True

    def _known(self, scoped: str | None, digest: str) -> str | None:
        if not scoped:
            return None
        row = self._db.execute(
            "SELECT id, content_hash FROM inbox WHERE idempotency_key = ?", (scoped,)
        ).fetchone()
        if row is None:
            return None
        if row[1] is not None and row[1] != digest:
            raise IdempotencyConflict(row[0])
        return str(row[0])

    def recover(self) -> int:
        """At start-up: items a previous (crashed) process was processing are ready again at once.
        One service process owns an inbox file; leases guard against stalls within it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE inbox SET state = 'accepted', lease_until = NULL, not_before = ? WHERE state = 'processing'",
                (self.clock(),),
            )
            self._db.execute("COMMIT")
        return cursor.rowcount

    def claim(self, lease_seconds: float) -> InboxItem | None:
        """The oldest ready item (accepted, or processing with an expired lease), leased to the caller."""
        items = self.claim_many(lease_seconds, 1)
        return items[0] if items else None

    def claim_many(self, lease_seconds: float, limit: int, max_bytes: int | None = None) -> list[InboxItem]:
        """Up to ``limit`` ready items, oldest first, leased to the caller in one transaction; at most
        ``max_bytes`` of bodies in all (but always the oldest one), so a run of 20 MB payloads is not
        held in memory at once."""
        now = self.clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ready = self._db.execute(
                    "SELECT id, length(body) FROM inbox"
                    " WHERE (state = 'accepted' AND not_before <= ?) OR (state = 'processing' AND lease_until < ?)"
                    " ORDER BY received_at LIMIT ?",
                    (now, now, max(1, limit)),
                ).fetchall()
                chosen: list[str] = []
                total = 0
                for item_id, size in ready:
                    total += size or 0
                    if chosen and max_bytes is not None and total > max_bytes:
                        break
                    chosen.append(item_id)
                rows = [
                    self._db.execute(
                        "SELECT id, kind, body, attempts, source, received_at FROM inbox WHERE id = ?", (i,)
                    ).fetchone()
                    for i in chosen
                ]
                self._db.executemany(
                    "UPDATE inbox SET state = 'processing', attempts = attempts + 1, lease_until = ? WHERE id = ?",
                    [(now + lease_seconds, item_id) for item_id in chosen],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [InboxItem(r[0], r[1], r[2], r[3] + 1, r[4] or "default", r[5]) for r in rows]

    def _update(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def done(self, item_id: str, result: dict[str, Any]) -> None:
        self.done_many([(item_id, result)])

    def done_many(self, finished: list[tuple[str, dict[str, Any]]]) -> None:
        """Several items done in one transaction (one fsync)."""
        now = self.clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE inbox SET state = 'done', result = ?, last_error = NULL, lease_until = NULL,"
                    " finished_at = ? WHERE id = ?",
                    [(json.dumps(result), now, item_id) for item_id, result in finished],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def retry_later(self, item_id: str, error: str, delay: float, *, counted: bool = True) -> None:
        """Back in the queue after ``delay``. ``counted=False``: the attempt does not count towards the
        limit (the FHIR server was down, or the patient referred to is not there yet)."""
        self._update(
            "UPDATE inbox SET state = 'accepted', last_error = ?, not_before = ?, lease_until = NULL,"
            " attempts = attempts - ? WHERE id = ?",
            (error, self.clock() + delay, 0 if counted else 1, item_id),
        )

    def dead(self, item_id: str, error: str) -> None:
        self._update(
            "UPDATE inbox SET state = 'dead', last_error = ?, lease_until = NULL, finished_at = ? WHERE id = ?",
            (error, self.clock(), item_id),
        )

    def replay(self, item_id: str) -> bool:
        """Put a dead-lettered item back in the queue; False if it is not dead."""
        with self._lock:
            row = self._db.execute("SELECT purged_at FROM inbox WHERE id = ?", (item_id,)).fetchone()
            if row is not None and row[0] is not None:
                raise BodyExpired(item_id)
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE inbox SET state = 'accepted', attempts = 0, not_before = ?, last_error = NULL,"
                " finished_at = NULL WHERE id = ? AND state = 'dead'",
                (self.clock(), item_id),
            )
            self._db.execute("COMMIT")
        return cursor.rowcount == 1

    def status(self, item_id: str, source: str | None = None) -> dict[str, Any] | None:
        """One payload's status; with ``source``, only if that source sent it."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_STATUS_COLUMNS} FROM inbox WHERE id = ? AND (? IS NULL OR source = ?)",
                (item_id, source, source),
            ).fetchone()
        if row is None:
            return None
        return _status_row(row)

    def list(self, state: str | None, limit: int = 100, source: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_STATUS_COLUMNS} FROM inbox WHERE (? IS NULL OR state = ?)"
                " AND (? IS NULL OR source = ?) ORDER BY received_at DESC LIMIT ?",
                (state, state, source, source, limit),
            ).fetchall()
        return [_status_row(r) for r in rows]

    def purge(self) -> int:
        """Retention: delete the bodies of payloads processed (dead) longer ago than the window."""
        now = self.clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE inbox SET body = X'', purged_at = ? WHERE purged_at IS NULL AND"
                " ((state = 'done' AND finished_at < ?) OR (state = 'dead' AND finished_at < ?))",
                (now, now - self.replay_window, now - self.dead_window),
            )
            self._db.execute("COMMIT")
        return cursor.rowcount

    def body(self, item_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM inbox WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM inbox GROUP BY state").fetchall()
        return dict(rows)


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


_STATUS_COLUMNS = "id, kind, state, attempts, received_at, last_error, result, finished_at, source, purged_at"


def _status_row(row: tuple) -> dict[str, Any]:
    item_id, kind, state, attempts, received, error, result, finished, source, purged = row
    return {
        "id": item_id,
        "source": source,
        "kind": kind,
        "state": state,
        "attempts": attempts,
        "receivedAt": _iso(received),
        "finishedAt": _iso(finished),
        "bodyDeletedAt": _iso(purged),
        "error": error,
        "result": json.loads(result) if result else None,
    }
