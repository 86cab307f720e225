"""Wiring MLLP into ``serve``: the inbox accept function, the command-line options, start-up errors."""

from __future__ import annotations

import pytest

from adapter.service.mllp import Accepted, Duplicate


async def test_inbox_acceptor_stores_durably_once_and_refuses_invalid_fhir(tmp_path):
    from adapter.service.inbox import Inbox
    from adapter.service.intake import CpuPool
    from adapter.service.mllp import Rejected
    from adapter.service.mllp_wiring import inbox_acceptor
    from adapter.service.sources import ANY_SYSTEM, Source, Sources
    from tests.support.clinical import definition

    inbox = Inbox(tmp_path / "inbox.sqlite")
    woken = []
    sources = Sources(sources={name: Source(name, frozenset({ANY_SYSTEM})) for name in ("lab", "adt")})
    cpu = CpuPool(definition(), workers=0)  # in a thread: the same checks, no process start-up
    accept = inbox_acceptor(inbox, lambda: woken.append(1), sources, cpu)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}}
        ],
    }
    first = await accept("lab", "LIS|LAB1|C1", bundle)
    second = await accept("lab", "LIS|LAB1|C1", bundle)
    other_source = await accept("adt", "LIS|LAB1|C1", bundle)
    assert isinstance(first, Accepted) and isinstance(second, Duplicate) and second.item_id == first.item_id
    assert isinstance(other_source, Accepted) and woken == [1, 1]
    assert inbox.counts() == {"accepted": 2}
    with pytest.raises(Rejected):
        await accept(
            "lab",
            "k2",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {"resourceType": "Patient", "birthDate": "x"}}],
            },
        )
    with pytest.raises(Rejected, match="source"):  # a facility mapped to a source that is not configured
        await accept("unknown", "k3", bundle)
    assert inbox.counts() == {"accepted": 2}
    cpu.close()
    inbox.close()


def test_serve_options(tmp_path, monkeypatch):
    from adapter.cli import build_parser
    from adapter.service.mllp_wiring import settings_from_args

    def parse(*extra: str):
        return settings_from_args(build_parser().parse_args(["serve", "--fhir-url", "http://x", *extra]))

    assert parse() is None
    with pytest.raises(ValueError, match="allowed sending facilities"):
        parse("--mllp-listen", "127.0.0.1:2575")
    facilities = tmp_path / "facilities"
    facilities.write_text("# site feeds\nLAB1 lab\nADT1 adt\n")
    monkeypatch.setenv("MLLP_FACILITIES", "RAD1:radiology")
    settings = parse(
        "--mllp-listen",
        "0.0.0.0:2575",
        "--mllp-facilities",
        str(facilities),
        "--mllp-timezone",
        "Europe/Paris",
    )
    assert (
        settings.facilities == {"LAB1": "lab", "ADT1": "adt", "RAD1": "radiology"} and settings.port == 2575
    )
    assert not settings.any_facility and settings.tls is None and str(settings.tz) == "Europe/Paris"
    with pytest.raises(ValueError, match="go together"):
        parse("--mllp-listen", "127.0.0.1:1", "--mllp-tls-cert", "x.pem")
    with pytest.raises(ValueError, match="time zone"):
        parse("--mllp-listen", "127.0.0.1:1", "--mllp-timezone", "Mars/Base")
    monkeypatch.delenv("MLLP_FACILITIES")
    assert parse("--mllp-listen", "127.0.0.1:1", "--dev-open").any_facility


def test_serve_with_the_mllp_port_taken_fails_with_one_line(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.support.service import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "adapter", "--log-level", "error", "serve", "--fhir-url", "http://127.0.0.1:9/fhir", "--dev-open",
             "--listen", f"127.0.0.1:{free_port()}", "--inbox", str(tmp_path / "inbox.sqlite"),
             "--mllp-listen", f"127.0.0.1:{taken}", "--no-processing"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip().splitlines()[-1].startswith("trial-adapter: error: the service could not start")
    )


def test_facilities_must_feed_configured_sources():
    from adapter.service.mllp import MllpSettings
    from adapter.service.mllp_wiring import check_facilities
    from adapter.service.sources import Source, Sources

    hospital = Sources(sources={"hospital": Source("hospital", frozenset({"urn:mrn"}))})
    check_facilities(MllpSettings("127.0.0.1", 1, {"LAB1": "hospital", "ADT1": "hospital"}), hospital)
    with pytest.raises(ValueError, match="not configured: lab"):
        check_facilities(MllpSettings("127.0.0.1", 1, {"LAB1": "lab", "ADT1": "hospital"}), hospital)
    check_facilities(MllpSettings("127.0.0.1", 1, {"LAB1": "lab"}, any_facility=True), hospital)  # dev-open
    check_facilities(None, hospital)


def test_serve_refuses_facilities_of_unknown_sources_with_one_line(tmp_path, monkeypatch, capsys):
    from adapter.cli import main

    monkeypatch.setenv("SERVICE_API_KEYS", "a-push-key-0123456789:push")
    monkeypatch.setenv("MLLP_FACILITIES", "LAB1:lab")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--fhir-url", "http://127.0.0.1:9/fhir", "--inbox", str(tmp_path / "i.sqlite"),
              "--mllp-listen", "127.0.0.1:2575"])  # fmt: skip
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "MLLP facilities map to sources that are not configured: lab" in line


def test_dev_open_every_facility_pushes_as_the_dev_source_end_to_end(tmp_path):
    """--dev-open with MLLP: listed or not, every facility's message is accepted as ``dev`` (authoritative
    for every system, like an HTTP push in dev-open) and its Bundle plans as the dev source's."""
    import json
    import socket

    from fastapi.testclient import TestClient

    from adapter.service.app import ServiceSettings, create_app
    from adapter.service.forward import plan_forward
    from adapter.service.inbox import Inbox
    from adapter.service.mllp import END, START, MllpSettings
    from adapter.service.sources import ANY_SYSTEM, DEV_SOURCE, Source
    from tests.support.clinical import definition
    from tests.support.hl7v2 import adt, obx, oru
    from tests.support.service import free_port

    port = free_port()
    mllp = MllpSettings("127.0.0.1", port, facilities={"LAB1": "lab"}, any_facility=True)
    inbox_path = tmp_path / "inbox.sqlite"
    settings = ServiceSettings(
        "http://127.0.0.1:9/fhir", inbox_path, dev_open=True, process=False, cpu_workers=0, mllp=mllp
    )
    acks = []
    with TestClient(create_app(settings, definition())) as client:
        # LAB1 is listed (to a source that does not exist), ELSEWHERE is not: both are dev's in dev-open.
        for raw in (
            oru("d1", "M1", "F1", obx(1, "150")),
            oru("d2", "M2", "F2", obx(1, "9"), facility="ELSEWHERE"),
            adt("d3", "M1"),
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(START + raw + END)
                answer = b""
                while not answer.endswith(END):
                    answer += sock.recv(4096)
            acks.append(answer.decode().split("\r")[1].split("|")[1])
        listed = client.get("/status").json()
    assert acks == ["AA", "AA", "AA"]
    assert len(listed["items"]) == 3 and {p["source"] for p in listed["items"]} == {DEV_SOURCE}
    inbox = Inbox(inbox_path)
    dev = Source(DEV_SOURCE, frozenset({ANY_SYSTEM}))
    for payload in listed["items"]:
        plan = plan_forward(
            json.loads(inbox.body(payload["id"]) or b""), dev, payload["id"], "2026-11-23T00:00:00Z"
        )
        [patient] = [e for e in plan.chunks[0].bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        assert patient["resource"]["meta"]["source"] == dev.uri
    inbox.close()
