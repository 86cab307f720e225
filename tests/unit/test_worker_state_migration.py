"""The worker state keyed by (study, patient): a version-1 file (keyed by patient) is migrated in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.worker.state import SCHEMA_VERSION, StateVersionError, WorkerState

V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE population (patient TEXT PRIMARY KEY);
CREATE TABLE last_result (patient TEXT PRIMARY KEY, digest TEXT NOT NULL, status TEXT NOT NULL,
    flag TEXT, screened_at TEXT NOT NULL);
CREATE TABLE result_history (patient TEXT PRIMARY KEY, current TEXT NOT NULL, previous TEXT,
    changed_at TEXT NOT NULL, reviewed TEXT);
INSERT INTO meta VALUES ('checkpoint', '2026-11-23T08:00:00+00:00');
INSERT INTO population VALUES ('p1');
INSERT INTO last_result VALUES ('Patient/p1', 'abc', 'candidate', 'flagged', '2026-11-23T08:00:00+00:00');
INSERT INTO result_history VALUES ('Patient/p1',
    '{"patient": "Patient/p1", "status": "candidate", "criteria": []}', NULL,
    '2026-11-23T08:00:00+00:00', NULL);
"""


def v1_file(path):
    db = sqlite3.connect(path)
    db.executescript(V1)
    db.close()
    return path


def test_a_version_1_file_is_migrated_to_the_first_study(tmp_path):
    path = v1_file(tmp_path / "old.sqlite")
    state = WorkerState(path, legacy_study="NCT06849401")
    assert state.last_digest("NCT06849401", "Patient/p1") == "abc"  # unchanged results cause no write
    assert state.last_digest("NCT00000000", "Patient/p1") is None  # another study screens afresh
    assert state.checkpoint() == datetime(2026, 11, 23, 8, tzinfo=UTC) and state.population() == ["p1"]
    [row] = state.history()
    assert (row.study, row.patient, row.current.status) == ("NCT06849401", "Patient/p1", "candidate")
    assert state.counts_by_study() == {"NCT06849401": {"candidate": 1}}
    state.close()
    again = WorkerState(path)  # now version 2: no study needed to open it
    assert again._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert again.last_digest("NCT06849401", "Patient/p1") == "abc"
    again.close()


def test_an_old_file_is_not_guessed_at_without_a_study(tmp_path):
    path = v1_file(tmp_path / "old.sqlite")
    with pytest.raises(StateVersionError):
        WorkerState(path)
    still = sqlite3.connect(path)  # nothing changed: the migration is one transaction
    assert "study" not in {r[1] for r in still.execute("PRAGMA table_info(last_result)")}
    still.close()


def test_results_are_kept_per_study(tmp_path):
    state = WorkerState(tmp_path / "new.sqlite")
    from adapter.screening.results import PatientResult

    result = PatientResult.model_validate({"patient": "Patient/p1", "status": "candidate", "criteria": []})
    when = datetime(2026, 11, 23, tzinfo=UTC)
    state.record("A", result, "d1", "flagged", when)
    state.record("B", result, "d2", "not-flagged", when)
    assert (state.last_digest("A", "Patient/p1"), state.last_digest("B", "Patient/p1")) == ("d1", "d2")
    assert [(r.study, r.patient) for r in state.history()] == [("A", "Patient/p1"), ("B", "Patient/p1")]
    state.close()


def test_an_old_file_is_not_given_to_one_of_several_studies(tmp_path, capsys):
    """Several --study: whose the old single-study rows are is not guessed (one line, file unchanged)."""
    from adapter.cli import main

    path = v1_file(tmp_path / "old.sqlite")
    fixture = str(Path(__file__).resolve().parents[1] / "fixtures" / "studies" / "cd19-ball-test")
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--state", str(path), "--study", "NCT06849401", "--study", fixture])
    code, err = stopped.value.code, capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "single-study" in err
    still = sqlite3.connect(path)
    assert "study" not in {r[1] for r in still.execute("PRAGMA table_info(last_result)")}
    still.close()
