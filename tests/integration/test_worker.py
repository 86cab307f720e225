"""The worker against HAPI: flags, idempotence, ineligibility, human changes, crashes, subscriptions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx

from adapter.cli import main
from adapter.fhir.client import FhirClient
from tests.support.patients import candidate_on_server, low_platelets
from tests.support.server import flags, load, new_id, on_server, worker_once

NCT = "NCT06849401"


def test_new_candidate_is_flagged_in_one_pass_and_reruns_change_nothing(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    pid = new_id("wk-new")
    load(hapi_url, candidate_on_server(pid, date.today()))

    worker_once(hapi_url, tmp_path / "state.sqlite")
    [subject], [task] = flags(hapi_url, pid)
    assert subject["status"] == "candidate"
    assert subject["individual"]["reference"] == f"Patient/{pid}"
    assert subject["study"]["reference"].startswith("ResearchStudy/")
    assert task["status"] == "requested" and task["focus"]["reference"] == f"ResearchSubject/{subject['id']}"
    assert "inclusion-12" in task["description"] and "inclusion-1," not in task["description"]
    versions = (subject["meta"]["versionId"], task["meta"]["versionId"])

    worker_once(hapi_url, tmp_path / "state.sqlite")  # incremental pass, nothing changed
    worker_once(hapi_url, tmp_path / "lost-state.sqlite")  # state lost: full pass, flags already right
    [subject2], [task2] = flags(hapi_url, pid)
    assert (subject2["id"], task2["id"]) == (subject["id"], task["id"])
    assert (subject2["meta"]["versionId"], task2["meta"]["versionId"]) == versions


def test_new_lab_makes_a_flagged_patient_ineligible_and_cancels_the_task(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    pid = new_id("wk-inel")
    load(hapi_url, candidate_on_server(pid, date.today()))
    state = tmp_path / "state.sqlite"
    worker_once(hapi_url, state)
    assert flags(hapi_url, pid)[0][0]["status"] == "candidate"

    load(hapi_url, [low_platelets(pid, date.today())])
    worker_once(hapi_url, state)
    [subject], [task] = flags(hapi_url, pid)
    assert subject["status"] == "ineligible"
    assert task["status"] == "cancelled" and "exclusion-13" in task["statusReason"]["text"]

    async def provenance(client: FhirClient) -> list[dict]:
        return await client.search_resources("Provenance", {"target": f"ResearchSubject/{subject['id']}"})

    activities = {p["activity"]["text"] for p in on_server(hapi_url, provenance)}
    assert activities == {"flagged", "made-ineligible"}


def test_a_research_subject_a_person_moved_on_is_left_alone(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    pid = new_id("wk-human")
    load(hapi_url, candidate_on_server(pid, date.today()))
    state = tmp_path / "state.sqlite"
    worker_once(hapi_url, state)
    [subject], _ = flags(hapi_url, pid)
    on_server(
        hapi_url,
        lambda c: c.request(
            "PUT", f"ResearchSubject/{subject['id']}", json_body={**subject, "status": "on-study"}
        ),
    )

    load(hapi_url, [low_platelets(pid, date.today())])
    worker_once(hapi_url, state)
    [after], [task] = flags(hapi_url, pid)
    assert after["status"] == "on-study"
    assert task["status"] == "requested"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_worker(hapi_url: str, state: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adapter", "worker", "--fhir-url", hapi_url, "--state", str(state), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_mid_pass_then_restart_gives_one_subject_and_task_per_candidate(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    prefix = new_id("wk-kill")
    patients = [f"{prefix}-{n}" for n in range(80)]
    load(hapi_url, [r for pid in patients for r in candidate_on_server(pid, date.today())])
    state = tmp_path / "state.sqlite"
    individuals = ",".join(f"Patient/{pid}" for pid in patients)

    async def flagged(client: FhirClient) -> int:
        return len(
            await client.search_resources("ResearchSubject", {"individual": individuals, "_count": "200"})
        )

    worker = _spawn_worker(hapi_url, state, "--once", "--batch-size", "5")
    deadline = time.monotonic() + 120
    try:
        while (count := on_server(hapi_url, flagged)) == 0:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "the worker flagged nobody"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert 0 < count < len(patients), "the kill did not land mid-pass"

    worker_once(hapi_url, state)  # restart with the state the killed process left
    assert on_server(hapi_url, flagged) == len(patients)
    for pid in patients:
        subjects, tasks = flags(hapi_url, pid)
        assert len(subjects) == 1 and len(tasks) == 1, pid


def test_subscription_notification_triggers_a_rescreen_and_sigterm_exits_cleanly(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    worker = _spawn_worker(
        hapi_url, tmp_path / "state.sqlite", "--subscribe", "--listen", listen, "--interval", "3600"
    )
    try:
        deadline = time.monotonic() + 180
        while True:  # first full pass done and subscriptions active
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "worker never finished its first pass"
            try:
                health = httpx.get(f"http://{listen}/healthz", timeout=2).json()
                if health["passes"] >= 1:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        async def active(client: FhirClient) -> bool:
            subs = await client.search_resources("Subscription", {"url": f"http://{listen}/notify"})
            return bool(subs) and all(s["status"] == "active" for s in subs)

        while not on_server(hapi_url, active):
            assert time.monotonic() < deadline, "subscriptions never became active"
            time.sleep(0.2)

        pid = new_id("wk-sub")
        changed_at = time.monotonic()
        load(hapi_url, candidate_on_server(pid, date.today()))
        while not flags(hapi_url, pid)[0]:
            # The poll interval is an hour: only the subscription can have triggered this.
            assert time.monotonic() - changed_at < 60, "no flag within 60 s of the change"
            time.sleep(0.2)
        print(f"subscription: change to flag in {time.monotonic() - changed_at:.1f} s")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)

        async def remove(client: FhirClient) -> None:
            for sub in await client.search_resources("Subscription", {"url": f"http://{listen}/notify"}):
                await client.request("DELETE", f"Subscription/{sub['id']}")

        on_server(hapi_url, remove)
    assert code == 0
    assert "Traceback" not in (worker.stderr.read() if worker.stderr else "")


def test_healthz_needs_no_auth_but_notifications_do(hapi_url, tmp_path):
    port = _free_port()
    listen = f"127.0.0.1:{port}"
    env = {**os.environ, "WORKER_NOTIFY_TOKEN": "test-secret"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapter",
            "worker",
            "--fhir-url",
            hapi_url,
            "--state",
            str(tmp_path / "s.sqlite"),
            "--listen",
            listen,
            "--interval",
            "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://{listen}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        denied = httpx.post(f"http://{listen}/notify/Observation/1", json={"resourceType": "Observation"})
        assert denied.status_code == 401 and denied.json()["resourceType"] == "OperationOutcome"
        allowed = httpx.post(
            f"http://{listen}/notify/Observation/1",
            json={"resourceType": "Observation", "subject": {"reference": "Patient/x"}},
            headers={"Authorization": "Bearer test-secret"},
        )
        assert allowed.status_code == 200
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
