"""Issue 18 against HAPI: the population search in one batch request finds exactly whom the GET
searches find, including a T-ALL recorded in words only and one under a local code (found by its
display through ``:text``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from adapter.fhir.client import FhirClient
from adapter.sources.server import ServerSource, text_prefixes
from mappings.criteria import load_criteria
from tests.support.patients import LOCAL_DX, put_transaction, recoded

CRITERIA_PATH = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
TEXT_PREFIXES = text_prefixes(load_criteria(CRITERIA_PATH))  # the study's population.text_search


def test_one_batch_request_finds_the_same_population_as_the_get_searches(hapi_url):
    run = uuid.uuid4().hex[:8]
    words, local = f"pop-words-{run}", f"pop-local-{run}"
    resources = recoded(
        words, [{"text": "Relapsed T-cell acute lymphoblastic leukaemia"}, {"text": "ALL, second relapse"}]
    ) + recoded(
        local,
        [
            {"coding": [{"system": LOCAL_DX, "code": "TALL", "display": "T-ALL"}]},
            {"coding": [{"system": LOCAL_DX, "code": "REL", "display": "ALL relapse"}]},
        ],
    )
    definition = load_criteria(CRITERIA_PATH)

    async def go() -> tuple[list[str], int, str, list[str], int, str]:
        async with FhirClient(hapi_url) as client:
            await client.transaction(put_transaction(resources), idempotent=True)
            batched = ServerSource(client, definition)
            before = client.requests_sent
            one = await batched.population()
            one_requests = client.requests_sent - before
            by_get = ServerSource(client, definition)
            by_get._batch_population = False  # what a server refusing batches gets
            before = client.requests_sent
            many = await by_get.population()
            return (
                one,
                one_requests,
                batched.population_method,
                many,
                client.requests_sent - before,
                by_get.population_method,
            )

    one, one_requests, one_method, many, many_requests, many_method = asyncio.run(go())
    assert {words, local} <= set(one)
    assert one == many
    assert one_requests == 1 and "one batch request" in one_method
    assert "text search for ALL wording" in one_method and "text search for ALL wording" in many_method
    assert many_requests == 1 + 1 + len(TEXT_PREFIXES) + 1  # code chunk, probe, each prefix, missing
