"""No patient data in the logs of the whole test session.

tests/conftest.py appends every log record of the session to one JSON-lines file: in-process records
(root logger, DEBUG and up) and those of every service, worker and CLI subprocess the tests start
(they inherit TRIAL_ADAPTER_LOG_FILE). This module's folder name makes pytest collect it last, so it
reads what the rest of the run logged and fails on any patient name, birth date, MRN, observation value
with its unit, or dumped resource (tests/support/phi.py). The file must exist and hold records: an
empty file would prove nothing, so it fails rather than passing vacuously.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from adapter import logs
from tests.support.phi import hits, needles


def _lines(path: Path) -> list[str]:
    assert path.is_file(), (
        f"the session log file {path} is missing: was tests/conftest.py's capture bypassed?"
    )
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def test_the_session_log_file_is_the_one_subprocesses_write_to(session_log_file):
    assert os.environ.get(logs.LOG_FILE_ENV) == str(session_log_file)


def test_the_session_logs_hold_records_from_this_run(session_log_file):
    lines = [line for line in _lines(session_log_file) if line.strip()]
    assert lines, (
        f"{session_log_file} is empty: nothing was checked (run this with the rest of the suite, "
        "e.g. `pytest` from the repository root)"
    )
    parsed = 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        assert {"ts", "level", "logger", "event"} <= record.keys(), line[:300]
        parsed += 1
    assert parsed >= len(lines) * 0.99, "the session log is not JSON lines"


def test_no_patient_data_in_the_session_logs(session_log_file):
    assert len(needles()) > 100  # the fixtures really produced needles
    found = []
    for number, line in enumerate(_lines(session_log_file), start=1):
        for label, text in hits(line):
            found.append(f"line {number}: {label}: {text!r} in {line[:300]}")
    assert not found, f"patient data in {session_log_file}:\n" + "\n".join(found[:50])


def _test_secrets() -> list[str]:
    """The API keys and tokens the suite puts in environments, files and headers."""
    from tests.support import hostile, service
    from tests.support.hostile import SECRETS

    values = [service.PUSH_KEY, service.ADMIN_KEY]
    values += [hostile.HOSTILE_PUSH_KEY, hostile.HOSTILE_ADMIN_KEY, hostile.HOSTILE_WRONG_KEY]
    values += [part.split(":")[0] for value in SECRETS.values() for part in value.split(",")]
    return [*values, "file-token-0099887766554433"]


def test_no_secrets_in_the_session_logs(session_log_file):
    text = "\n".join(_lines(session_log_file))
    found = [secret for secret in _test_secrets() if secret in text]
    assert not found, f"secrets in {session_log_file}: {found}"


def test_the_needles_find_what_they_are_meant_to_find():
    labels = {label for label, _ in hits('{"event": "x", "name": "Liora Fenwick-Sample"}')}
    assert {"name Liora", "name Fenwick-Sample"} <= labels
    assert any(label.startswith("birth date") for label, _ in hits("born 2014-07-06"))
    assert any(
        label.startswith("MRN")
        for label, _ in hits("Patient?identifier=urn%3Aoid%3A1.2.36.146.595.217.0.1%7Cab12")
    )
    assert any(label.startswith("observation value") for label, _ in hits("CD7 93.5 % on 2026-11-18"))
    assert any(label.startswith("resource element") for label, _ in hits('{"birthDate": "x"}'))
    assert not hits(
        '{"event": "payload processed", "item": "5f0c", "patients": 2, "ts": "2026-01-01T10:00:00.123Z"}'
    )
