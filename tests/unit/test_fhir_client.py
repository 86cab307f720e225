"""The FHIR client: each compensation for fhirpy 2.3.1 is proven here with respx."""

from __future__ import annotations

import httpx
import pytest
import respx
from fhirpy.base.exceptions import ResourceNotFound

from adapter.fhir.auth import BearerToken, bearer_from
from adapter.fhir.client import (
    FhirClient,
    FhirConnectionError,
    FhirHttpError,
    FhirNotFound,
    FhirPagingError,
    RetryPolicy,
    parse_retry_after,
)
from adapter.fhir.search import any_of, escape, token

BASE = "https://fhir.example.test/fhir"


def bundle(*resources, next_url=None, includes=()):
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in includes]
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


def outcome(text):
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}],
    }


class Sleeps:
    def __init__(self):
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
async def client(sleeps):
    async with FhirClient(BASE, retry=RetryPolicy(attempts=4, base=0.5, max_wait=30), sleep=sleeps) as c:
        yield c


@respx.mock
async def test_fhirpy_searchset_goes_through_one_shared_httpx_pool(client):
    # fhirpy's AsyncFHIRClient would open an aiohttp session per request; ours reuses one httpx client.
    route = respx.get(f"{BASE}/Patient").mock(
        return_value=httpx.Response(200, json=bundle({"resourceType": "Patient", "id": "1"}))
    )
    pool = client._http
    first = await client.resources("Patient").search(name="x").fetch()
    second = await client.resources("Patient").search(name="y").fetch()
    assert [p.id for p in first] == ["1"] and [p.id for p in second] == ["1"]
    assert route.call_count == 2
    assert client._http is pool and client.requests_sent == 2


@respx.mock
async def test_pages_follow_next_links_and_keep_included_resources(client):
    # fhirpy's fetch_all() keeps only the matches; pages() returns the includes too.
    respx.get(f"{BASE}/MedicationRequest", params={"_include": "MedicationRequest:medication"}).mock(
        return_value=httpx.Response(
            200,
            json=bundle(
                {"resourceType": "MedicationRequest", "id": "m1"},
                includes=[{"resourceType": "Medication", "id": "med1"}],
                next_url=f"{BASE}?_getpages=abc&_getpagesoffset=1",
            ),
        )
    )
    respx.get(f"{BASE}", params={"_getpages": "abc"}).mock(
        return_value=httpx.Response(200, json=bundle({"resourceType": "MedicationRequest", "id": "m2"}))
    )
    found = await client.search_resources("MedicationRequest", {"_include": "MedicationRequest:medication"})
    assert [f"{r['resourceType']}/{r['id']}" for r in found] == [
        "MedicationRequest/m1",
        "Medication/med1",
        "MedicationRequest/m2",
    ]


@respx.mock
async def test_next_link_to_another_host_is_refused(client):
    respx.get(f"{BASE}/Condition").mock(
        return_value=httpx.Response(200, json=bundle(next_url="https://evil.example.test/fhir?page=2"))
    )
    with pytest.raises(FhirPagingError, match="another server"):
        await client.search_resources("Condition")


@respx.mock
async def test_next_link_with_configured_alias_is_rewritten_onto_the_base(sleeps):
    respx.get(f"{BASE}/Condition").mock(
        return_value=httpx.Response(200, json=bundle(next_url="https://public.example.test/r4?page=2"))
    )
    second = respx.get(f"{BASE}", params={"page": "2"}).mock(
        return_value=httpx.Response(200, json=bundle({"resourceType": "Condition", "id": "c2"}))
    )
    async with FhirClient(BASE, url_aliases=["https://public.example.test/r4"], sleep=sleeps) as c:
        found = await c.search_resources("Condition")
    assert second.called and found[0]["id"] == "c2"


@respx.mock
async def test_repeated_next_link_stops_instead_of_looping(client):
    loop = f"{BASE}?_getpages=same"
    respx.get(f"{BASE}/Condition").mock(return_value=httpx.Response(200, json=bundle(next_url=loop)))
    respx.get(f"{BASE}", params={"_getpages": "same"}).mock(
        return_value=httpx.Response(200, json=bundle(next_url=loop))
    )
    with pytest.raises(FhirPagingError, match="same next link"):
        await client.search_resources("Condition")


@respx.mock
async def test_429_waits_for_retry_after_then_succeeds(client, sleeps):
    route = respx.get(f"{BASE}/Patient/1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json=outcome("slow down")),
            httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
        ]
    )
    assert (await client.get_json("Patient/1"))["id"] == "1"
    assert route.call_count == 2
    assert sleeps.calls == [7.0]


@respx.mock
async def test_retry_after_is_capped_and_5xx_backs_off_exponentially(client, sleeps):
    respx.get(f"{BASE}/Patient/1").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "3600"}),
            httpx.Response(502),
            httpx.Response(500),
            httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
        ]
    )
    await client.get_json("Patient/1")
    assert sleeps.calls == [30.0, 1.0, 2.0]


@respx.mock
async def test_retries_are_bounded_and_the_error_carries_status_and_outcome(client, sleeps):
    route = respx.get(f"{BASE}/Patient/1").mock(return_value=httpx.Response(503, json=outcome("maintenance")))
    with pytest.raises(FhirHttpError) as caught:
        await client.get_json("Patient/1")
    assert route.call_count == 4 and len(sleeps.calls) == 3
    assert caught.value.status == 503
    assert str(caught.value) == "HTTP 503 from GET /fhir/Patient/1: error: maintenance"


@respx.mock
async def test_non_idempotent_post_is_not_resent_after_a_500(client, sleeps):
    route = respx.post(f"{BASE}/Patient").mock(return_value=httpx.Response(500))
    with pytest.raises(FhirHttpError):
        await client.request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert route.call_count == 1 and sleeps.calls == []


@respx.mock
async def test_non_idempotent_post_is_resent_after_429_which_means_not_processed(client, sleeps):
    route = respx.post(f"{BASE}/Patient").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(201, json={"resourceType": "Patient", "id": "9"}),
        ]
    )
    response = await client.request("POST", "Patient", json_body={"resourceType": "Patient"})
    assert response.status_code == 201 and route.call_count == 2


@respx.mock
async def test_connection_errors_are_retried_then_reported_in_one_line(client, sleeps):
    respx.get(f"{BASE}/metadata").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(FhirConnectionError, match=r"cannot reach fhir\.example\.test"):
        await client.get_json("metadata")
    assert len(sleeps.calls) == 3


@respx.mock
async def test_404_is_both_our_error_and_fhirpys(client):
    respx.get(f"{BASE}/Patient/nope").mock(return_value=httpx.Response(404, json=outcome("gone")))
    with pytest.raises(FhirNotFound) as caught:
        await client.get_json("Patient/nope")
    assert isinstance(caught.value, ResourceNotFound) and caught.value.status == 404


@respx.mock
async def test_error_messages_never_include_the_query_string(client):
    respx.get(f"{BASE}/Patient").mock(return_value=httpx.Response(400, json=outcome("bad")))
    with pytest.raises(FhirHttpError) as caught:
        await client.get_json("Patient", {"name": "Alice Secret"})
    assert "Alice" not in str(caught.value)


@respx.mock
async def test_bearer_token_is_sent_and_never_shown(sleeps, monkeypatch, tmp_path):
    monkeypatch.setenv("MY_TOKEN", "s3cret-token")
    auth = bearer_from("MY_TOKEN")
    assert isinstance(auth, BearerToken) and "s3cret" not in repr(auth)
    route = respx.get(f"{BASE}/metadata").mock(
        return_value=httpx.Response(200, json={"resourceType": "CapabilityStatement"})
    )
    async with FhirClient(BASE, auth=auth, sleep=sleeps) as c:
        await c.get_json("metadata")
    assert route.calls[0].request.headers["Authorization"] == "Bearer s3cret-token"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert (await bearer_from("MY_TOKEN", token_file).headers())["Authorization"] == "Bearer from-file"


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a,b", "a\\,b"),
        ("x|y", "x\\|y"),
        ("$z", "\\$z"),
        ("back\\slash", "back\\\\slash"),
        ("plain", "plain"),
    ],
)
def test_search_values_are_escaped_so_data_cannot_change_a_query(raw, escaped):
    assert escape(raw) == escaped


def test_token_and_or_lists():
    assert token("http://loinc.org", "1975-2") == "http://loinc.org|1975-2"
    assert any_of([token("s", "a,b"), token("s", "c")]) == "s|a\\,b,s|c"
