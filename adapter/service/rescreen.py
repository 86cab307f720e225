"""Re-screening the patients pushed data touched: only those who can matter, many at once.

A patient can matter to the study when the server holds a Condition that might be a sign of the disease
(``PopulationSigns``, shared with the files path: ALL codes and their descendants, a site's local codes
through its ConceptMaps, the study's ALL wording, broader codes), or when the adapter has already flagged them (a
ResearchSubject with the adapter's identifier, whatever its status). Screening runs after the data is
forwarded, so a patient who enters the population through this very payload is found on the server.
Anyone else cannot be a candidate (no ALL record: the diagnosis criterion is not met) and has no flag to
withdraw, so they are not screened; the payload's result lists them as ``notScreened``.

Several studies at once: a patient matters when they matter to any served study (each study's own
population signs, or a flag of any study); their record is fetched once and screened against every study,
each with its own Flagger. A screened patient's outcome lists one entry per study
(``{patient, study, status, flag}``), so the payload's result shows the flags per study.

One round handles many patients: two searches per 50 patients decide who matters, the records come in
batches (``ServerSource.records``), and flags are written with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.fhir.search import any_of, query, references, token
from adapter.flagging import SUBJECT_SYSTEM, Flagger
from adapter.pipeline import Pipeline
from adapter.screening.engine import Screener
from adapter.screening.results import PatientResult
from adapter.sources.population import PopulationSigns
from adapter.sources.server import ServerSource
from adapter.studies import served
from mappings.clinical.record import PatientRecord
from mappings.criteria import CriteriaDefinition

log = logging.getLogger(__name__)

NOT_SCREENED = "not-screened"  # a touched patient outside the population and never flagged
SCREENED = "screened"  # screened against every study: ``studies`` holds one entry per study
_BATCH = 50
_FLAG_CONCURRENCY = 4


def _screen_all(
    pipelines: Sequence[tuple[str, Pipeline]], records: list[PatientRecord]
) -> list[tuple[str, str, PatientResult]]:
    """Each (patient, study)'s result with its "collect next" entries, as the worker's Task shows them;
    a record that cannot be screened is that patient's ``error`` (logged by the pipeline), not the round's."""
    # screen(), not run(): run() pauses the cyclic collector, which is process-wide (the event loop's too)
    return [
        (record.key.rsplit("/", 1)[-1], study, pipeline.screen(record))
        for record in records
        for study, pipeline in pipelines
    ]


class Rescreener:
    def __init__(
        self,
        client: FhirClient,
        definitions: CriteriaDefinition | Sequence[CriteriaDefinition],
        flaggers: Mapping[str, Flagger],
        today: Callable[[], date] = date.today,
    ) -> None:
        """``flaggers``: one per study, by study id."""
        self.client = client
        self.definitions = served(definitions)
        self.flaggers = flaggers
        self.today = today
        # One fetch per patient serves every study: the records carry every study's Observation codes.
        self.source = ServerSource(client, self.definitions[0], also_read=self.definitions[1:])
        self._signs = [PopulationSigns(d) for d in self.definitions]
        self.screened = 0
        self.skipped = 0
        self.errors = 0  # patients whose record could not be screened

    def in_population(self, condition: dict[str, Any]) -> bool:
        """A Condition that might be a sign of the disease: the files path's test (codes with the
        site's ConceptMaps, lineage extensions, the study's wording, broader codes, malformed data), for
        any served study."""
        return any(signs.is_sign(condition) for signs in self._signs)

    def _subject_values(self, patient: str) -> list[str]:
        return [f"{d.study}/{patient}" for d in self.definitions]  # as Flagger.subject_identifier writes it

    async def who_matters(self, patients: list[str]) -> set[str]:
        """The patients (server ids) in the population or already flagged."""
        out: set[str] = set()
        for start in range(0, len(patients), _BATCH):
            batch = patients[start : start + _BATCH]
            values = {value: p for p in batch for value in self._subject_values(p)}
            conditions, subjects = await self.client.batch_searches(
                [
                    query(
                        "Condition",
                        [
                            ("subject", references("Patient", batch)),
                            ("_elements", "code,extension,subject"),
                            ("_count", "1000"),
                        ],
                    ),
                    query(
                        "ResearchSubject",
                        [
                            ("identifier", any_of(token(SUBJECT_SYSTEM, v) for v in values)),
                            ("_elements", "identifier"),
                            ("_count", "1000"),
                        ],
                    ),
                ]
            )
            for condition in conditions:
                ref = str((condition.get("subject") or {}).get("reference") or "")
                pid = ref.split("/_history")[0].rsplit("/", 1)[-1]
                if pid in batch and self.in_population(condition):
                    out.add(pid)
            for subject in subjects:
                for identifier in subject.get("identifier") or ():
                    if identifier.get("system") == SUBJECT_SYSTEM and identifier.get("value") in values:
                        out.add(values[identifier["value"]])
        return out

    async def run(self, patients: list[str]) -> dict[str, dict[str, Any] | BaseException]:
        """Each patient's outcome: ``{patient, status, flag}``, ``{patient, status: not-screened}``, or
        the error that stopped it (its payloads are retried)."""
        matter = await self.who_matters(patients)
        out: dict[str, dict[str, Any] | BaseException] = {
            p: {"patient": f"Patient/{p}", "status": NOT_SCREENED} for p in patients if p not in matter
        }
        self.skipped += len(out)
        if not matter:
            return out
        for flagger in self.flaggers.values():
            await flagger.prepare()
        records = [record async for record in self.source.records(sorted(matter))]
        # One thread, one record after another: the engine and its models are not shared across threads.
        today = self.today()
        pipelines = [(d.study, Pipeline(Screener(d, today))) for d in self.definitions]
        results = await asyncio.to_thread(_screen_all, pipelines, records)
        slots = asyncio.Semaphore(_FLAG_CONCURRENCY)
        per_study: dict[str, list[dict[str, Any]]] = {}
        failed: dict[str, BaseException] = {}

        async def flag(pid: str, study: str, result: PatientResult) -> None:
            entry: dict[str, Any] = {"patient": result.patient, "study": study, "status": result.status}
            if result.status == "error":  # never flagged, the flag left as it was; the payload is done
                per_study.setdefault(pid, []).append(entry | {"reason": result.reason})
                self.errors += 1
                return
            try:
                async with slots:
                    outcome = await self.flaggers[study].apply(result)
                per_study.setdefault(pid, []).append(entry | {"flag": outcome.action})
                self.screened += 1
            except Exception as exc:  # this patient's payloads are retried; the others go on
                failed[pid] = exc

        await asyncio.gather(*(flag(pid, study, result) for pid, study, result in results))
        order = {d.study: n for n, d in enumerate(self.definitions)}
        for pid, entries in per_study.items():
            entries.sort(key=lambda e: order[e["study"]])
            out[pid] = {"patient": f"Patient/{pid}", "status": SCREENED, "studies": entries}
        out.update(failed)  # one study's flag failed: the patient's payloads are retried (flags idempotent)
        for pid in matter - out.keys():  # not on the server (deleted since): nothing to screen
            out[pid] = {"patient": f"Patient/{pid}", "status": NOT_SCREENED}
        log.info(
            "patients re-screened",
            extra={"screened": len(matter), "skipped": len(patients) - len(matter), "round": len(patients)},
        )
        return out
