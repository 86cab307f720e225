"""The screening pipeline: records -> Screener -> results, with the one guard every entry point shares.

Every way of screening (files, an export's worker processes, a server, the worker, pushed data,
``$screen`` and the matching protocols, the benchmarks) sends its records through ``Pipeline``. A record
that cannot be screened (a shape the engine did not expect, or a bug) becomes that patient's result
with status ``error`` and a reason naming the resource and its FHIR problem; it is logged with ids only,
and the run goes on. An error is never a candidate and is never flagged.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path

from adapter.collector import collector_paused
from adapter.fhir.parsing import fhir_problem
from adapter.screening.engine import Screener
from adapter.screening.resolve import with_resolve
from adapter.screening.results import PatientResult
from adapter.screening.unmapped import UnmappedCollector
from mappings.clinical.record import PatientRecord, resource_key

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def diagnose(record: PatientRecord, error: BaseException) -> tuple[str, str | None]:
    """Why a record broke the engine: the first resource that is not valid FHIR R4 and its problem
    (``Condition/c1: Condition.clinicalStatus: ...``), else the error's type. Also the resource's key.

    The engine reads defensively (a value of the wrong type gives ``unknown``), so a failure means
    malformed data or a bug: only then is every resource of the record validated."""
    for resource in (record.patient, *(r for items in record.resources.values() for r in items)):
        try:
            problem = fhir_problem(resource)
        except Exception:  # not even a resource (no resourceType): named below by the record
            problem = "not a FHIR resource"
        if problem:
            where = resource_key(resource) or str(resource.get("resourceType") or "resource")
            return f"{where}: {problem}", where
    return f"cannot screen {record.key}: unexpected data ({type(error).__name__})", None


def _origin(error: BaseException) -> str:
    """Where in the code the error was raised (file:line), for a bug report; never a value."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def screen_guarded(screener: Screener, record: PatientRecord) -> PatientResult:
    """The record's result with ``resolve`` on every unknown; an ``error`` result if it cannot be screened."""
    try:
        return with_resolve(screener, record, screener.screen(record))
    except Exception as exc:
        reason, where = diagnose(record, exc)
        log.warning(
            "patient could not be screened",
            extra={
                "patient": record.key,
                "resource": where,
                "error": type(exc).__name__,
                "origin": _origin(exc),
            },
        )
        return PatientResult.error(record.key, reason)


class Pipeline:
    """Records through one Screener, each guarded; the unmapped collector and progress see every one.

    ``run`` takes a plain iterable, ``run_async`` and ``results`` an async one (a server's batches)."""

    def __init__(
        self,
        screener: Screener,
        *,
        unmapped: UnmappedCollector | None = None,
        progress: Progress | None = None,
        total: int = 0,
    ) -> None:
        self.screener = screener
        self.unmapped = unmapped
        self.progress = progress
        self.total = total
        self.screened = 0
        self.errors = 0

    def screen(self, record: PatientRecord) -> PatientResult:
        result = screen_guarded(self.screener, record)
        self.screened += 1
        if result.status == "error":
            self.errors += 1
        elif self.unmapped is not None:
            self.unmapped.add(record)  # terminology gaps of records the engine could read
        if self.progress:
            self.progress(self.screened, self.total)
        return result

    def run(self, records: Iterable[PatientRecord]) -> list[PatientResult]:
        with collector_paused():
            return [self.screen(record) for record in records]

    async def results(self, records: AsyncIterable[PatientRecord]) -> AsyncIterator[PatientResult]:
        async for record in records:
            yield self.screen(record)

    async def run_async(self, records: AsyncIterable[PatientRecord]) -> list[PatientResult]:
        return [result async for result in self.results(records)]
