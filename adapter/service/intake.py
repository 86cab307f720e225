"""The CPU work of a request (parsing, validation, authority checks, $screen), off the event loop.

It runs in a small pool of worker processes (``cpu_workers``; 0: one thread, for tests and tiny
deployments), so the event loop keeps answering ``/healthz`` and small requests while 20 MB Bundles are
parsed. Processes, not threads: validating a large Bundle holds the GIL for seconds, and with threads the
event loop waits for it. Only bytes go in and small results come out. Concurrency is bounded by the
pool's size; callers wait their turn (``CpuPool.run``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from adapter.pipeline import Pipeline
from adapter.screening.engine import Screener
from adapter.screening.results import PatientResult
from adapter.screening.run import report_for
from adapter.screening.unmapped import UnmappedCollector
from adapter.sources.files import bundle_entries
from adapter.studies import served
from mappings.clinical.record import RecordBuilder
from mappings.criteria import CriteriaDefinition
from mappings.study import study_dir

from .checks import InputError, check_bundle, check_resource, parse_json
from .forward import canonical, check_authority, content_hash
from .meta import screening_parameters
from .sources import Source

T = TypeVar("T")
_definitions: tuple[CriteriaDefinition, ...] = ()
_study_files: dict[str, Path] = {}


def _init(
    definitions: tuple[CriteriaDefinition, ...], study_files: dict[str, Path], parent: int | None = None
) -> None:
    global _definitions, _study_files
    _definitions, _study_files = definitions, study_files
    if parent is not None:  # a worker process: it must not outlive the service (e.g. after kill -9)
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


@dataclass(frozen=True)
class Checked:
    """A payload fit to accept: its content hash, the Bundle.identifier key, and the body to store
    (None: the body as received)."""

    content_hash: str
    bundle_key: str | None
    body: bytes | None = None


def check_push(
    body: bytes,
    max_entries: int,
    source: Source,
    resource_type: str | None = None,
    resource_id: str | None = None,
) -> Checked:
    """A pushed Bundle (``resource_type`` None) or one resource (``POST/PUT /fhir/{type}[/{id}]``)."""
    data = parse_json(body)
    stored = None
    if resource_type is not None:
        resource = check_resource(data)
        if resource["resourceType"] != resource_type:
            raise InputError(
                400,
                "invalid",
                f"resourceType {resource['resourceType']} does not match the URL ({resource_type})",
            )
        entry: dict[str, Any] = {"resource": resource}
        if resource_id is not None:
            if resource.get("id") != resource_id:
                raise InputError(400, "invalid", "the resource's id must match the id in the URL")
            entry["request"] = {"method": "PUT", "url": f"{resource_type}/{resource_id}"}
        kind = "transaction" if resource_id is not None else "collection"
        data = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        stored = canonical(data).encode()
    bundle = check_bundle(data, max_entries)
    check_authority(bundle, source)
    identifier = bundle.get("identifier") or {}
    key = f"{identifier.get('system', '')}|{identifier['value']}" if identifier.get("value") else None
    return Checked(content_hash(bundle), key, stored)


def worker_definitions() -> tuple[CriteriaDefinition, ...]:
    """The served studies' criteria definitions in this worker (process or thread) of the pool."""
    assert _definitions, "the CPU pool was not initialised"
    return _definitions


def worker_study_file(study: str) -> Path:
    """A served study's registry record (``study.json``): as given, else its installed folder's."""
    return _study_files.get(study) or study_dir(study) / "study.json"


def screen_bundle(
    data: Any, max_entries: int, as_of: date, operation: str = "$screen"
) -> list[tuple[CriteriaDefinition, PatientResult]]:
    """One patient's Bundle (parsed JSON), checked and screened for every served study (in the order
    served): what the matching protocols (matching.py) answer from. Raises InputError for anything but
    exactly one Patient."""
    definitions = worker_definitions()
    return list(zip(definitions, _screen_one(data, max_entries, as_of, operation, definitions), strict=True))


def _screen_one(
    data: Any,
    max_entries: int,
    as_of: date,
    operation: str,
    definitions: tuple[CriteriaDefinition, ...],
    unmapped: list[UnmappedCollector] | None = None,
) -> list[PatientResult]:
    """The patient's result for each study, through the pipeline: a record that cannot be screened is
    an ``error`` result, not a 500. The Bundle is checked and read once for every study."""
    bundle = check_bundle(data, max_entries)
    builder = RecordBuilder()
    for resource, full_url in bundle_entries(bundle, "Bundle"):
        builder.add(resource, full_url)
    records = list(builder.records())
    if len(records) != 1:
        raise InputError(
            422, "invalid", f"{operation} needs exactly one Patient in the Bundle, found {len(records)}"
        )
    collectors: list[UnmappedCollector | None] = list(unmapped) if unmapped else [None] * len(definitions)
    return [
        Pipeline(Screener(definition, as_of), unmapped=collector).screen(records[0])
        for definition, collector in zip(definitions, collectors, strict=True)
    ]


def screen_body(body: bytes, max_entries: int, as_of: date, as_json: bool) -> dict[str, Any]:
    """$screen's answer. One served study: its report (JSON) or Parameters, as ever. Several: one per
    study, in the order served (``{"studies": [report, ...]}``, or a ``study`` parameter each, whose parts
    are the study's ``id`` and its Parameters)."""
    definitions = worker_definitions()
    unmapped = [UnmappedCollector(d) for d in definitions] if as_json else None
    results = _screen_one(parse_json(body), max_entries, as_of, "$screen", definitions, unmapped)
    if as_json:  # the same report as the CLI's, terminology gaps included
        reports = [
            report_for(d, as_of, [r], u).to_json_dict()
            for d, r, u in zip(definitions, results, unmapped or (), strict=True)
        ]
        return reports[0] if len(reports) == 1 else {"studies": reports}
    answers = [_parameters(result, as_of) for result in results]
    if len(answers) == 1:
        return answers[0]
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "study", "part": [{"name": "id", "valueString": d.study}, *a["parameter"]]}
            for d, a in zip(definitions, answers, strict=True)
        ],
    }


def _parameters(result: PatientResult, as_of: date) -> dict[str, Any]:
    parameters = screening_parameters(result, as_of)
    if result.reason:  # an ``error``: the record could not be screened, and why
        parameters["parameter"].append({"name": "reason", "valueString": result.reason})
    return parameters


def _warm() -> bool:
    check_resource({"resourceType": "Patient"})  # imports the models before the first real request
    return True


class CpuPool:
    def __init__(
        self,
        definitions: CriteriaDefinition | Sequence[CriteriaDefinition],
        workers: int,
        study_files: Mapping[str, Path] | None = None,
    ) -> None:
        """``study_files``: each study's registry record by study id, where it is not installed."""
        self.definitions = served(definitions)
        self.study_files = dict(study_files or {})
        self.workers = workers
        self._executor = self._new()
        self._slots = asyncio.Semaphore(max(1, workers))

    def _new(self) -> Executor:
        if self.workers <= 0:
            _init(self.definitions, self.study_files)
            return ThreadPoolExecutor(1, thread_name_prefix="cpu")
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with threads
            initializer=_init,
            initargs=(self.definitions, self.study_files, os.getpid()),
        )

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        async with self._slots:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor, function, *args)
            except BrokenProcessPool:  # a worker died (e.g. killed for memory): a fresh pool, once
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new()
                return await loop.run_in_executor(self._executor, function, *args)

    async def warm(self) -> None:
        await asyncio.gather(*(self.run(_warm) for _ in range(max(1, self.workers))))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
