"""Test session setup: a real HAPI FHIR R4 server for the integration tests.

The server is built from docker/hapi (Maven) and started on a free port once per session, and always
stopped. Set HAPI_BASE_URL to run the integration tests against a server you started yourself. If the
server cannot start, every integration test errors loudly: nothing is skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_hapi_facts: dict[str, str] = {}


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
    if not _hapi_facts:
        return
    terminalreporter.section("integration tests against HAPI FHIR")
    terminalreporter.write_line(f"server: {_hapi_facts['server']}")
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "tests/integration/" in nodeid and getattr(report, "when", "call") == "call":
                terminalreporter.write_line(f"{outcome.upper():7} {nodeid}")
