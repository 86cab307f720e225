"""The worker loop: a full screening, then incremental passes over what changed, flags written back.

- Several studies at once: each patient of the union of the studies' populations (each study's own
  concept sets) is fetched once and screened against every study; each study has its own Flagger, so a
  candidate gets one ResearchSubject (and Task, Provenance) per study; the state is kept per study.
- A full pass runs at start and whenever the date changes (results depend on the as-of date).
- An incremental pass asks, for the ALL population only, which patients' data changed since the
  checkpoint (minus an overlap, so nothing falls between two polls), plus new leukaemia Conditions,
  and re-screens just those patients. Cost grows with the ALL population, not the hospital.
- Subscription notifications queue patients for an immediate targeted pass; polling stays the net.
- The checkpoint advances only after a pass completed; a stop request (SIGTERM) finishes the current
  patient and leaves the checkpoint where it was, so the next start repeats the unfinished work.
- A server that stays down is reported in the status and retried next interval; the loop never exits
  or spins on it (except with ``once``, where the error is the exit status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from adapter.fault_points import crash_point
from adapter.fhir.client import FhirClient, FhirError
from adapter.fhir.search import any_of, escape, query
from adapter.flagging import Flagger
from adapter.pipeline import Pipeline
from adapter.screening.engine import Screener
from adapter.screening.results import PatientResult
from adapter.sources.server import PAGE_SIZE, ServerSource
from adapter.studies import served
from mappings.clinical.record import patients_in
from mappings.clinical.resource_types import SUBJECT_ELEMENT
from mappings.criteria import CriteriaDefinition

from .changes import FULL_PASS_STARTED
from .reviewed import reviewed_by
from .state import WorkerState, result_digest

log = logging.getLogger(__name__)

# The patient-pointing search parameter of each type whose changes can change a result.
CHANGE_PARAMETERS = {"Patient": "_id", **{t: e for t, e in SUBJECT_ELEMENT.items()}}


@dataclass
class WorkerConfig:
    interval: float = 300.0
    overlap: float = 300.0
    batch_size: int = 50
    once: bool = False


@dataclass
class WorkerStatus:
    state: str = "starting"
    passes: int = 0
    last_pass_started: str | None = None
    last_pass_finished: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    screened: int = 0
    errors: int = 0  # patients whose record could not be screened (status error), since start
    flag_writes: int = 0
    pending_notifications: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _now() -> datetime:
    return datetime.now(UTC)


class Worker:
    def __init__(
        self,
        client: FhirClient,
        definitions: CriteriaDefinition | Sequence[CriteriaDefinition],
        state: WorkerState,
        config: WorkerConfig | None = None,
        *,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.client = client
        self.definitions = served(definitions)
        self.definition = self.definitions[0]
        self.state = state
        self.config = config or WorkerConfig()
        self.today = today
        batch = self.config.batch_size
        # Each study's population by its own concept sets; the records once, with every study's codes.
        self.populations = [ServerSource(client, d, batch_size=batch) for d in self.definitions]
        self.source = ServerSource(client, self.definition, batch_size=batch, also_read=self.definitions[1:])
        self.flaggers = {d.study: Flagger(client, d.study) for d in self.definitions}
        self.status = WorkerStatus()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending: set[str] = set()

    # --- control ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        log.info("stop requested; finishing the current patient")
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def notify_patients(self, patients: Iterable[str]) -> None:
        """Queue patients (ids) for a prompt re-screen, e.g. from a subscription notification."""
        self._pending.update(patients)
        self.status.pending_notifications = len(self._pending)
        self._wake.set()

    def notify_change(self) -> None:
        """A change without a payload: run an incremental pass now."""
        self._wake.set()

    async def run(self) -> int:
        while not self.stopping:
            try:
                await self.run_pass()
                self.status.consecutive_failures = 0
                self.status.last_error = None
            except FhirError as exc:
                self.status.state = "error"
                self.status.last_error = str(exc)
                self.status.consecutive_failures += 1
                log.error(
                    "worker pass failed",
                    extra={"error": type(exc).__name__, "failures": self.status.consecutive_failures},
                )
                if self.config.once:
                    raise
            if self.config.once:
                break
            self.status.state = "idle" if self.status.last_error is None else "error"
            await self._sleep()
        self.status.state = "stopped"
        return 0

    async def _sleep(self) -> None:
        # A failing server is retried after the interval, not at once: wait, report, no spinning.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.config.interval)
        self._wake.clear()

    # --- passes -----------------------------------------------------------------------------------

    async def run_pass(self) -> None:
        as_of = self.today()
        started = _now()
        self.status.state = "screening"
        self.status.last_pass_started = started.isoformat()
        for flagger in self.flaggers.values():
            await flagger.prepare()
        checkpoint = self.state.checkpoint()
        served_now = ",".join(sorted(self.flaggers))
        # A study added (or removed) since the last full pass: its patients are screened today, not tomorrow.
        full = (
            checkpoint is None
            or self.state.get("full_pass_day") != as_of.isoformat()
            or self.state.get("full_pass_studies") != served_now
        )
        notified, self._pending = self._pending, set()
        self.status.pending_notifications = 0
        try:
            if full:
                found = await self.population()
                self.state.add_population(found)
                targets = self.state.population()
            else:
                assert checkpoint is not None
                targets = sorted(
                    await self.changed_patients(checkpoint - timedelta(seconds=self.config.overlap))
                    | notified
                )
            if full:
                self.state.put(FULL_PASS_STARTED, started.isoformat())  # "since" of the what-changed report
            log.info("worker pass", extra={"full": full, "patients": len(targets)})
            await self.screen_and_flag(targets, as_of)
        except BaseException:
            self._pending |= notified  # not lost: retried with the next pass
            raise
        if self.stopping:
            self._pending |= notified
            return  # unfinished: the checkpoint stays, the next start repeats this pass
        self.state.set_checkpoint(started)
        if full:
            self.state.put("full_pass_day", as_of.isoformat())
            self.state.put("full_pass_studies", served_now)
        self.status.passes += 1
        self.status.last_pass_finished = _now().isoformat()

    async def population(self, since: str | None = None) -> list[str]:
        """The union of the studies' populations (changed since ``since`` when given)."""
        found: set[str] = set()
        for source in self.populations:
            found.update(await source.population(since=since))
        return sorted(found)

    async def screen_and_flag(self, patient_ids: list[str], as_of: date) -> None:
        if not patient_ids:
            return
        pipelines = [(d.study, Pipeline(Screener(d, as_of))) for d in self.definitions]
        async for record in self.source.records(patient_ids):
            if self.stopping:
                return
            self.status.screened += 1
            for study, pipeline in pipelines:  # one fetch of the patient serves every study
                await self._flag(study, pipeline.screen(record), as_of)

    async def _flag(self, study: str, result: PatientResult, as_of: date) -> None:
        if result.status == "error":
            # Logged by the pipeline (ids only). Never flagged, and the flag stays as it was (an
            # unreadable record is no reason to withdraw one); the pass goes on and the checkpoint
            # advances, so the patient is screened again when their data changes.
            self.status.errors += 1
            return
        digest = result_digest(result, as_of.isoformat())
        if self.state.last_digest(study, result.patient) == digest:
            return  # same result as last time: no write
        flagger = self.flaggers[study]
        crash_point("worker-before-flag")
        outcome = await flagger.apply(result)
        crash_point("worker-after-flag-write")
        self.status.actions[outcome.action] = self.status.actions.get(outcome.action, 0) + 1
        if outcome.action not in ("unchanged", "not-flagged", "left-alone"):
            self.status.flag_writes += 1
        reviewed = None
        if outcome.action == "left-alone" and outcome.research_subject:
            reviewed = await reviewed_by(self.client, outcome.research_subject, flagger.device_ref)
        # Saved only after the flag is on the server: a crash in between repeats an idempotent flag.
        self.state.record(study, result, digest, outcome.action, _now(), reviewed)

    async def changed_patients(self, since: datetime) -> set[str]:
        """Population patients with any relevant change since ``since``, and new ALL patients."""
        stamp = since.astimezone(UTC).isoformat(timespec="seconds")
        touched: set[str] = set()
        # The same population search as a full pass (codes, local codes, ALL wording), since the stamp.
        newcomers = set(await self.population(since=stamp))
        if newcomers:
            self.state.add_population(newcomers)
            touched |= newcomers
        population = self.state.population()
        for start in range(0, len(population), self.config.batch_size):
            touched |= await self._changed_in_batch(population[start : start + self.config.batch_size], stamp)
        return touched

    async def _changed_in_batch(self, patients: list[str], stamp: str) -> set[str]:
        searches = []
        for resource_type, parameter in CHANGE_PARAMETERS.items():
            values = patients if parameter == "_id" else [f"Patient/{p}" for p in patients]
            element = "id" if parameter == "_id" else parameter
            searches.append(
                query(
                    resource_type,
                    [
                        (parameter, any_of(escape(v) for v in values)),
                        ("_lastUpdated", f"ge{stamp}"),
                        ("_elements", element),
                        ("_count", str(PAGE_SIZE)),
                    ],
                )
            )
        touched: set[str] = set()
        for resources in await self.client.batch_searches(searches):
            touched |= patients_in(resources)
        return touched
