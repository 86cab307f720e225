"""Test session setup: a real HAPI FHIR R4 server for the integration tests.

The server is built from docker/hapi (Maven) and started on a free port once per session, and always
stopped. Set HAPI_BASE_URL to run the integration tests against a server you started yourself. If the
server cannot start, every integration test errors loudly: nothing is skipped.

Log capture: every log record of the session, in-process (root logger, DEBUG and up) and from the
subprocesses the tests start (they inherit TRIAL_ADAPTER_LOG_FILE), is appended to one JSON-lines file,
which tests/zz_logs/test_no_phi_in_logs.py (collected last) checks for patient data.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_hapi_facts: dict[str, str] = {}
_session_log: dict[str, logging.Handler | str] = {}


def pytest_configure(config: pytest.Config) -> None:
    from adapter import logs

    path = os.environ.get(logs.LOG_FILE_ENV)
    if not path:  # a fresh file per session; set early so every subprocess inherits it
        fd, path = tempfile.mkstemp(prefix="trial-adapter-test-logs-", suffix=".jsonl")
        os.close(fd)
        os.environ[logs.LOG_FILE_ENV] = path
    _session_log["path"] = path
    _attach_session_log()


def _attach_session_log() -> None:
    """The session file on the root logger at DEBUG, unless adapter.logs.configure() already put it there."""
    from adapter import logs

    path = str(_session_log["path"])
    root = logging.getLogger()
    if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in root.handlers):
        handler = logs.file_handler(path)
        _session_log["handler"] = handler
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logs.quiet_noisy_loggers()  # as in production: httpx and httpcore log full URLs


@pytest.fixture(autouse=True)
def _session_log_attached() -> None:
    _attach_session_log()  # a test may have reconfigured logging (the CLI does)


@pytest.fixture(scope="session")
def session_log_file() -> Path:
    return Path(str(_session_log["path"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def hapi_url() -> Iterator[str]:
    external = os.environ.get("HAPI_BASE_URL")
    if external:
        _hapi_facts["server"] = f"external {external}"
        yield external.rstrip("/")
        return
    from tests.support.hapi import build_jar, start_hapi

    jar = build_jar(ROOT)
    started = time.monotonic()
    server = start_hapi(jar)
    _hapi_facts["server"] = f"HAPI FHIR at {server.base_url}, ready in {time.monotonic() - started:.1f} s"
    try:
        yield server.base_url
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _session_log.get("path"):
        terminalreporter.write_line(f"session logs (checked for patient data): {_session_log['path']}")
    if not _hapi_facts:
        return
    terminalreporter.section("integration tests against HAPI FHIR")
    terminalreporter.write_line(f"server: {_hapi_facts['server']}")
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "tests/integration/" in nodeid and getattr(report, "when", "call") == "call":
                terminalreporter.write_line(f"{outcome.upper():7} {nodeid}")
