"""Crashes at chosen points (TRIAL_ADAPTER_CRASH_AT, see adapter/fault_points.py) lose and duplicate nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date

import httpx
import pytest

from adapter.cli import main
from adapter.fault_points import CRASH_EXIT_CODE
from tests.support.patients import candidate_on_server
from tests.support.server import engine_bundle, flags, load, server_subjects, worker_once
from tests.support.service import PUSH_KEY, Service


@pytest.mark.parametrize("point", ["worker-before-flag", "worker-after-flag-write"])
def test_worker_crash_then_restart_flags_every_candidate_exactly_once(hapi_url, tmp_path, point):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    patients = [f"crash-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    load(hapi_url, [r for pid in patients for r in candidate_on_server(pid, date.today())])
    state = tmp_path / "state.sqlite"
    crashed = subprocess.run(
        [sys.executable, "-m", "adapter", "worker", "--fhir-url", hapi_url, "--once", "--state", str(state)],
        env={**os.environ, "TRIAL_ADAPTER_CRASH_AT": point},
        capture_output=True,
        timeout=300,
    )
    assert crashed.returncode == CRASH_EXIT_CODE

    worker_once(hapi_url, state)
    for pid in patients:
        subjects, tasks = flags(hapi_url, pid)
        assert len(subjects) == 1 and len(tasks) == 1, pid
        assert subjects[0]["meta"]["versionId"] == "1"  # the restart did not rewrite it


@pytest.mark.parametrize("point", ["service-after-forward", "service-after-flag"])
def test_service_crash_during_processing_then_restart_processes_once(hapi_url, tmp_path, point, monkeypatch):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrn = uuid.uuid4().hex[:12]
    monkeypatch.setenv("TRIAL_ADAPTER_CRASH_AT", point)
    crashing = Service(hapi_url, inbox)
    reply = crashing.post("/fhir", engine_bundle(mrn, date.today()))
    assert reply.status_code == 202  # durable before the answer, so the crash after it loses nothing
    assert crashing.process.wait(timeout=120) == CRASH_EXIT_CODE
    monkeypatch.delenv("TRIAL_ADAPTER_CRASH_AT")

    restarted = Service(hapi_url, inbox)
    try:
        done = restarted.wait_done(reply.headers["Location"])
        assert done["state"] == "done" and done["attempts"] == 2
        patients, subjects = server_subjects(hapi_url, mrn)
        assert len(patients) == 1 and len(subjects) == 1
        assert patients[0]["meta"]["versionId"] == "1"  # forwarded again as a no-op, not a new version
    finally:
        assert restarted.stop() == 0


def test_service_crash_after_accept_before_answer_then_engine_retry_is_processed_once(
    hapi_url, tmp_path, monkeypatch
):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrn = uuid.uuid4().hex[:12]
    key = uuid.uuid4().hex
    monkeypatch.setenv("TRIAL_ADAPTER_CRASH_AT", "service-after-accept")
    crashing = Service(hapi_url, inbox)
    with pytest.raises(httpx.HTTPError):  # the engine sees the connection drop, no answer
        crashing.post("/fhir", engine_bundle(mrn, date.today()), **{"Idempotency-Key": key})
    assert crashing.process.wait(timeout=60) == CRASH_EXIT_CODE
    monkeypatch.delenv("TRIAL_ADAPTER_CRASH_AT")

    restarted = Service(hapi_url, inbox)
    try:
        retry = restarted.post("/fhir", engine_bundle(mrn, date.today()), **{"Idempotency-Key": key})
        assert retry.status_code == 200  # already accepted before the crash: not stored twice
        assert restarted.wait_done(retry.headers["Location"])["state"] == "done"
        patients, subjects = server_subjects(hapi_url, mrn)
        assert len(patients) == 1 and len(subjects) == 1
        status = httpx.get(
            f"{restarted.url}/status?limit=1000", headers={"Authorization": f"Bearer {PUSH_KEY}"}
        )
        assert sum(1 for i in status.json()["items"] if i["state"] == "done") == 1
    finally:
        assert restarted.stop() == 0
