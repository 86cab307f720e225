"""Batched forwards (respx: a server refusing one payload of a batch, or failing a batch, on cue):
each payload keeps its all-or-nothing, a bad one fails alone, a committed one is never sent again."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest
import respx

from adapter.fhir.client import FhirClient, FhirHttpError, RetryPolicy
from adapter.service.forward import plan_forward
from adapter.service.sender import Outgoing, Sender, batchable
from adapter.service.sources import Source
from tests.support.patients import candidate_on_server

BASE = "https://fhir.example.test/fhir"
SOURCE = Source("lab", frozenset({"urn:mrn"}))


def outgoing(n: int) -> Outgoing:
    resources = candidate_on_server(f"p{n}", date.today())
    resources[0]["identifier"] = [{"system": "urn:mrn", "value": f"m{n}"}]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    plan = plan_forward(bundle, SOURCE, f"item-{n}", "2026-11-26T00:00:00+00:00")
    assert batchable(plan)
    return Outgoing(plan.chunks[0], SOURCE, {})


def answer(entries: list[dict]) -> dict:
    out = []
    for n, entry in enumerate(entries):
        rtype = entry["resource"]["resourceType"]
        out.append({"response": {"status": "201 Created", "location": f"{rtype}/{n}/_history/1"}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}


class Server:
    """Transactions as a server sees them; refuses any that contains ``bad`` (a marker)."""

    def __init__(self, bad: str | None = None, status: int = 400, committed: tuple[str, ...] = ()) -> None:
        self.bad = bad
        self.status = status
        self.committed = committed
        self.transactions: list[list[str]] = []  # the markers of each transaction sent

    def provenance(self, request: httpx.Request) -> httpx.Response:
        wanted = request.url.params["_id"].split(",")
        found = [
            {"resource": {"resourceType": "Provenance", "id": m, "target": [{"reference": "Patient/1"}]}}
            for m in wanted
            if m in self.committed
        ]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": found})

    def transaction(self, request: httpx.Request) -> httpx.Response:
        entries = json.loads(request.content)["entry"]
        markers = [e["resource"]["id"] for e in entries if e["resource"]["resourceType"] == "Provenance"]
        self.transactions.append(markers)
        if self.bad in markers:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing"}],
            }
            return httpx.Response(self.status, json=outcome)
        return httpx.Response(200, json=answer(entries))

    def mount(self) -> None:
        respx.get(f"{BASE}/Provenance").mock(side_effect=self.provenance)
        respx.get(url__regex=rf"{BASE}/Provenance/.*").mock(return_value=httpx.Response(404))
        respx.post(BASE).mock(side_effect=self.transaction)


@pytest.fixture
async def sender():
    async with FhirClient(BASE, retry=RetryPolicy(attempts=1)) as client:
        yield Sender(client)


@respx.mock
async def test_small_payloads_go_in_one_transaction_and_each_gets_its_own_locations(sender):
    server = Server()
    server.mount()
    items = [outgoing(n) for n in range(3)]
    results = await sender.send_batch(items)
    assert server.transactions == [[i.chunk.marker for i in items]]  # one transaction, every Provenance
    for item, result in zip(items, results, strict=True):
        assert isinstance(result, dict) and set(result) == set(item.chunk.urns)
    assert sender.batched == 3


@respx.mock
async def test_a_batch_the_server_refuses_is_sent_again_payload_by_payload_so_only_the_bad_one_fails(sender):
    items = [outgoing(n) for n in range(3)]
    server = Server(bad=items[1].chunk.marker, status=422)
    server.mount()
    results = await sender.send_batch(items)
    assert isinstance(results[1], FhirHttpError) and results[1].status == 422
    assert isinstance(results[0], dict) and isinstance(results[2], dict)
    assert server.transactions[1:] == [[i.chunk.marker] for i in items]  # the batch, then each alone


@respx.mock
async def test_a_transient_failure_of_a_batch_is_every_payloads_and_nothing_is_resent_at_once(sender):
    items = [outgoing(n) for n in range(3)]
    server = Server(bad=items[0].chunk.marker, status=500)
    server.mount()
    results = await sender.send_batch(items)
    assert all(isinstance(r, FhirHttpError) and r.status == 500 for r in results)
    assert len(server.transactions) == 1  # retried later, after the breaker's probe and the markers


@respx.mock
async def test_a_payload_whose_provenance_exists_committed_before_and_is_not_sent_again(sender):
    items = [outgoing(n) for n in range(3)]
    server = Server(committed=(items[0].chunk.marker,))
    server.mount()
    results = await sender.send_batch(items)
    assert server.transactions == [[items[1].chunk.marker, items[2].chunk.marker]]
    assert all(isinstance(r, dict) for r in results)


@respx.mock
async def test_two_payloads_writing_the_same_resource_are_never_in_one_transaction(sender):
    server = Server()
    server.mount()
    first = outgoing(1)
    again = outgoing(1)  # the same patient's record, again (another payload)
    again.chunk.marker = "other-marker"
    again.chunk.bundle["entry"][-1]["resource"]["id"] = "other-marker"
    results = await sender.send_batch([first, again])
    assert server.transactions == [[first.chunk.marker], ["other-marker"]]
    assert all(isinstance(r, dict) for r in results)
