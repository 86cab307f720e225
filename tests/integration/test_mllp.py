"""HL7 v2 over MLLP against HAPI, sent with a client we did not write (python-hl7's ``mllp_send``):
ORU and ADT land as the right resources and the patient is screened and flagged; repeats and
corrections never duplicate; bad messages get AE/AR with an ERR; kill -9 mid-burst loses nothing."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from adapter.cli import main
from adapter.fault_points import CRASH_EXIT_CODE
from adapter.fhir.client import FhirClient
from tests.support.hl7v2 import MRN_OID, adt, message, msh, obr, obx, oru
from tests.support.server import engine_bundle, server_subjects
from tests.support.service import ADMIN_KEY, MRN, PUSH_KEY, ServiceProcess, free_port

MLLP_SEND = str(Path(sys.executable).parent / "mllp_send")
OBSERVATION_SYSTEM = "http://trial-adapter.org/fhir/v2/LAB1/observation"


def mllp_service(hapi_url: str, inbox: Path, *extra: str) -> tuple[ServiceProcess, int]:
    """The recommended set-up: the hospital is one source, authoritative for its MRN system (and its
    lab's result identifiers), and both of its feeds (ADT1, LAB1) and its HTTP engine push as it."""
    sources = inbox.parent / "sources.yaml"
    sources.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"name": "hospital", "keys": [PUSH_KEY], "identifier_systems": [MRN, OBSERVATION_SYSTEM]}
                ],
                "admin_keys": [ADMIN_KEY],
            }
        )
    )
    sources.chmod(0o600)
    facilities = inbox.parent / "facilities.txt"
    facilities.write_text("LAB1 hospital\nADT1 hospital\n")
    port = free_port()
    running = ServiceProcess(
        hapi_url,
        inbox,
        "--sources",
        str(sources),
        "--mllp-listen",
        f"127.0.0.1:{port}",
        "--mllp-facilities",
        str(facilities),
        *extra,
        keys=None,
        default_key=PUSH_KEY,
    )
    return running, port


@pytest.fixture(scope="module")
def service(hapi_url, tmp_path_factory) -> Iterator[tuple[ServiceProcess, int]]:
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    running, port = mllp_service(hapi_url, tmp_path_factory.mktemp("mllp") / "inbox.sqlite")
    yield running, port
    assert running.stop() == 0


def batch_file(messages: tuple[bytes, ...] | list[bytes]) -> str:
    """Messages as mllp_send reads them from a file (its stdin mode is broken on Python 3)."""
    handle = tempfile.NamedTemporaryFile(suffix=".hl7", delete=False)  # noqa: SIM115
    with handle:
        handle.write(b"".join(b"\x0b" + m + b"\x1c\x0d" for m in messages))
    return handle.name


def send(port: int, *messages: bytes, check: bool = True) -> list[str]:
    """Send with mllp_send (one connection, in order); the ACKs it printed, as text."""
    done = subprocess.run(
        [MLLP_SEND, "-p", str(port), "-f", batch_file(messages), "127.0.0.1"],
        capture_output=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return [a.decode() for a in re.findall(rb"\x0b(.*?)\x1c", done.stdout, re.S)]


def msa(ack: str) -> list[str]:
    return ack.split("\r")[1].split("|")


def wait_idle(running: ServiceProcess, timeout: float = 180) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while (counts := running.inbox()).get("accepted") or counts.get("processing"):
        assert time.monotonic() < deadline, counts
        time.sleep(0.2)
    return counts


def search(hapi_url: str, rtype: str, **params: str) -> list[dict]:
    async def go() -> list[dict]:
        async with FhirClient(hapi_url) as client:
            return await client.search_resources(rtype, params)

    return asyncio.run(go())


def now_v2(minutes_ago: int = 5) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y%m%d%H%M+0000")


def test_adt_and_oru_land_on_hapi_and_the_patient_is_screened_and_flagged(service, hapi_url):
    running, port = service
    mrn = uuid.uuid4().hex[:12]
    bundle = engine_bundle(mrn, date.today())  # the candidate's record, pushed over HTTP first
    birth = date.fromisoformat(bundle["entry"][0]["resource"]["birthDate"])
    reply = running.post("/fhir", bundle)
    assert running.wait_done(reply.headers["Location"])["result"]["patients"][0]["status"] == "candidate"

    [ack] = send(
        port, adt(f"A-{mrn}", mrn, "A08", "DG1|1||C91.02^ALL in relapse^I10C||20261001|F", birth=birth)
    )
    assert msa(ack)[:3] == ["MSA", "AA", f"A-{mrn}"]
    wait_idle(running)
    patients, subjects = server_subjects(hapi_url, mrn)
    assert len(patients) == 1 and patients[0]["birthDate"] == birth.isoformat()  # updated, not added
    assert subjects[0]["status"] == "candidate"
    patient_ref = f"Patient/{patients[0]['id']}"
    encounters = search(hapi_url, "Encounter", subject=patient_ref)
    assert len(encounters) == 1 and encounters[0]["class"]["code"] == "IMP"
    diagnoses = search(
        hapi_url, "Condition", subject=patient_ref, code="http://hl7.org/fhir/sid/icd-10-cm|C91.02"
    )
    assert len(diagnoses) == 1

    filler = f"F{mrn}"
    [ack] = send(port, oru(f"O-{mrn}", mrn, filler, obx(1, "5", when=now_v2(), flags="LL"), birth=birth))
    assert msa(ack)[1] == "AA"
    wait_idle(running)
    [observation] = search(hapi_url, "Observation", identifier=f"{OBSERVATION_SYSTEM}|{filler}-1")
    assert observation["subject"]["reference"] == patient_ref
    assert observation["code"]["coding"][0]["code"] == "777-3" and observation["valueQuantity"]["value"] == 5
    assert observation["interpretation"][0]["coding"][0]["code"] == "LL"
    assert len(search(hapi_url, "DiagnosticReport", subject=patient_ref)) == 1
    _, subjects = server_subjects(hapi_url, mrn)
    assert subjects[0]["status"] == "ineligible"  # platelets 5 x10^9/L today: exclusion-13 met


def test_a_lab_message_links_to_the_patient_and_never_changes_its_demographics(service, hapi_url):
    running, port = service
    mrn, run = uuid.uuid4().hex[:12], uuid.uuid4().hex[:6]
    birth = date(2015, 3, 9)
    [ack] = send(port, adt(f"D-{run}", mrn, "A28", birth=birth))  # ADT: the patient's full record
    assert msa(ack)[1] == "AA"
    wait_idle(running)
    [patient] = search(hapi_url, "Patient", identifier=f"{MRN}|{mrn}")
    minimal_pid = f"PID|1||{mrn}^^^HOSP&{MRN_OID}&ISO^MR"  # no name, no birth date, no sex
    minimal, other_birth = send(
        port,
        message(msh(f"L1-{run}"), minimal_pid, obr(f"L1{run}"), obx(1, "150", when=now_v2(20))),
        oru(f"L2-{run}", mrn, f"L2{run}", obx(1, "160", when=now_v2(10)), birth="20010101"),
    )
    assert msa(minimal)[1] == msa(other_birth)[1] == "AA"
    assert wait_idle(running).get("dead", 0) == 0
    [after] = search(hapi_url, "Patient", identifier=f"{MRN}|{mrn}")
    assert after["birthDate"] == "2015-03-09" and after["name"] == patient["name"]
    assert after["meta"]["versionId"] == patient["meta"]["versionId"]  # not written at all
    for filler in (f"L1{run}", f"L2{run}"):
        [found] = search(hapi_url, "Observation", identifier=f"{OBSERVATION_SYSTEM}|{filler}-1")
        assert found["subject"]["reference"] == f"Patient/{patient['id']}"

    # A result before any ADT: the patient is created from the lab's PID, and the ADT then completes it.
    late = uuid.uuid4().hex[:12]
    late_pid = f"PID|1||{late}^^^HOSP&{MRN_OID}&ISO^MR"
    [first] = send(port, message(msh(f"L3-{run}"), late_pid, obr(f"L3{run}"), obx(1, "140")))
    assert msa(first)[1] == "AA"
    wait_idle(running)
    [created] = search(hapi_url, "Patient", identifier=f"{MRN}|{late}")
    assert "birthDate" not in created
    [updated] = send(port, adt(f"D2-{run}", late, "A08", birth=birth))
    assert msa(updated)[1] == "AA"
    wait_idle(running)
    [completed] = search(hapi_url, "Patient", identifier=f"{MRN}|{late}")
    assert completed["id"] == created["id"] and completed["birthDate"] == "2015-03-09"


def test_resend_and_correction_update_instead_of_duplicating(service, hapi_url):
    running, port = service
    mrn, filler = uuid.uuid4().hex[:12], f"F{uuid.uuid4().hex[:8]}"
    original = oru(f"R-{mrn}", mrn, filler, obx(1, "150", when=now_v2(60)))
    first, again = send(port, original, original)
    assert first == again and msa(first)[1] == "AA"  # the repeat gets the original ACK back
    [corrected_ack] = send(port, oru(f"C-{mrn}", mrn, filler, obx(1, "140", status="C", when=now_v2(60))))
    assert msa(corrected_ack)[1] == "AA"
    wait_idle(running)
    [observation] = search(hapi_url, "Observation", identifier=f"{OBSERVATION_SYSTEM}|{filler}-1")
    assert observation["status"] == "corrected" and observation["valueQuantity"]["value"] == 140
    assert observation["meta"]["versionId"] == "2"  # the resend was stored once, the correction updated it
    assert len(search(hapi_url, "Patient", identifier=f"{MRN}|{mrn}")) == 1


def test_bad_messages_get_ae_or_ar_with_a_useful_err_and_nothing_is_stored(service, hapi_url):
    running, port = service
    before = sum(running.inbox().values())
    mrn, run = uuid.uuid4().hex[:12], uuid.uuid4().hex[:6]
    bad_value, unknown_sender, no_pid = send(
        port,
        oru(f"B1-{run}", mrn, "F1", obx(1, "twelve")),
        oru(f"B2-{run}", mrn, "F2", obx(1, "1"), facility="SOMEWHERE"),
        message(msh(f"B3-{run}"), obr("F3"), obx(1, "1")),
    )
    assert (
        msa(bad_value)[1] == "AE"
        and "ERR||OBX^1^5|102^Data type error^HL70357|E||||not a number" in bad_value
    )
    assert msa(unknown_sender)[1] == "AR" and "ERR||MSH^1^4|" in unknown_sender
    assert msa(no_pid)[1] == "AE" and "OBR before any PID segment" in no_pid
    assert (
        mrn not in bad_value + unknown_sender + no_pid and "twelve" not in bad_value
    )  # no patient data echoed
    assert sum(running.inbox().values()) == before


def test_kill_9_during_a_burst_loses_and_duplicates_nothing(hapi_url, tmp_path):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    run = uuid.uuid4().hex[:8]
    mrns = [f"{run}-{n}" for n in range(3)]
    burst = [
        oru(f"K-{run}-{n}", mrns[n % 3], f"K{run}{n}", obx(1, str(100 + n), when=now_v2(30)), facility="LAB1")
        for n in range(45)
    ]
    crashing, port = mllp_service(hapi_url, inbox)
    sender = subprocess.Popen(
        [MLLP_SEND, "-p", str(port), "-f", batch_file(burst), "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while sum(crashing.inbox().values()) < 8:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    crashing.process.send_signal(signal.SIGKILL)
    assert crashing.process.wait(timeout=30) == -signal.SIGKILL
    out, _ = sender.communicate(timeout=60)
    acked_before = {msa(a.decode())[2]: a for a in re.findall(rb"\x0b(.*?)\x1c", out, re.S)}
    assert all(msa(a.decode())[1] == "AA" for a in acked_before.values())
    assert len(acked_before) < len(burst)  # the kill came mid-burst

    restarted, port = mllp_service(hapi_url, inbox)
    try:
        acks = send(port, *burst)  # the engine sends again everything it has no ACK for (here: all)
        assert [msa(a)[1] for a in acks] == ["AA"] * len(burst)
        for ack in acks:  # a message acknowledged before the kill gets that very ACK again
            control = msa(ack)[2]
            if control in acked_before:
                assert ack == acked_before[control].decode()
        counts = wait_idle(restarted, timeout=400)
        assert counts == {"done": len(burst)}, counts  # stored once each, all processed
        for n in range(len(burst)):
            found = search(hapi_url, "Observation", identifier=f"{OBSERVATION_SYSTEM}|K{run}{n}-1")
            assert len(found) == 1 and found[0]["valueQuantity"]["value"] == 100 + n, n
        for mrn in mrns:
            patients, subjects = server_subjects(hapi_url, mrn)
            assert len(patients) == 1 and len(subjects) <= 1
    finally:
        assert restarted.stop() == 0


def test_crash_after_commit_before_the_ack_then_resend_is_processed_once(hapi_url, tmp_path, monkeypatch):
    assert main(["publish", "--fhir-url", hapi_url]) == 0
    inbox = tmp_path / "inbox.sqlite"
    mrn, filler = uuid.uuid4().hex[:12], f"X{uuid.uuid4().hex[:8]}"
    raw = oru(f"X-{mrn}", mrn, filler, obx(1, "120", when=now_v2(10)))
    monkeypatch.setenv("TRIAL_ADAPTER_CRASH_AT", "mllp-after-accept")
    crashing, port = mllp_service(hapi_url, inbox)
    assert send(port, raw, check=False) == []  # committed, then the process died: no ACK
    assert crashing.process.wait(timeout=60) == CRASH_EXIT_CODE
    monkeypatch.delenv("TRIAL_ADAPTER_CRASH_AT")
    restarted, port = mllp_service(hapi_url, inbox)
    try:
        [ack] = send(port, raw)
        assert msa(ack)[:3] == ["MSA", "AA", f"X-{mrn}"]
        assert wait_idle(restarted) == {"done": 1}
        assert len(search(hapi_url, "Observation", identifier=f"{OBSERVATION_SYSTEM}|{filler}-1")) == 1
    finally:
        assert restarted.stop() == 0
