"""Issue 18: the population search travels as one batch Bundle (codes, text probe, every ALL prefix,
missing codes); a server or proxy refusing batches gets the GET searches, and who is found is the same."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
import respx

from adapter.fhir.client import FhirClient, FhirError
from adapter.sources.server import ServerSource, text_prefixes
from mappings.criteria import load_criteria
from tests.support.clinical import CRITERIA_PATH, SCT, condition

TEXT_PREFIXES = text_prefixes(load_criteria(CRITERIA_PATH))  # the study's population.text_search

BASE = "https://fhir.example.test/fhir"
LOCAL_DX = "http://hospital.example/dx"


def _searchset(*resources: dict, total: int | None = None, next_url: str | None = None) -> dict:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if total is not None:
        out["total"] = total
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


def _people() -> dict[str, dict]:
    coded = condition((SCT, "277575008"), subject="p-coded")
    local = condition((LOCAL_DX, "TALL-9"), subject="p-local")  # local code, ALL only in its display
    local["code"]["coding"][0]["display"] = "T-cell acute lymphoblastic leukaemia, relapsed"
    words = condition((LOCAL_DX, "x"), subject="p-words")
    words["code"] = {"text": "Relapsed T-ALL"}  # no coding at all
    asthma = condition((LOCAL_DX, "y"), subject="p-asthma")
    asthma["code"] = {"text": "Asthma"}
    return {"coded": coded, "local": local, "words": words, "asthma": asthma}


def _answer(params: dict[str, str], people: dict[str, dict], *, text_works: bool = True) -> tuple[int, dict]:
    """What a server answers one Condition search with."""
    if params.get("code:text") == "zq-no-such-words-xq":
        return 200, _searchset(total=0 if text_works else 4)
    if "code:text" in params:
        term = params["code:text"].lower()
        if not text_works:
            return 200, _searchset(*people.values())  # the modifier ignored: everything matches
        hits = [
            c
            for c in people.values()
            if any(
                str(x).lower().startswith(term)
                for x in [c["code"].get("text"), *(d.get("display") for d in c["code"].get("coding", []))]
                if x
            )
        ]
        return 200, _searchset(*hits)
    if params.get("code:missing") == "true":
        return 200, _searchset(people["words"], people["asthma"])
    return 200, _searchset(people["coded"])


def _batch_server(people: dict[str, dict], seen: list[list[str]], **kw: Any) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        bundle = json.loads(request.content)
        urls = [e["request"]["url"] for e in bundle["entry"]]
        seen.append(urls)
        entries = []
        for url in urls:
            status, body = _answer(dict(parse_qsl(urlsplit(url).query)), people, **kw)
            entries.append({"response": {"status": f"{status} OK"}, "resource": body})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    return answer


@respx.mock
async def test_one_batch_request_finds_coded_local_and_text_only_patients():
    people, seen = _people(), []
    batch = respx.post(BASE).mock(side_effect=_batch_server(people, seen))
    get = respx.get(url__startswith=BASE).mock(return_value=httpx.Response(500))
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-local", "p-words"]  # never the asthma
        assert client.requests_sent == 1
    assert batch.call_count == 1 and get.call_count == 0
    (urls,) = seen
    queries = [dict(parse_qsl(urlsplit(u).query)) for u in urls]
    assert urls[0].startswith("Condition?code=") and queries[0]["_elements"] == "subject"
    assert "http://snomed.info/sct|277575008" in unquote(urls[0])  # the whole code list in one search
    texts = [q["code:text"] for q in queries if "code:text" in q]
    assert texts == ["zq-no-such-words-xq", *TEXT_PREFIXES]  # probe first, then every prefix
    assert queries[-1]["code:missing"] == "true"
    assert "one batch request" in source.population_method
    assert "text search for ALL wording" in source.population_method


@respx.mock
async def test_a_refused_batch_falls_back_to_get_searches_once_and_finds_the_same_patients():
    people = _people()
    batch = respx.post(BASE).mock(return_value=httpx.Response(405))

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = _answer(dict(request.url.params), people)
        return httpx.Response(status, json=body)

    get = respx.get(f"{BASE}/Condition").mock(side_effect=answer)
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-local", "p-words"]
        assert await source.population() == ["p-coded", "p-local", "p-words"]
    assert batch.call_count == 1  # learnt: the second search goes straight to GET
    assert get.call_count == 2 * (1 + 1 + len(TEXT_PREFIXES) + 1) - 1  # the probe is asked once
    assert "GET searches (no batch)" in source.population_method


@respx.mock
async def test_in_a_batch_a_server_ignoring_text_search_adds_nobody_by_text():
    people, seen = _people(), []
    respx.post(BASE).mock(side_effect=_batch_server(people, seen, text_works=False))
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        # p-local (ALL only in a local code's display) cannot be found without text search: said so
        assert await source.population() == ["p-coded", "p-words"]
    assert "no text search on this server" in source.population_method


@respx.mock
async def test_in_a_batch_refused_optional_searches_are_reported_not_fatal():
    people = _people()

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        entries = []
        for url in urls:
            params = dict(parse_qsl(urlsplit(url).query))
            if "code:text" in params or "code:missing" in params:
                entries.append({"response": {"status": "400 Bad Request"}})
            else:
                entries.append({"response": {"status": "200 OK"}, "resource": _answer(params, people)[1]})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    respx.post(BASE).mock(side_effect=answer)
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded"]
    assert "no text search on this server" in source.population_method
    assert "Conditions with only text are not found" in source.population_method


@respx.mock
async def test_a_failed_code_search_inside_the_batch_is_asked_again_by_get():
    people = _people()

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        entries = [{"response": {"status": "414 URI Too Long"}} for _ in urls]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    respx.post(BASE).mock(side_effect=answer)
    respx.get(f"{BASE}/Condition").mock(
        side_effect=lambda r: httpx.Response(200, json=_answer(dict(r.url.params), people)[1])
    )
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-local", "p-words"]
    assert "GET searches (no batch)" in source.population_method


@respx.mock
async def test_a_text_prefix_failing_where_text_search_works_is_an_error_not_a_silent_gap():
    people = _people()

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        entries = []
        for url in urls:
            params = dict(parse_qsl(urlsplit(url).query))
            if params.get("code:text") == TEXT_PREFIXES[3]:
                entries.append({"response": {"status": "500 Internal Server Error"}})
            else:
                entries.append({"response": {"status": "200 OK"}, "resource": _answer(params, people)[1]})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    respx.post(BASE).mock(side_effect=answer)
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        with pytest.raises(FhirError, match=r"text search for the study's wording failed"):
            await source.population()


@respx.mock
async def test_every_page_of_a_batched_search_is_followed():
    people = _people()
    more = condition((SCT, "277575008"), subject="p-page-2")
    next_url = f"{BASE}?_getpages=abc&_getpagesoffset=1000"

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        entries = []
        for url in urls:
            params = dict(parse_qsl(urlsplit(url).query))
            body = _answer(params, people)[1]
            if "code" in params:
                body = _searchset(people["coded"], next_url=next_url)
            entries.append({"response": {"status": "200 OK"}, "resource": body})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    respx.post(BASE).mock(side_effect=answer)
    page2 = respx.get(url__startswith=f"{BASE}?_getpages=abc").mock(
        return_value=httpx.Response(200, json=_searchset(more))
    )
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-local", "p-page-2", "p-words"]
    assert page2.call_count == 1


@respx.mock
async def test_a_batch_answer_with_the_wrong_number_of_entries_is_an_error():
    respx.post(BASE).mock(
        return_value=httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": []}
        )
    )
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        with pytest.raises(FhirError, match="answered a batch of"):
            await source.population()


@respx.mock
async def test_a_code_search_answered_without_a_searchset_is_not_taken_as_nobody():
    people = _people()

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        entries = [{"response": {"status": "200 OK"}} for _ in urls]  # no resource at all
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    respx.post(BASE).mock(side_effect=answer)
    respx.get(f"{BASE}/Condition").mock(
        side_effect=lambda r: httpx.Response(200, json=_answer(dict(r.url.params), people)[1])
    )
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-local", "p-words"]  # asked again by GET
    assert "GET searches (no batch)" in source.population_method


def _records_server(people: dict[str, dict], seen: list[list[str]], *, has_works: bool) -> Any:
    """A server answering population searches, record searches by id or subject, and (or not) the
    same record searches selected by ``_has``."""
    patients = {c["subject"]["reference"].removeprefix("Patient/") for c in people.values()}
    coded = {"p-coded"}  # who has a Condition of the study's codes

    def answer(request: httpx.Request) -> httpx.Response:
        urls = [e["request"]["url"] for e in json.loads(request.content)["entry"]]
        seen.append(urls)
        entries = []
        for url in urls:
            rtype, params = url.split("?")[0], dict(parse_qsl(urlsplit(url).query))
            if any(k.startswith("_has") or "._has" in k for k in params):
                if not has_works:
                    entries.append({"response": {"status": "400 Bad Request"}})
                    continue
                found = (
                    [{"resourceType": "Patient", "id": p} for p in sorted(coded)]
                    if rtype == "Patient"
                    else []
                )
                entries.append({"response": {"status": "200 OK"}, "resource": _searchset(*found)})
            elif rtype == "Patient":
                ids = params["_id"].split(",")
                found = [{"resourceType": "Patient", "id": p} for p in sorted(patients & set(ids))]
                entries.append({"response": {"status": "200 OK"}, "resource": _searchset(*found)})
            elif rtype == "Condition" and "subject" not in params:
                status, body = _answer(params, people)
                entries.append({"response": {"status": f"{status} OK"}, "resource": body})
            else:
                entries.append({"response": {"status": "200 OK"}, "resource": _searchset()})
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        )

    return answer


@respx.mock
@pytest.mark.parametrize("has_works", [True, False], ids=["has", "no-has"])
async def test_population_and_records_in_one_batch_where_has_works_else_as_before(has_works):
    people, seen = _people(), []
    respx.post(BASE).mock(side_effect=_records_server(people, seen, has_works=has_works))
    respx.get(url__startswith=BASE).mock(return_value=httpx.Response(400))  # no date:missing: no windows
    async with FhirClient(BASE) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        population, records = await source.population_records()
        keys = sorted([r.key async for r in records])
    assert population == ["p-coded", "p-local", "p-words"]
    assert keys == ["Patient/p-coded", "Patient/p-local", "Patient/p-words"]  # the same patients either way
    fetched_by_id = [u for batch in seen for u in batch if u.startswith("Patient?_id=")]
    if has_works:  # p-coded came with the population; only the patients found by wording are asked by id
        assert "one batch request with the records (_has)" in source.population_method
        assert [unquote(u).split("_id=")[1].split("&")[0] for u in fetched_by_id] == ["p-local,p-words"]
    else:  # _has refused: the population again, then everyone's records by id
        assert "(_has)" not in source.population_method
        assert len(fetched_by_id) == 1 and "p-coded" in unquote(fetched_by_id[0])
