"""Faults between the adapter and the FHIR server (tests/support/fault_proxy.py in between).

For each fault, publish, screen, the worker and the ingestion service either complete correctly after
bounded retries, or fail with one clear line and a non-zero exit; none writes a partial or duplicate
result. Retry waits are kept small (Retry-After: 1, --timeout 2 where hangs are involved).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.fhir.client import FhirClient
from adapter.fhir.transaction import transaction_bundle
from adapter.sources.server import PAGE_SIZE, population_tokens
from mappings.criteria import load_criteria
from mappings.resources import build_study_resources
from mappings.study import load_study, study_dir
from tests.support.fault_proxy import FaultProxy, Hang, Reset, Respond, Truncate
from tests.support.patients import candidate_on_server, low_platelets
from tests.support.server import engine_bundle, flags, load, on_server, server_subjects, study_resources
from tests.support.service import Service

AS_OF = "2026-11-23"
TRANSACTION = '"type":"transaction"'  # the client sends compact JSON
BATCH = '"type":"batch"'
ERROR_PREFIX = "trial-adapter: error: "


@pytest.fixture
def proxy(hapi_url) -> Iterator[FaultProxy]:
    with FaultProxy(hapi_url) as running:
        yield running


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, the one error line or "")."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # Everything on stderr but the final error line is a JSON log line.
    plain = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert len(plain) <= 1, plain
    if code != 0:
        assert plain and plain[0].startswith(ERROR_PREFIX), err
    return code, plain[0] if plain else ""


# --- publish --------------------------------------------------------------------------------------------


def study_searches() -> list[str]:
    folder = study_dir(None)
    built = build_study_resources(load_study(folder / "study.json"), load_criteria(folder / "criteria.yaml"))
    return [entry["request"]["url"] for entry in transaction_bundle(built.published())["entry"]]


def matches_per_search(hapi_url: str) -> dict[str, int]:
    async def count(client: FhirClient) -> dict[str, int]:
        out = {}
        for search in study_searches():
            found = await client.get_json(search)
            out[search] = sum(1 for e in found.get("entry") or () if e["search"]["mode"] == "match")
        return out

    return on_server(hapi_url, count)


@pytest.fixture
def drifted_sponsor(hapi_url, capsys) -> Iterator[dict]:
    """The study is published, then someone edits its Organization on the server: publishing must put it
    back, which takes one transaction (the server is shared, so it cannot be made empty)."""
    assert run(["publish", "--fhir-url", hapi_url], capsys)[0] == 0

    async def drift(client: FhirClient) -> dict:
        sponsor = (await study_resources(client))["Organization"]
        reply = await client.request(
            "PUT", f"Organization/{sponsor['id']}", json_body={**sponsor, "name": "edited by hand"}
        )
        return reply.json()

    yield on_server(hapi_url, drift)
    assert run(["publish", "--fhir-url", hapi_url], capsys)[0] == 0  # leave the study as published


def sponsor(hapi_url: str) -> dict:
    return on_server(hapi_url, study_resources)["Organization"]


@pytest.mark.parametrize(
    ("fault", "times", "reached_hapi"),
    [
        (Respond(429, retry_after=1), 1, 1),
        (Respond(503), 2, 1),
        (Reset(), 1, 2),  # HAPI committed it, the answer was lost: the transaction is sent again
        (Hang(forward=True), 1, 2),  # the same, but the answer never comes (--timeout 2)
    ],
    ids=["429-retry-after", "503-burst", "reset-mid-response", "hang-after-commit"],
)
def test_publish_completes_after_retries_without_duplicates(
    hapi_url, proxy, capsys, drifted_sponsor, fault, times, reached_hapi
):
    rule = proxy.add(fault, method="POST", path="", body=TRANSACTION, times=times)
    code, error = run(["publish", "--fhir-url", proxy.url, "--timeout", "2"], capsys)
    assert (code, error) == (0, "")
    assert rule.applied == times
    assert proxy.count(method="POST", path="", body=TRANSACTION) == times + 1
    assert proxy.count(method="POST", path="", body=TRANSACTION, forwarded=True) == reached_hapi, (
        proxy.summary()
    )
    assert sponsor(hapi_url)["name"] != "edited by hand"
    assert set(matches_per_search(hapi_url).values()) == {1}  # nothing duplicated


def test_publish_against_a_persistent_503_fails_in_one_line_and_writes_nothing(
    hapi_url, proxy, capsys, drifted_sponsor
):
    proxy.add(Respond(503), method="POST", path="", body=TRANSACTION, times=None)
    code, error = run(["publish", "--fhir-url", proxy.url], capsys)
    assert code == 1
    assert error == f"{ERROR_PREFIX}HTTP 503 from POST /fhir: error: injected by the fault proxy"
    assert proxy.count(method="POST", path="", body=TRANSACTION) == 5  # bounded: RetryPolicy.attempts
    assert proxy.count(method="POST", path="", forwarded=True) == 0
    after = sponsor(hapi_url)
    assert after["meta"]["versionId"] == drifted_sponsor["meta"]["versionId"]  # nothing written


# --- screen ---------------------------------------------------------------------------------------------


def screen(fhir_url: str, output: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    return run(
        ["screen", "--fhir-url", fhir_url, "--as-of", AS_OF, "--output", str(output), "--quiet", *extra],
        capsys,
    )


@pytest.fixture(scope="class")
def paged_patient(hapi_url: str) -> Iterator[str]:
    """A candidate with more Conditions than one page holds, so its batch search is paged (HAPI's
    ``_getpages``). Class-scoped: retired again once TestScreen is done."""
    pid = f"flt-paged-{uuid.uuid4().hex[:8]}"
    filler = [
        {
            "resourceType": "Condition",
            "id": f"{pid}-f{n}",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://example.org/fault-test-filler", "code": f"f{n}"}]},
        }
        for n in range(PAGE_SIZE + 1)
    ]
    load(hapi_url, candidate_on_server(pid, date.today()) + filler)
    yield pid

    # Out of the ALL population again, so later full passes do not fetch its 1000 Conditions.
    async def retire(client: FhirClient) -> None:
        codes = ",".join(population_tokens(load_criteria(study_dir(None) / "criteria.yaml")))
        found = await client.search_resources("Condition", {"subject": f"Patient/{pid}", "code": codes})
        for condition in found:
            condition["code"] = {"text": "retired by the fault tests"}
            await client.request("PUT", f"Condition/{condition['id']}", json_body=condition)

    on_server(hapi_url, retire)


@pytest.fixture(scope="class")
def expected(hapi_url: str, paged_patient: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("screen") / "direct.json"
    argv = ["screen", "--fhir-url", hapi_url, "--as-of", AS_OF, "--output", str(output), "--quiet"]
    assert main(argv) == 0
    report = json.loads(output.read_text())
    assert f"Patient/{paged_patient}" in {p["patient"] for p in report["patients"]}
    return report


class TestScreen:
    """Screening through the proxy; the fault-free report (``expected``) is taken once for the class."""

    @pytest.mark.parametrize(
        ("fault", "where", "times"),
        [
            (Respond(503), "batch", 2),
            (Respond(502), "page", 2),
            (Respond(429, retry_after=1), "page", 1),
            (Reset(), "batch", 1),
            (Reset(), "page", 1),
            (Hang(), "batch", 1),
        ],
        ids=["503-burst-batch", "502-burst-page", "429-page", "reset-batch", "reset-page", "hang-batch"],
    )
    def test_report_is_the_fault_free_report(self, proxy, expected, tmp_path, capsys, fault, where, times):
        if where == "batch":
            rule = proxy.add(fault, method="POST", path="", body=BATCH, times=times)
        else:
            rule = proxy.add(fault, method="GET", path="", query="_getpages", times=times)
        got = tmp_path / "proxied.json"
        assert screen(proxy.url, got, capsys, "--timeout", "2") == (0, "")
        assert rule.applied == times
        assert proxy.count(method="GET", query="_getpages", forwarded=True) >= 1  # paging went through us
        assert json.loads(got.read_text()) == expected

    def test_a_cut_paged_search_fails_in_one_line_and_writes_no_report(
        self, proxy, expected, tmp_path, capsys
    ):
        proxy.cut_paging(Respond(500))
        output = tmp_path / "report.json"
        code, line = screen(proxy.url, output, capsys, "--timeout", "2")
        assert code == 1
        assert line == f"{ERROR_PREFIX}HTTP 500 from GET /fhir: error: injected by the fault proxy"
        assert proxy.count(method="GET", query="_getpages") == 5  # bounded retries
        assert not output.exists() and list(tmp_path.iterdir()) == []  # no partial report, no temp file

    def test_a_truncated_answer_fails_in_one_line(self, proxy, expected, tmp_path, capsys):
        proxy.add(Truncate(), method="POST", path="", body=BATCH, times=1)
        output = tmp_path / "report.json"
        code, line = screen(proxy.url, output, capsys)
        assert code == 1
        assert line.startswith(f"{ERROR_PREFIX}invalid JSON in the HTTP 200 answer to POST /fhir")
        assert not output.exists()


# --- worker ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(hapi_url: str) -> None:
    assert main(["publish", "--fhir-url", hapi_url]) == 0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def flag_marker(pid: str) -> str:
    """A substring of this patient's flag transactions only (batch searches hold no JSON references)."""
    return f'"reference":"Patient/{pid}"'


@pytest.mark.parametrize(
    ("fault", "times", "reached_hapi"),
    [
        (Respond(429, retry_after=1), 1, 1),
        (Respond(503), 3, 1),
        (Reset(), 1, 2),  # written, answer lost, written again: conditional creates find the first
        (Hang(forward=True), 1, 2),
    ],
    ids=["429-retry-after", "503-burst", "reset-after-commit", "hang-after-commit"],
)
def test_worker_flags_each_candidate_exactly_once_despite_faults_on_the_flag_write(
    hapi_url, proxy, published, tmp_path, capsys, fault, times, reached_hapi
):
    pid = new_id("flt-wk")
    load(hapi_url, candidate_on_server(pid, date.today()))
    rule = proxy.add(fault, method="POST", path="", body=flag_marker(pid), times=times)

    state = tmp_path / "state.sqlite"
    assert run(
        ["worker", "--fhir-url", proxy.url, "--once", "--state", str(state), "--timeout", "2"], capsys
    ) == (
        0,
        "",
    )
    assert rule.applied == times
    assert proxy.count(method="POST", body=flag_marker(pid), forwarded=True) == reached_hapi, proxy.summary()
    [subject], [task] = flags(hapi_url, pid)
    assert subject["status"] == "candidate" and task["status"] == "requested"
    assert task["focus"]["reference"] == f"ResearchSubject/{subject['id']}"


def test_worker_with_a_persistent_503_on_the_flag_write_exits_1_in_one_line(
    hapi_url, proxy, published, tmp_path, capsys
):
    pid = new_id("flt-wk503")
    load(hapi_url, candidate_on_server(pid, date.today()))
    proxy.add(Respond(503, retry_after=0), method="POST", path="", body=flag_marker(pid), times=None)
    state = tmp_path / "state.sqlite"
    code, line = run(["worker", "--fhir-url", proxy.url, "--once", "--state", str(state)], capsys)
    assert (code, line) == (1, f"{ERROR_PREFIX}HTTP 503 from POST /fhir: error: injected by the fault proxy")
    assert flags(hapi_url, pid) == ([], [])
    # The next pass, with the server back, flags the patient once.
    proxy.clear()
    assert run(["worker", "--fhir-url", proxy.url, "--once", "--state", str(state)], capsys) == (0, "")
    subjects, tasks = flags(hapi_url, pid)
    assert len(subjects) == 1 and len(tasks) == 1


def test_worker_reset_after_a_committed_ineligible_update_is_not_an_error(
    hapi_url, proxy, published, tmp_path, capsys
):
    pid = new_id("flt-inel")
    load(hapi_url, candidate_on_server(pid, date.today()))
    state = tmp_path / "state.sqlite"
    assert run(["worker", "--fhir-url", hapi_url, "--once", "--state", str(state)], capsys) == (0, "")
    load(hapi_url, [low_platelets(pid, date.today())])

    rule = proxy.add(Reset(), method="POST", path="", body=flag_marker(pid), times=1)
    code, line = run(["worker", "--fhir-url", proxy.url, "--once", "--state", str(state)], capsys)
    assert rule.applied == 1
    [subject], [task] = flags(hapi_url, pid)
    assert subject["status"] == "ineligible" and task["status"] == "cancelled"  # the first write landed
    assert (code, line) == (0, "")  # ...yet the resend's 409 fails the pass


# --- ingestion service ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_behind_proxy(hapi_url, tmp_path_factory) -> Iterator[tuple[Service, FaultProxy]]:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    with FaultProxy(hapi_url) as proxy:
        running = Service(proxy.url, tmp_path_factory.mktemp("svc-faults") / "inbox.sqlite")
        try:
            yield running, proxy
        finally:
            assert running.stop() == 0


@pytest.fixture
def ingest(service_behind_proxy) -> Iterator[tuple[Service, FaultProxy]]:
    service, proxy = service_behind_proxy
    proxy.clear()
    yield service, proxy
    proxy.clear()


def push(service: Service, mrn: str) -> str:
    reply = service.post("/fhir", engine_bundle(mrn, date.today()))
    assert reply.status_code == 202
    return reply.headers["Location"]


@pytest.mark.parametrize(
    ("fault", "times", "attempts", "reached_hapi"),
    [
        # More 503s than one attempt's retries: the payload itself is retried later.
        (Respond(503, retry_after=1), 6, 2, 1),
        (Respond(429, retry_after=1), 1, 1, 1),
        # Forwarded, answer lost: the next attempt finds the transaction's Provenance and sends nothing.
        (Reset(), 1, 2, 1),
        (Truncate(), 1, 2, 1),  # a broken 200 body: retried as a payload, not dead-lettered as a bug
    ],
    ids=["503-burst", "429", "reset-after-commit", "truncated-answer"],
)
def test_ingested_payload_is_done_exactly_once_despite_faults_on_the_forward(
    ingest, hapi_url, fault, times, attempts, reached_hapi
):
    service, proxy = ingest
    mrn = uuid.uuid4().hex[:12]
    rule = proxy.add(fault, method="POST", path="", body=mrn, times=times)
    done = service.wait_done(push(service, mrn), timeout=60)
    assert done["state"] == "done", done
    assert done["attempts"] == attempts
    assert rule.applied == times
    assert proxy.count(method="POST", body=mrn, forwarded=True) == reached_hapi, proxy.summary()
    patients, subjects = server_subjects(hapi_url, mrn)
    assert len(patients) == 1 and len(subjects) == 1
    assert patients[0]["meta"]["versionId"] == "1"  # a resend was a no-op, not a new version


def test_ingested_payload_survives_a_429_on_its_flag_write(ingest, hapi_url):
    service, proxy = ingest
    mrn = uuid.uuid4().hex[:12]
    rule = proxy.add(Respond(429, retry_after=1), method="POST", body='"resourceType":"ResearchSubject"')
    done = service.wait_done(push(service, mrn), timeout=60)
    assert done["state"] == "done" and done["attempts"] == 1, done
    assert rule.applied == 1
    patients, subjects = server_subjects(hapi_url, mrn)
    assert len(patients) == 1 and len(subjects) == 1


def test_ingested_payload_refused_for_good_is_dead_lettered_and_nothing_is_written(ingest, hapi_url):
    service, proxy = ingest
    mrn = uuid.uuid4().hex[:12]
    proxy.add(
        Respond(422, diagnostics="Patient.identifier: not allowed here"), method="POST", body=mrn, times=None
    )
    dead = service.wait_done(push(service, mrn), timeout=30)
    assert dead["state"] == "dead" and dead["attempts"] == 1, dead
    assert dead["error"].startswith("HTTP 422 from POST /fhir")
    assert "Patient.identifier" not in dead["error"]  # the server's diagnostics can quote patient data
    assert proxy.count(method="POST", body=mrn) == 1  # a 4xx is not retried
    assert proxy.count(method="POST", body=mrn, forwarded=True) == 0
    assert server_subjects(hapi_url, mrn) == ([], [])


def test_ingestion_with_a_hung_forward_retries_after_the_timeout_given(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    with FaultProxy(hapi_url) as proxy:
        service = Service(proxy.url, tmp_path / "inbox.sqlite", "--timeout", "2")
        try:
            mrn = uuid.uuid4().hex[:12]
            proxy.add(Hang(), method="POST", body=mrn, times=1)
            started = time.monotonic()
            location = push(service, mrn)
            # a 2.5 s timeout, as long again before looking for the transaction's Provenance, a resend
            deadline = started + 20
            while service.status(location)["state"] not in ("done", "dead"):
                assert time.monotonic() < deadline, "still waiting on the hung request"
                time.sleep(0.2)
            assert service.status(location)["state"] == "done"
        finally:
            service.process.send_signal(signal.SIGKILL)  # it may be stuck on the hung request
            service.process.wait(timeout=30)
