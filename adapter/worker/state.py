"""The worker's durable state in an embedded SQLite file.

- the checkpoint: the time up to which every change has been screened and flagged;
- the population: patients with an ALL record (so polling asks only about them);
- the last result per patient (a digest), so an unchanged result causes no write.

Every write is a committed transaction with synchronous=FULL: once a method returns, a kill -9
cannot lose it. The flag is written to the server before the digest is saved here, so a crash in
between only repeats an idempotent flag.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from adapter.screening.results import PatientResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS population (patient TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS last_result (
    patient TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    flag TEXT,
    screened_at TEXT NOT NULL
);
"""


def result_digest(result: PatientResult, as_of: str) -> str:
    """What a flag depends on: the status and each criterion's result (and the day it holds for)."""
    payload = json.dumps([as_of, result.status, [(c.id, c.result) for c in result.criteria]])
    return hashlib.sha256(payload.encode()).hexdigest()


class WorkerState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, params: Iterable = ()) -> None:
        with self._db:  # BEGIN ... COMMIT
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(sql, tuple(params))

    # --- checkpoint -------------------------------------------------------------------------------

    def checkpoint(self) -> datetime | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_checkpoint(self, when: datetime) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES ('checkpoint', ?)", [when.isoformat()])

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])

    # --- population -------------------------------------------------------------------------------

    def population(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT patient FROM population ORDER BY patient")]

    def add_population(self, patients: Iterable[str]) -> None:
        rows = [(p,) for p in patients]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO population (patient) VALUES (?)", rows)

    # --- results ----------------------------------------------------------------------------------

    def last_digest(self, patient: str) -> str | None:
        row = self._db.execute("SELECT digest FROM last_result WHERE patient = ?", (patient,)).fetchone()
        return row[0] if row else None

    def record(self, result: PatientResult, digest: str, flag: str, when: datetime) -> None:
        self._write(
            "INSERT OR REPLACE INTO last_result (patient, digest, status, flag, screened_at) VALUES (?, ?, ?, ?, ?)",
            [result.patient, digest, result.status, flag, when.isoformat()],
        )

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM last_result GROUP BY status").fetchall()
        return {status: count for status, count in rows} | {
            "population": self._db.execute("SELECT COUNT(*) FROM population").fetchone()[0]
        }
