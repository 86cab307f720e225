"""The ingestion inbox: accepted payloads, durable before they are acknowledged.

A payload is inserted and committed with synchronous=FULL (fsync) before the service answers 202, so
once an engine has its 202, a crash cannot lose the data. Processing claims an item with a lease;
a crash mid-processing leaves the lease to expire and the item is processed again, which is safe
because forwarding and flagging are idempotent. The idempotency key (Bundle.identifier or the
Idempotency-Key header) is unique: the same payload pushed twice is stored and processed once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
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


@dataclass(frozen=True)
class InboxItem:
    id: str
    kind: str
    body: bytes
    attempts: int


class Inbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()  # one connection, used from the event loop and worker threads
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def accept(self, kind: str, body: bytes, idempotency_key: str | None) -> tuple[str, bool]:
        """Store a payload durably. Returns (id, created); a known key returns the first id, False."""
        now = time.time()
        with self._lock:
            if idempotency_key:
                row = self._db.execute(
                    "SELECT id FROM inbox WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row:
                    return row[0], False
            item_id = str(uuid.uuid4())
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO inbox (id, idempotency_key, kind, body, state, received_at, not_before)"
                    " VALUES (?, ?, ?, ?, 'accepted', ?, ?)",
                    (item_id, idempotency_key, kind, body, now, now),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                row = self._db.execute(
                    "SELECT id FROM inbox WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                return row[0], False
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return item_id, True

    def recover(self) -> int:
        """At start-up: items a previous (crashed) process was processing are ready again at once.
        One service process owns an inbox file; leases guard against stalls within it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE inbox SET state = 'accepted', lease_until = NULL, not_before = ? WHERE state = 'processing'",
                (time.time(),),
            )
            self._db.execute("COMMIT")
        return cursor.rowcount

    def claim(self, lease_seconds: float) -> InboxItem | None:
        """The oldest ready item (accepted, or processing with an expired lease), leased to the caller."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id, kind, body, attempts FROM inbox"
                    " WHERE (state = 'accepted' AND not_before <= ?) OR (state = 'processing' AND lease_until < ?)"
                    " ORDER BY received_at LIMIT 1",
                    (now, now),
                ).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                self._db.execute(
                    "UPDATE inbox SET state = 'processing', attempts = attempts + 1, lease_until = ? WHERE id = ?",
                    (now + lease_seconds, row[0]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return InboxItem(id=row[0], kind=row[1], body=row[2], attempts=row[3] + 1)

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
        self._update(
            "UPDATE inbox SET state = 'done', result = ?, last_error = NULL, lease_until = NULL, finished_at = ?"
            " WHERE id = ?",
            (json.dumps(result), time.time(), item_id),
        )

    def retry_later(self, item_id: str, error: str, delay: float) -> None:
        self._update(
            "UPDATE inbox SET state = 'accepted', last_error = ?, not_before = ?, lease_until = NULL WHERE id = ?",
            (error, time.time() + delay, item_id),
        )

    def dead(self, item_id: str, error: str) -> None:
        self._update(
            "UPDATE inbox SET state = 'dead', last_error = ?, lease_until = NULL, finished_at = ? WHERE id = ?",
            (error, time.time(), item_id),
        )

    def replay(self, item_id: str) -> bool:
        """Put a dead-lettered item back in the queue; False if it is not dead."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "UPDATE inbox SET state = 'accepted', attempts = 0, not_before = ?, last_error = NULL,"
                " finished_at = NULL WHERE id = ? AND state = 'dead'",
                (time.time(), item_id),
            )
            self._db.execute("COMMIT")
        return cursor.rowcount == 1

    def status(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, state, attempts, received_at, last_error, result, finished_at FROM inbox WHERE id = ?",
                (item_id,),
            ).fetchone()
        if row is None:
            return None
        return _status_row(row)

    def list(self, state: str | None, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, state, attempts, received_at, last_error, result, finished_at FROM inbox"
                " WHERE (? IS NULL OR state = ?) ORDER BY received_at DESC LIMIT ?",
                (state, state, limit),
            ).fetchall()
        return [_status_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM inbox GROUP BY state").fetchall()
        return dict(rows)


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _status_row(row: tuple) -> dict[str, Any]:
    item_id, kind, state, attempts, received, error, result, finished = row
    return {
        "id": item_id,
        "kind": kind,
        "state": state,
        "attempts": attempts,
        "receivedAt": _iso(received),
        "finishedAt": _iso(finished),
        "error": error,
        "result": json.loads(result) if result else None,
    }
