"""Faults between the client and a FHIR server, at the httpx level (respx): what is retried, what not."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import respx

from adapter.fhir.client import (
    FhirClient,
    FhirConnectionError,
    FhirError,
    FhirHttpError,
    FhirInvalidResponse,
    RetryPolicy,
)

BASE = "https://fhir.example.test/fhir"
NEXT = f"{BASE}?_getpages=p1&_getpagesoffset=2"


def page(*ids: str, next_url: str | None = None) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": next_url}] if next_url else [],
        "entry": [
            {"resource": {"resourceType": "Condition", "id": i}, "search": {"mode": "match"}} for i in ids
        ],
    }


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(sleeps):
    async with FhirClient(BASE, retry=RetryPolicy(attempts=4, base=0.5, max_wait=30), sleep=sleeps) as c:
        yield c


# --- read timeouts --------------------------------------------------------------------------------


@respx.mock
async def test_idempotent_get_is_retried_after_a_read_timeout(client, sleeps):
    route = respx.get(f"{BASE}/Patient/1").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
        ]
    )
    assert (await client.get_json("Patient/1"))["id"] == "1"
    assert route.call_count == 2 and sleeps.calls == [0.5]


@respx.mock
async def test_non_idempotent_post_is_not_resent_after_a_read_timeout(client, sleeps):
    # The server may have created the Patient before the answer was lost: resending could duplicate it.
    route = respx.post(f"{BASE}/Patient").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(FhirConnectionError) as caught:
        await client.request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert route.call_count == 1 and sleeps.calls == []
    assert str(caught.value) == "timed out talking to fhir.example.test (ReadTimeout)"


@respx.mock
async def test_idempotent_transaction_is_resent_after_a_read_timeout(client, sleeps):
    route = respx.post(BASE).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"resourceType": "Bundle"})]
    )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert (await client.transaction(bundle, idempotent=True))["resourceType"] == "Bundle"
    assert route.call_count == 2


@respx.mock
async def test_read_timeouts_are_bounded_and_end_in_one_line(client, sleeps):
    route = respx.get(f"{BASE}/Patient/1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(FhirConnectionError) as caught:
        await client.get_json("Patient/1")
    assert route.call_count == 4 and sleeps.calls == [0.5, 1.0, 2.0]
    assert "\n" not in str(caught.value)


# --- the connection breaks mid-response -------------------------------------------------------------


@respx.mock
async def test_get_is_retried_after_the_connection_breaks_mid_response(client, sleeps):
    route = respx.get(f"{BASE}/Patient/1").mock(
        side_effect=[
            httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
            httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
        ]
    )
    assert (await client.get_json("Patient/1"))["id"] == "1"
    assert route.call_count == 2


@respx.mock
async def test_post_is_not_resent_after_the_connection_breaks_mid_response(client, sleeps):
    route = respx.post(f"{BASE}/Patient").mock(side_effect=httpx.RemoteProtocolError("incomplete body"))
    with pytest.raises(FhirConnectionError) as caught:
        await client.request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert route.call_count == 1
    assert str(caught.value) == "cannot reach fhir.example.test: RemoteProtocolError"


@respx.mock
async def test_idempotent_transaction_is_resent_after_a_reset_mid_response(client, sleeps):
    route = respx.post(BASE).mock(
        side_effect=[
            httpx.ReadError("connection reset by peer"),
            httpx.Response(200, json={"resourceType": "Bundle"}),
        ]
    )
    reply = await client.transaction({"resourceType": "Bundle", "type": "transaction"}, idempotent=True)
    assert reply == {"resourceType": "Bundle"} and route.call_count == 2


@respx.mock
async def test_a_complete_looking_answer_with_broken_json_is_a_fhir_error(client):
    # A close-delimited body cut short looks complete to HTTP; it must still end as a FhirError (one
    # line), not a JSONDecodeError that the worker loop and the CLI treat as a bug.
    respx.get(f"{BASE}/Patient").mock(
        return_value=httpx.Response(200, content=b'{"resourceType": "Bundle", "entry": [{"resou')
    )
    with pytest.raises(FhirInvalidResponse) as caught:
        await client.get_json("Patient")
    assert str(caught.value).startswith("invalid JSON in the HTTP 200 answer to GET /fhir/Patient")
    respx.post(BASE).mock(return_value=httpx.Response(200, content=b"<html>proxy error</html>"))
    with pytest.raises(FhirError):
        await client.transaction({"resourceType": "Bundle", "type": "batch"}, idempotent=True)


# --- 429 Retry-After --------------------------------------------------------------------------------


@respx.mock
async def test_429_retry_after_as_an_http_date_is_honoured(client, sleeps):
    when = email.utils.formatdate(time.time() + 6, usegmt=True)
    route = respx.get(f"{BASE}/Patient/1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": when}),
            httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
        ]
    )
    assert (await client.get_json("Patient/1"))["id"] == "1"
    assert route.call_count == 2
    [waited] = sleeps.calls
    assert 4.0 <= waited <= 6.0  # HTTP dates have whole seconds


@respx.mock
async def test_429_retry_after_date_in_the_past_retries_at_once(client, sleeps):
    when = email.utils.formatdate(time.time() - 60, usegmt=True)
    respx.post(f"{BASE}/Patient").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": when}),
            httpx.Response(201, json={"id": "1"}),
        ]
    )
    response = await client.request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert response.status_code == 201 and sleeps.calls == [0.0]


# --- paging breaks halfway ------------------------------------------------------------------------------


@respx.mock
async def test_a_failing_second_page_fails_the_search_with_no_partial_result(client, sleeps):
    respx.get(f"{BASE}/Condition").mock(return_value=httpx.Response(200, json=page("a", "b", next_url=NEXT)))
    second = respx.get(BASE, params={"_getpages": "p1"}).mock(return_value=httpx.Response(500))
    result = None
    with pytest.raises(FhirHttpError) as caught:
        result = await client.search_resources("Condition", {"code": "x"})
    assert result is None  # nothing half-collected is handed back
    assert caught.value.status == 500 and second.call_count == 4  # retried, bounded


@respx.mock
async def test_a_second_page_that_breaks_once_is_fetched_again_and_the_result_is_complete(client):
    respx.get(f"{BASE}/Condition").mock(return_value=httpx.Response(200, json=page("a", "b", next_url=NEXT)))
    respx.get(BASE, params={"_getpages": "p1"}).mock(
        side_effect=[httpx.RemoteProtocolError("cut"), httpx.Response(200, json=page("c"))]
    )
    found = await client.search_resources("Condition")
    assert [r["id"] for r in found] == ["a", "b", "c"]


@respx.mock
async def test_a_failing_page_inside_a_batch_search_fails_the_whole_batch(client, sleeps):
    reply = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": page("a"), "response": {"status": "200 OK"}},
            {"resource": page("b", next_url=NEXT), "response": {"status": "200 OK"}},
        ],
    }
    respx.post(BASE).mock(return_value=httpx.Response(200, json=reply))
    respx.get(BASE, params={"_getpages": "p1"}).mock(side_effect=httpx.ReadTimeout("hung"))
    with pytest.raises(FhirConnectionError):
        await client.batch_searches(["Condition?subject=Patient/1", "Condition?subject=Patient/2"])


@respx.mock
async def test_a_batch_entry_that_is_not_a_searchset_is_an_error_not_no_data(client, sleeps):
    """A 2xx entry holding an OperationOutcome is no answer: read as empty, it would hide a patient's
    records and let an exclusion pass as not-met."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
    reply = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": page("a"), "response": {"status": "200 OK"}},
            {"resource": outcome, "response": {"status": "200 OK"}},
        ],
    }
    respx.post(BASE).mock(return_value=httpx.Response(200, json=reply))
    with pytest.raises(FhirError, match="batch search Condition failed"):
        await client.batch_searches(["Condition?subject=Patient/1", "Condition?subject=Patient/2"])
