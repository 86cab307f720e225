"""The worker's durable state in an embedded SQLite file.

- the checkpoint: the time up to which every change has been screened and flagged;
- the population: patients with an ALL record (so polling asks only about them);
- the last result per study and patient (a digest), so an unchanged result causes no write;
- the last two results per study and patient in full (``result_history``), so the study team can see
  what changed (``trial-adapter report --state FILE``, ``GET /report``), and who reviewed a patient when
  a person moved the ResearchSubject on.

Results are keyed by (study, patient): one worker serves several studies. Schema version 2 (SQLite
``user_version``); a version-1 file (results keyed by patient alone, written when a worker served one
study) is migrated in place, in one transaction, its rows attributed to the study the worker is started
with first (``legacy_study``): a migration rather than a new file, so the what-changed history and the
digests that spare unchanged writes survive the upgrade.

Every write is a committed transaction with synchronous=FULL: once a method returns, a kill -9
cannot lose it. The flag is written to the server before the digest is saved here, so a crash in
between only repeats an idempotent flag.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from adapter.errors import ConfigError
from adapter.screening.results import PatientResult

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS population (patient TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS last_result (
    study TEXT NOT NULL,
    patient TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    flag TEXT,
    screened_at TEXT NOT NULL,
    PRIMARY KEY (study, patient)
);
CREATE TABLE IF NOT EXISTS result_history (
    study TEXT NOT NULL,
    patient TEXT NOT NULL,
    current TEXT NOT NULL,
    previous TEXT,
    changed_at TEXT NOT NULL,
    reviewed TEXT,
    PRIMARY KEY (study, patient)
);
"""
# Version 1 -> 2: the results gain the study they are for (the columns a version-1 file has).
_MIGRATE_1 = """
ALTER TABLE last_result RENAME TO last_result_v1;
ALTER TABLE result_history RENAME TO result_history_v1;
{schema}
INSERT INTO last_result (study, patient, digest, status, flag, screened_at)
    SELECT :study, patient, digest, status, flag, screened_at FROM last_result_v1;
INSERT INTO result_history (study, patient, current, previous, changed_at, reviewed)
    SELECT :study, patient, current, previous, changed_at, reviewed FROM result_history_v1;
DROP TABLE last_result_v1;
DROP TABLE result_history_v1;
"""


class StateVersionError(ConfigError):
    """The state file needs a migration the caller cannot do (no single study to attribute old rows to)."""


def result_digest(result: PatientResult, as_of: str) -> str:
    """What a flag depends on: the status, each criterion's result (and the day it holds for) and what
    would settle each unknown (the Task's "collect next" list)."""
    payload = json.dumps(
        [
            as_of,
            result.status,
            [(c.id, c.result, c.resolve.text if c.resolve else None) for c in result.criteria],
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class HistoryRow:
    study: str
    patient: str
    current: PatientResult
    previous: PatientResult | None
    changed_at: datetime
    reviewed: dict[str, Any] | None


def _result(text: str | None) -> PatientResult | None:
    return PatientResult.model_validate_json(text) if text else None


class WorkerState:
    def __init__(self, path: Path, legacy_study: str | None = None) -> None:
        """``legacy_study``: the study a version-1 file's results are attributed to when migrating."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._upgrade(legacy_study)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def _upgrade(self, legacy_study: str | None) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # one writer migrates; the others see version 2
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            old = self._columns("last_result")
            if old and "study" not in old:
                if legacy_study is None:
                    raise StateVersionError(
                        "the worker state file is from an older, single-study version: start the worker on it "
                        "once with that one --study to migrate it"
                    )
                for statement in _MIGRATE_1.format(schema=_SCHEMA).split(";"):
                    if statement.strip():
                        self._db.execute(statement, {"study": legacy_study} if ":study" in statement else {})
            else:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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

    def last_digest(self, study: str, patient: str) -> str | None:
        row = self._db.execute(
            "SELECT digest FROM last_result WHERE study = ? AND patient = ?", (study, patient)
        ).fetchone()
        return row[0] if row else None

    def record(
        self,
        study: str,
        result: PatientResult,
        digest: str,
        flag: str,
        when: datetime,
        reviewed: dict[str, Any] | None = None,
    ) -> None:
        """Save a new result; the one it replaces becomes ``previous`` (one transaction)."""
        current = result.model_dump_json(by_alias=True)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO last_result (study, patient, digest, status, flag, screened_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [study, result.patient, digest, result.status, flag, when.isoformat()],
            )
            row = self._db.execute(
                "SELECT current FROM result_history WHERE study = ? AND patient = ?", (study, result.patient)
            ).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO result_history "
                "(study, patient, current, previous, changed_at, reviewed) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    study,
                    result.patient,
                    current,
                    row[0] if row else None,
                    when.isoformat(),
                    json.dumps(reviewed) if reviewed else None,
                ],
            )

    def history(self, since: datetime | None = None) -> list[HistoryRow]:
        """Patients whose result changed at or after ``since`` (all when None), by study and patient."""
        rows = self._db.execute(
            "SELECT study, patient, current, previous, changed_at, reviewed FROM result_history "
            "ORDER BY study, patient"
        ).fetchall()
        out = []
        for study, patient, current, previous, changed_at, reviewed in rows:
            when = datetime.fromisoformat(changed_at)
            if since is not None and when < since:
                continue
            parsed = _result(current)
            if parsed is None:
                continue
            out.append(
                HistoryRow(
                    study,
                    patient,
                    parsed,
                    _result(previous),
                    when,
                    json.loads(reviewed) if reviewed else None,
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        """Results by status over every study (a patient counted once per study), and the population."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM last_result GROUP BY status").fetchall()
        return {status: count for status, count in rows} | {
            "population": self._db.execute("SELECT COUNT(*) FROM population").fetchone()[0]
        }

    def counts_by_study(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for study, status, count in self._db.execute(
            "SELECT study, status, COUNT(*) FROM last_result GROUP BY study, status ORDER BY study"
        ):
            out.setdefault(study, {})[status] = count
        return out
