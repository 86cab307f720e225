"""Patient data from a FHIR server, fetched so that cost grows with the ALL population only.

1. Population: Condition search on the criteria's leukaemia codes (``_elements=subject``), server-side.
   Nothing else filters patients: a T-ALL patient without a birth date is still screened.
2. Per batch of patients, one batch Bundle of searches (Patient by _id; Conditions, Procedures,
   medications with their Medication, Immunizations by subject; Observations by subject AND the codes
   the criteria read, so a hospital's vital signs are never downloaded). Every page is followed and
   included resources are kept. Batches run with bounded concurrency over one connection pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from adapter.fhir.client import FhirClient
from adapter.fhir.search import any_of, escape, query, token
from adapter.screening.record import PatientRecord, RecordBuilder, patients_in
from mappings.criteria import CriteriaDefinition

log = logging.getLogger(__name__)

PAGE_SIZE = 1000


def observation_tokens(definition: CriteriaDefinition) -> list[str]:
    """Every Observation code any criterion reads, as search tokens."""
    return [token(c.system, c.code) for c in definition.observation_codes()]


def population_tokens(definition: CriteriaDefinition) -> list[str]:
    codes = (c for concept in definition.population_concepts() for c in concept.codes)
    return list(dict.fromkeys(token(c.system, c.code) for c in codes))


class ServerSource:
    def __init__(
        self,
        client: FhirClient,
        definition: CriteriaDefinition,
        *,
        batch_size: int = 50,
        concurrency: int = 4,
    ) -> None:
        self.client = client
        self.definition = definition
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._observation_codes = any_of(observation_tokens(definition))

    async def population(self) -> list[str]:
        """Patient ids with any leukaemia Condition on the server, in first-seen order."""
        params = [
            ("code", any_of(population_tokens(self.definition))),
            ("_elements", "subject"),
            ("_count", str(PAGE_SIZE)),
        ]
        ids = patients_in(await self.client.search_resources("Condition", params))
        log.info("screening population found", extra={"patients": len(ids)})
        return sorted(ids)

    def _batch_requests(self, patient_ids: list[str]) -> list[str]:
        subjects = any_of(escape(f"Patient/{pid}") for pid in patient_ids)
        count = ("_count", str(PAGE_SIZE))
        return [
            query("Patient", [("_id", any_of(escape(pid) for pid in patient_ids)), count]),
            query("Condition", [("subject", subjects), count]),
            query("Observation", [("subject", subjects), ("code", self._observation_codes), count]),
            query("Procedure", [("subject", subjects), count]),
            query(
                "MedicationRequest",
                [("subject", subjects), ("_include", "MedicationRequest:medication"), count],
            ),
            query(
                "MedicationStatement",
                [("subject", subjects), ("_include", "MedicationStatement:medication"), count],
            ),
            query("Immunization", [("patient", subjects), count]),
        ]

    async def _fetch_batch(self, patient_ids: list[str]) -> RecordBuilder:
        builder = RecordBuilder()
        for resources in await self.client.batch_searches(self._batch_requests(patient_ids)):
            builder.add_all(resources)
        return builder

    async def records(self, patient_ids: Iterable[str]) -> AsyncIterator[PatientRecord]:
        """Records for these patients, batch by batch (bounded concurrency, order of completion)."""
        ids = list(dict.fromkeys(patient_ids))
        batches = [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def run(batch: list[str]) -> RecordBuilder:
            async with semaphore:
                return await self._fetch_batch(batch)

        tasks = [asyncio.create_task(run(batch)) for batch in batches]
        try:
            for finished in asyncio.as_completed(tasks):
                builder = await finished
                for record in builder.records():
                    yield record
        finally:
            for task in tasks:
                task.cancel()

    async def all_records(self) -> AsyncIterator[PatientRecord]:
        async for record in self.records(await self.population()):
            yield record
