"""The ingestion service's parts without a server: inbox (idempotency, retention, file mode), sources,
scoped forwarding, narrative checks, the circuit breaker, error scrubbing, logs, docs, the port (issue 13)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import stat

import pytest
from fastapi.testclient import TestClient

from adapter.cli import main
from adapter.fhir.client import FhirOperationError
from adapter.logs import JsonFormatter
from adapter.service.app import ServiceSettings, create_app
from adapter.service.breaker import CircuitBreaker
from adapter.service.checks import InputError
from adapter.service.forward import check_authority, plan_forward
from adapter.service.inbox import BodyExpired, IdempotencyConflict, Inbox
from adapter.service.narrative import NarrativeError, check_div
from adapter.service.processor import scrubbed
from adapter.service.sources import SOURCE_SYSTEM, Source, SourceConfigError, Sources
from tests.support.clinical import definition

A = Source("hospital-a", frozenset({"urn:mrn:a"}))
B = Source("hospital-b", frozenset({"urn:mrn:b"}))
NOW = "2026-11-23T00:00:00+00:00"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- inbox ------------------------------------------------------------------------------------------


def test_inbox_file_is_readable_by_its_owner_only(tmp_path):
    inbox = Inbox(tmp_path / "new" / "inbox.sqlite")
    inbox.accept("a", None, b"{}", "bundle")
    for path in (tmp_path / "new").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    inbox.close()


def test_idempotency_keys_are_per_source_and_bound_to_the_content(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    first, created = inbox.accept("a", "k1", b"one", "bundle", content_hash="h1")
    assert created
    assert inbox.accept("a", "k1", b"one", "bundle", content_hash="h1") == (first, False)
    with pytest.raises(IdempotencyConflict) as refused:
        inbox.accept("a", "k1", b"two", "bundle", content_hash="h2")
    assert refused.value.item_id == first
    other, created = inbox.accept("b", "k1", b"two", "bundle", content_hash="h2")  # b's own key
    assert created and other != first
    assert inbox.accept("a", None, b"one", "bundle")[1] and inbox.accept("a", None, b"one", "bundle")[1]
    inbox.close()


def test_an_older_inbox_is_upgraded_and_its_keys_belong_to_the_default_source(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE inbox (id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE, kind TEXT NOT NULL,"
        " body BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " received_at REAL NOT NULL, not_before REAL NOT NULL, lease_until REAL, last_error TEXT,"
        " result TEXT, finished_at REAL);"
        "INSERT INTO inbox VALUES ('old-1', 'bundle:x', 'bundle', X'7B7D', 'done', 1, 1, 1, NULL, NULL, NULL, 2);"
    )
    old.commit()
    old.close()
    inbox = Inbox(path)
    assert inbox.accept("default", "bundle:x", b"{}", "bundle") == ("old-1", False)
    assert inbox.status("old-1", "default")["source"] == "default"
    inbox.close()


def test_bodies_are_deleted_after_the_replay_window_and_dead_letters_after_theirs(tmp_path):
    clock = Clock()
    inbox = Inbox(tmp_path / "inbox.sqlite", replay_window=100, dead_window=1000, clock=clock)
    done_id, _ = inbox.accept("a", None, b'{"patient": "data"}', "bundle")
    dead_id, _ = inbox.accept("a", None, b'{"more": "data"}', "bundle")
    inbox.claim(60)
    inbox.done(done_id, {"forwarded": 1})
    inbox.claim(60)
    inbox.dead(dead_id, "HTTP 422")
    clock.now += 99
    assert inbox.purge() == 0
    clock.now += 2
    assert inbox.purge() == 1
    assert inbox.body(done_id) == b"" and inbox.body(dead_id) == b'{"more": "data"}'
    assert inbox.status(done_id)["bodyDeletedAt"] is not None and inbox.status(done_id)["state"] == "done"
    clock.now += 1000
    assert inbox.purge() == 1 and inbox.body(dead_id) == b""
    with pytest.raises(BodyExpired):
        inbox.replay(dead_id)
    inbox.close()


def test_status_is_scoped_to_the_source(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    mine, _ = inbox.accept("a", None, b"{}", "bundle")
    theirs, _ = inbox.accept("b", None, b"{}", "bundle")
    assert inbox.status(theirs, "a") is None and inbox.status(mine, "a") is not None
    assert [i["id"] for i in inbox.list(None, 10, "a")] == [mine]
    assert {i["id"] for i in inbox.list(None, 10)} == {mine, theirs}
    inbox.close()


# --- sources -----------------------------------------------------------------------------------------


def test_sources_file_rules(tmp_path):
    good = {
        "sources": [
            {"name": "a", "keys": ["k" * 16], "identifier_systems": ["urn:a"]},
            {"name": "b", "keys": ["j" * 16], "identifier_systems": ["urn:b"], "engine_ids": "per-message"},
        ],
        "admin_keys": ["m" * 16],
    }
    path = tmp_path / "sources.yaml"
    path.write_text(json.dumps(good))
    sources = Sources.from_file(path)
    assert sources.caller("k" * 16).source.name == "a"
    assert sources.caller("m" * 16).admin and sources.caller("m" * 16).source is None
    assert sources.caller("x" * 16) is None
    for broken, fragment in [
        ({"sources": [{"name": "a", "keys": ["short"]}]}, "16 characters"),
        ({"sources": [{"name": "A B"}]}, "name"),
        ({"sources": [{"name": "a", "resource_types": ["Task"]}]}, "not accepted"),
        (
            {
                "sources": [
                    {"name": "a", "identifier_systems": ["u"]},
                    {"name": "b", "identifier_systems": ["u"]},
                ]
            },
            "same identifier systems",
        ),
        ({"sources": [{"name": "a", "identifier_systems": ["*"]}, {"name": "b"}]}, "same identifier systems"),
        ({"sources": [{"name": "a", "keys": ["k" * 16]}, {"name": "b", "keys": ["k" * 16]}]}, "twice"),
    ]:
        with pytest.raises(SourceConfigError, match=fragment):
            Sources.from_dict(broken)


def test_legacy_keys_are_one_default_source():
    sources = Sources.from_legacy(["p" * 16 + ":push", "a" * 16 + ":admin"], None)
    push, admin = sources.caller("p" * 16), sources.caller("a" * 16)
    assert push.source.name == admin.source.name == "default" and admin.admin and not push.admin
    assert push.source.authoritative_for("urn:anything")
    narrowed = Sources.from_legacy(["p" * 16], "urn:a, urn:b")
    assert narrowed.caller("p" * 16).source.identifier_systems == {"urn:a", "urn:b"}


# --- forwarding ----------------------------------------------------------------------------------------


def engine_bundle(system: str, mrn: str, value: float = 100) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "Patient/1",
                "resource": {
                    "resourceType": "Patient",
                    "id": "1",
                    "identifier": [{"system": system, "value": mrn}],
                },
            },
            {
                "fullUrl": "Observation/1",
                "resource": {
                    "resourceType": "Observation",
                    "id": "1",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
                    "valueQuantity": {"value": value},
                    "subject": {"reference": "Patient/1"},
                },
            },
        ],
    }


def observation_url(bundle: dict, source: Source) -> str:
    return plan_forward(bundle, source, "item", NOW).chunks[0].bundle["entry"][1]["request"]["url"]


def test_engine_ids_are_scoped_by_source_and_patient():
    a1 = observation_url(engine_bundle("urn:mrn:a", "1"), A)
    assert a1 == observation_url(engine_bundle("urn:mrn:a", "1", value=50), A)  # an update: same resource
    assert a1 != observation_url(engine_bundle("urn:mrn:a", "2"), A)  # same engine id, another patient
    assert a1 != observation_url(engine_bundle("urn:mrn:b", "1"), B)  # same engine ids, another source
    per_message = Source("hospital-a", A.identifier_systems, engine_ids="per-message")
    assert observation_url(engine_bundle("urn:mrn:a", "1"), per_message) != observation_url(
        engine_bundle("urn:mrn:a", "1", value=50), per_message
    )


def test_forwarded_resources_carry_their_source_and_foreign_identifiers_are_namespaced():
    bundle = engine_bundle("urn:mrn:a", "1")
    bundle["entry"][0]["resource"]["identifier"].append({"system": "urn:national", "value": "n1"})
    [chunk] = plan_forward(bundle, A, "item", NOW).chunks
    patient, observation, provenance = (e["resource"] for e in chunk.bundle["entry"])
    assert patient["meta"] == observation["meta"] == {"source": A.uri}
    assert patient["identifier"] == [
        {"system": "urn:mrn:a", "value": "1"},
        {"system": f"{SOURCE_SYSTEM}/hospital-a", "value": "urn:national|n1"},
    ]
    assert chunk.bundle["entry"][0]["request"]["url"].startswith("Patient?identifier=")
    assert provenance["resourceType"] == "Provenance" and len(provenance["target"]) == 2
    assert provenance["agent"][0]["who"]["identifier"] == {"system": SOURCE_SYSTEM, "value": "hospital-a"}


def test_a_create_only_patient_links_to_the_existing_one_and_never_updates_it():
    bundle = engine_bundle("urn:mrn:a", "1")
    # The sender's own condition (another system here) is not trusted: ours is on its identifier.
    bundle["entry"][0]["request"] = {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:x|9"}
    [chunk] = plan_forward(bundle, A, "item", NOW).chunks
    patient, observation, _ = chunk.bundle["entry"]
    assert patient["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": "identifier=urn%3Amrn%3Aa%7C1",
    }
    assert observation["resource"]["subject"] == {"reference": patient["fullUrl"]}
    bundle["entry"][0]["request"] = {"method": "POST", "url": "Patient"}  # a plain POST: an update as before
    assert plan_forward(bundle, A, "item", NOW).chunks[0].bundle["entry"][0]["request"]["method"] == "PUT"


def test_authority_is_checked_before_acceptance():
    check_authority(engine_bundle("urn:mrn:a", "1"), A)
    with pytest.raises(InputError) as refused:
        check_authority(engine_bundle("urn:mrn:a", "1"), B)
    assert refused.value.status == 403
    no_identifier = engine_bundle("urn:mrn:a", "1")
    del no_identifier["entry"][0]["resource"]["identifier"]
    with pytest.raises(InputError):
        check_authority(no_identifier, A)


def test_a_large_collection_is_split_with_referenced_entries_first():
    bundle = engine_bundle("urn:mrn:a", "1")
    observation = bundle["entry"].pop(1)
    for index in range(7):
        copy = json.loads(json.dumps(observation))
        copy["fullUrl"] = f"Observation/{index}"
        copy["resource"]["id"] = str(index)
        bundle["entry"].insert(0, copy)  # the Patient last: it must still go first
    plan = plan_forward(bundle, A, "item", NOW, max_entries=3)
    assert [len(c.bundle["entry"]) - 1 for c in plan.chunks] == [3, 3, 2]
    assert plan.chunks[0].bundle["entry"][0]["resource"]["resourceType"] == "Patient"
    transaction = dict(bundle, type="transaction")
    assert len(plan_forward(transaction, A, "item", NOW, max_entries=3).chunks) == 1  # all-or-nothing


# --- narrative, errors, breaker -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("div", "fragment"),
    [
        ('<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script>t</div>', "element <script>"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">t</p></div>', "attribute onclick"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><a href=" JavaScript:x()">t</a></div>', "script URL"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="x"/>t</div>', "element <iframe>"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p style="background:url(x)">t</p></div>', "style"),
        ("<div>t</div>", "root must be"),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>t</div>', "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY e "e">]><div xmlns="http://www.w3.org/1999/xhtml">&e;</div>', "entities"),
        ('<div xmlns="http://www.w3.org/1999/xhtml">  </div>', "no content"),
    ],
)
def test_unsafe_or_invalid_narrative_is_refused(div, fragment):
    with pytest.raises(NarrativeError, match=fragment):
        check_div(div)


def test_a_plain_narrative_passes():
    check_div('<div xmlns="http://www.w3.org/1999/xhtml"><p>A <b>patient</b>, <a href="#x">x</a></p></div>')


def test_server_diagnostics_never_reach_the_status():
    error = FhirOperationError(
        422,
        "POST",
        "http://h/fhir",
        outcome={
            "issue": [{"severity": "error", "code": "processing", "diagnostics": "Jane Doe 2014-01-02"}]
        },
        body="HAPI-0550: Jane Doe",
    )
    text = scrubbed(error)
    assert text == "HTTP 422 from POST /fhir (issue: processing, HAPI-0550)"


def test_the_breaker_opens_while_the_server_is_down_and_closes_when_it_answers():
    answers = iter([False, False, False, True])
    slept: list[float] = []

    async def check() -> bool:
        return next(answers)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> CircuitBreaker:
        breaker = CircuitBreaker(check, first_wait=1, max_wait=3, sleep=sleep)
        assert not await breaker.probe() and breaker.is_open
        await breaker.wait_closed(lambda: False)
        return breaker

    breaker = asyncio.run(go())
    assert not breaker.is_open and breaker.opened == 1 and slept == [1, 2, 3]


# --- logs, docs, port -----------------------------------------------------------------------------------


def test_json_logs_drop_uvicorns_colour_message():
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "Uvicorn running", (), None)
    record.color_message = "\x1b[1mUvicorn running\x1b[0m"
    assert "\x1b" not in JsonFormatter().format(record)


def test_docs_work_offline_and_show_the_auth_scheme(tmp_path):
    settings = ServiceSettings(
        "http://127.0.0.1:9/fhir", tmp_path / "inbox.sqlite", process=False, cpu_workers=0
    )
    with TestClient(create_app(settings, definition())) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "<script" not in page.text and "cdn" not in page.text.lower()
        assert "Authorization: Bearer" in page.text and "/fhir/ResearchStudy/$screen" in page.text
        schema = client.get("/openapi.json").json()
        assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_serve_on_a_taken_port_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SERVICE_API_KEYS", "p" * 16 + ":push")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(
                [
                    "serve",
                    "--fhir-url",
                    "http://127.0.0.1:9/fhir",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--inbox",
                    str(tmp_path / "i.sqlite"),
                ]
            )
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"trial-adapter: error: cannot listen on 127.0.0.1:{port}: the port is already in use; "
        "choose another with --listen"
    )


def test_serve_listens_on_8090_by_default():
    from adapter.cli import build_parser

    args = build_parser().parse_args(["serve", "--fhir-url", "http://x/fhir"])
    assert args.listen == "127.0.0.1:8090"


def test_a_conditional_reference_to_a_patient_sent_along_points_at_that_entry():
    bundle = engine_bundle("urn:mrn:a", "7")
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient?identifier=urn:mrn:a|7"}
    plan = plan_forward(bundle, A, "item", NOW)
    assert plan.conditional_patients == []  # nothing to wait for: it is in the payload
    entries = plan.chunks[0].bundle["entry"]
    assert entries[1]["resource"]["subject"]["reference"] == entries[0]["fullUrl"]
    elsewhere = engine_bundle("urn:mrn:a", "7")
    elsewhere["entry"][1]["resource"]["subject"] = {"reference": "Patient?identifier=urn:mrn:a|8"}
    assert plan_forward(elsewhere, A, "item", NOW).conditional_patients == ["Patient?identifier=urn:mrn:a|8"]


def test_entries_referring_in_a_cycle_are_never_split():
    bundle = engine_bundle("urn:mrn:a", "1")
    patient = bundle["entry"][0]["resource"]
    patient["managingOrganization"] = {"reference": "Organization/o"}
    organization = {"resourceType": "Organization", "id": "o", "partOf": {"reference": "Observation/1"}}
    bundle["entry"].append({"fullUrl": "Organization/o", "resource": organization})
    bundle["entry"][1]["resource"]["performer"] = [{"reference": "Organization/o"}]
    patient_ref_cycle = plan_forward(bundle, A, "item", NOW, max_entries=1)
    assert len(patient_ref_cycle.chunks) == 1
