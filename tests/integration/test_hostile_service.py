"""Hostile and broken input to the ingestion service (a real subprocess, in front of HAPI).

Every bad payload gets a 4xx OperationOutcome, nothing of it is stored in the inbox, the service stays
up (a good payload afterwards is accepted and processed) and its memory stays bounded over repeats of
the biggest inputs. The service runs with its production limits (20 MB bodies, 10,000 entries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clinical import candidate_resources
from tests.support.hostile import (
    BAD,
    CD7,
    HOSTILE_ADMIN_KEY,
    HOSTILE_PUSH_KEY,
    HOSTILE_WRONG_KEY,
    PATIENT,
    Bad,
    bad_texts,
    bundle_bytes,
    texts_of,
)
from tests.support.patients import candidate_on_server
from tests.support.service import ServiceProcess

PUSH_KEY, ADMIN_KEY, WRONG_KEY = HOSTILE_PUSH_KEY, HOSTILE_ADMIN_KEY, HOSTILE_WRONG_KEY
FIFTY_MB = 50 * 1024 * 1024
JSON_ERRORS = {
    "truncated-json",
    "non-utf8",
    "nan",
    "infinity",
    "minus-infinity",
    "1e400",
    "400-digit-integer",
    "5000-digit-integer",
    "nesting-1000",
    "nesting-100000",
}

# Where the service words a problem differently from the file source.
SERVICE_WORDING = {
    "truncated-json": "invalid JSON",
    "non-utf8": "body is not UTF-8",
    "no-resource-type": "no resourceType",
    "missing-subject": "Condition.subject",
    "nesting-1000": "nested too deeply",
    "nesting-100000": "nested too deeply",
}


def Service(hapi_url: str, inbox: Path, *extra: str, keys: str | None) -> ServiceProcess:
    """The service as a subprocess (tests/support/service.py), keys optional, RSS measurable."""
    return ServiceProcess(hapi_url, inbox, *extra, keys=keys, default_key=PUSH_KEY)


@pytest.fixture(scope="module")
def hostile(hapi_url, tmp_path_factory) -> Iterator[Service]:
    # Accept and store only: this module must not publish the study or write patients to the shared
    # server (test_publish.py expects a server without the study; processing is test_service.py's).
    inbox = tmp_path_factory.mktemp("hostile") / "inbox.sqlite"
    running = Service(
        hapi_url,
        inbox,
        "--max-body-bytes",
        "20000000",
        "--max-entries",
        "10000",
        "--no-processing",
        keys=f"{PUSH_KEY}:push,{ADMIN_KEY}:admin",
    )
    yield running
    assert running.stop() == 0


def assert_refused(service: Service, reply: httpx.Response, status: int, fragment: str = "") -> str:
    assert reply.status_code == status, reply.text[:500]
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert diagnostics and fragment in diagnostics, diagnostics[:500]
    assert len(diagnostics) < 1000
    return diagnostics


def assert_still_serving(service: Service) -> None:
    """A good request still works: $screen answers for the candidate."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in candidate_resources()],
    }
    reply = service.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle, Accept="application/json")
    assert reply.status_code == 200 and reply.json()["patients"][0]["status"] == "candidate"


# --- the corpus -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_broken_bundle_is_refused_with_an_outcome_and_nothing_stored(hostile, case: Bad):
    before = hostile.inbox()
    status = 400 if case.id in JSON_ERRORS else 422
    fragment = SERVICE_WORDING.get(case.id, case.bundle_error)
    assert_refused(hostile, hostile.post("/fhir", bundle_bytes(bad_texts(case))), status, fragment)
    assert hostile.inbox() == before


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"resourceType": "Patient", "id": "p"}, 422, "expected a Bundle, got 'Patient'"),
        ({"resourceType": "x" * 10_000}, 422, "expected a Bundle"),
        ([1, 2], 400, "expected a FHIR resource"),
        ({"resourceType": "Bundle", "type": ["collection"], "entry": []}, 422, "Bundle.type must be"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": []}, 422, "Bundle.type must be"),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, 422, "no entries"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {"a": 1}}, 422, "must be a list"),
        ({"resourceType": "Bundle", "type": "collection", "identifier": "abc"}, 422, "Bundle.identifier"),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": ["PUT"]}}],
            },
            422,
            "request method",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE"}}],
            },
            422,
            "request method 'DELETE' is not accepted",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Group"}}],
            },
            422,
            "resource type Group is not accepted",
        ),
    ],
    ids=[
        "a-patient",
        "10k-resource-type",
        "a-list",
        "type-a-list",
        "searchset",
        "no-entries",
        "entry-an-object",
        "identifier-a-string",
        "method-a-list",
        "method-delete",
        "type-not-accepted",
    ],
)
def test_a_wrong_bundle_shape_is_refused_and_nothing_stored(hostile, body, status, fragment):
    before = hostile.inbox()
    assert_refused(hostile, hostile.post("/fhir", body), status, fragment)
    assert hostile.inbox() == before


def test_duplicate_full_urls_are_refused(hostile):
    texts = texts_of(candidate_resources())
    full_urls = [f"urn:uuid:00000000-0000-4000-8000-{i:012d}" for i in range(len(texts))]
    full_urls[3] = full_urls[2]
    before = hostile.inbox()
    assert_refused(hostile, hostile.post("/fhir", bundle_bytes(texts, full_urls)), 422, "duplicate fullUrl")
    assert hostile.inbox() == before


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        (
            "/fhir/Observation",
            b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}',
            400,
            "NaN",
        ),
        ("/fhir/Observation", {"resourceType": "Patient"}, 400, "does not match the URL"),
        ("/fhir/Patient", {"resourceType": "Patient", "birthDate": "2026-02-30"}, 422, "Patient.birthDate"),
        ("/fhir/Foo", {"resourceType": "Foo"}, 422, "unknown resource type 'Foo'"),
        ("/fhir/ResearchStudy/$screen?asOf=2026-02-30", {"resourceType": "Bundle"}, 400, "asOf must be"),
        (
            "/fhir/ResearchStudy/$screen",
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient"}}] * 2,
            },
            422,
            "exactly one Patient",
        ),
        ("/notify/x", b"[1]", 400, "not a FHIR resource"),
        ("/notify/x", b"Infinity", 400, "Infinity"),
    ],
    ids=[
        "nan-resource",
        "type-mismatch",
        "impossible-date",
        "unknown-type",
        "bad-as-of",
        "two-patients",
        "notify-list",
        "notify-inf",
    ],
)
def test_other_endpoints_refuse_bad_input_and_store_nothing(hostile, path, body, status, fragment):
    before = hostile.inbox()
    assert_refused(hostile, hostile.post(path, body), status, fragment)
    assert hostile.inbox() == before


# --- odd but valid: screened, unknown where it cannot be judged -----------------------------------


def _screen(service: Service, resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    reply = service.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle, Accept="application/json")
    assert reply.status_code == 200, reply.text[:500]
    return {c["id"]: c for c in reply.json()["patients"][0]["criteria"]}


def test_odd_but_valid_values_are_screened_unknown_where_they_cannot_be_judged(hostile):
    resources = candidate_resources()
    resources[CD7] = {**resources[CD7], "valueQuantity": {"value": 93.5, "unit": "furlongs"}}
    resources[PATIENT] = {**resources[PATIENT], "birthDate": "2099-01-01"}
    criteria = _screen(hostile, resources)
    assert criteria["inclusion-5"]["result"] == "unknown" and "furlongs" in criteria["inclusion-5"]["reason"]
    assert (
        criteria["inclusion-1"]["result"] == "unknown"
        and "birth date after" in criteria["inclusion-1"]["reason"]
    )
    for value in (1e308, -1e308):
        resources = candidate_resources()
        resources[CD7] = {
            **resources[CD7],
            "valueQuantity": {**resources[CD7]["valueQuantity"], "value": value},
        }
        assert _screen(hostile, resources)["inclusion-5"]["result"] in ("met", "not-met")


# --- size, nesting and memory ---------------------------------------------------------------------


def _fifty_mb_string() -> bytes:
    resource = {"resourceType": "Patient", "name": [{"text": "x" * FIFTY_MB}]}
    return json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    ).encode()


def _entries(count: int, resource: dict[str, Any]) -> bytes:
    entry = json.dumps({"resource": resource}).encode()
    return b'{"resourceType": "Bundle", "type": "collection", "entry": [' + b",".join([entry] * count) + b"]}"


BIG = {
    "50-mb-string": (_fifty_mb_string, 413, "over the limit"),
    "100000-entries-under-the-size-limit": (
        lambda: _entries(100_000, {"resourceType": "Patient"}),
        413,
        "the Bundle has 100000 entries; the limit is 10000",
    ),
    "100000-observations-over-the-size-limit": (
        lambda: _entries(100_000, candidate_resources()[CD7]),
        413,
        "over the limit",
    ),
    "nesting-100000": (
        lambda: b'{"resourceType": "Bundle", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "nested",
    ),
}


def test_big_inputs_are_refused_with_bounded_memory_and_the_service_stays_up(hostile):
    bodies = {name: (make(), status, fragment) for name, (make, status, fragment) in BIG.items()}
    assert_still_serving(hostile)
    baseline = hostile.rss_mb()
    after_round = []
    for _ in range(3):
        for name, (body, status, fragment) in bodies.items():
            before = hostile.inbox()
            reply = hostile.post("/fhir", body)
            assert_refused(hostile, reply, status, fragment)
            assert hostile.inbox() == before, name
        assert_still_serving(hostile)
        after_round.append(hostile.rss_mb())
    peak = hostile.peak_mb()
    print(
        f"service RSS: {baseline:.0f} MB before, after each round {[round(m) for m in after_round]} MB, peak {peak:.0f} MB"
    )
    assert max(after_round) - baseline < 300, (baseline, after_round)
    assert peak - baseline < 300, (baseline, peak)
    assert after_round[2] - after_round[0] < 50, after_round  # not growing with repeats


def test_a_chunked_body_over_the_limit_is_refused_without_a_content_length(hostile):
    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Bundle", "type": "collection", "entry": [], "x": "'
        for _ in range(25):
            yield b"x" * 1_000_000
        yield b'"}'

    before = hostile.inbox()
    reply = httpx.post(
        f"{hostile.url}/fhir",
        content=chunks(),
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {PUSH_KEY}"},
        timeout=60,
    )
    assert_refused(hostile, reply, 413, "over the limit")
    assert hostile.inbox() == before


def test_after_all_that_a_good_push_is_accepted_and_stored(hostile):
    mrn = uuid.uuid4().hex[:12]
    resources = candidate_on_server("77" + mrn[:6], date.today())
    resources[0]["identifier"] = [
        {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}
    ]  # a Patient needs one
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    before = hostile.inbox().get("accepted", 0)
    reply = hostile.post("/fhir", bundle)
    assert reply.status_code == 202 and reply.headers["Location"].startswith("/status/")
    assert hostile.inbox().get("accepted", 0) == before + 1
    assert hostile.process.poll() is None


# --- authentication -----------------------------------------------------------------------------


def test_a_refused_key_is_never_echoed(hostile):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient"}}],
    }
    for headers in ({"Authorization": f"Bearer {WRONG_KEY}"}, {"X-API-Key": WRONG_KEY}):
        reply = httpx.post(
            f"{hostile.url}/fhir",
            content=json.dumps(bundle).encode(),
            headers={"Content-Type": "application/fhir+json", **headers},
            timeout=10,
        )
        assert reply.status_code == 401
        assert WRONG_KEY not in reply.text and WRONG_KEY not in str(reply.headers)
    reply = hostile.post(f"/status/{uuid.uuid4()}/$replay", {}, key=PUSH_KEY)
    assert reply.status_code == 403 and PUSH_KEY not in reply.text


def test_dev_open_accepts_requests_without_credentials(hapi_url, tmp_path):
    service = Service(hapi_url, tmp_path / "inbox.sqlite", "--dev-open", "--no-processing", keys=None)
    try:
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in candidate_resources()],
        }
        bundle["entry"][0]["resource"]["identifier"] = [{"system": "urn:oid:1.2.3", "value": "dev-1"}]
        assert service.post("/fhir", bundle, key=None).status_code == 202
        screened = service.post("/fhir/ResearchStudy/$screen?asOf=2026-11-23", bundle, key=None)
        assert screened.status_code == 200
        assert service.inbox() == {"accepted": 1}
    finally:
        assert service.stop() == 0


def test_serve_without_keys_and_without_dev_open_exits_2_with_one_line(hapi_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SERVICE_API_KEYS"}
    inbox = tmp_path / "inbox.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--fhir-url", hapi_url, "--inbox", str(inbox)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "trial-adapter: error: no API keys configured: use --sources FILE, SERVICE_API_KEYS or "
        "--api-keys-file (or --dev-open, development only)"
    ]
    assert not inbox.exists()
