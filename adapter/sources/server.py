"""Patient data from a FHIR server, fetched so that cost grows with the study population only.

1. Population: Condition searches on the study's population codes (criteria.yaml ``population``) and
   its wording, all in one batch Bundle (GET searches for servers refusing it), server-side.
   Nothing else filters patients: a patient with the disease but no birth date is still screened.
2. Per batch of patients, one batch Bundle of searches (Patient by _id; Conditions, Procedures,
   medications with their Medication, Immunizations by subject; Observations by subject AND the codes
   the criteria read, so a hospital's vital signs are never downloaded). Every page is followed and
   included resources are kept. Batches run with bounded concurrency over one connection pool.
3. ``population_records`` (a whole screening run): where the server answers ``_has``, steps 1 and 2
   travel together in ONE batch Bundle, the records selected server-side by the population's codes;
   only patients found by wording alone are then fetched as in step 2.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from adapter.fhir.client import FhirClient, FhirError
from adapter.fhir.post_search import batch_entries, refused
from adapter.fhir.search import any_of, escape, query, references, token
from adapter.screening.reads import codes_by_widest_window, observation_reads
from mappings.clinical.dates import effective_day
from mappings.clinical.record import (
    PatientRecord,
    RecordBuilder,
    normalise_reference,
    patients_in,
    resource_key,
)
from mappings.clinical.resource_types import READ_TYPES
from mappings.criteria import CriteriaDefinition
from mappings.kinds.diagnosis import DiagnosisSigns
from mappings.kinds.observation import IGNORED_OBSERVATION

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
URL_BUDGET = 1500  # characters of search values per request: long code lists are split into chunks


BATCH_URL_BUDGET = 16_000  # inside a batch body the searches are not URLs a proxy cuts
# A nonsense word: a server that really applies ``:text`` finds nothing; one that drops it finds all.
TEXT_PROBE = query("Condition", [("code:text", "zq-no-such-words-xq"), ("_summary", "count")])
# Patients with a Condition of the listed codes, selected by the server (reverse chaining).
HAS_CONDITION = "_has:Condition:subject:code"


def text_prefixes(definition: CriteriaDefinition) -> tuple[str, ...]:
    """How the disease's wording begins, for ``:text`` searches: the study's ``population.text_search``."""
    return tuple(definition.population.text_search)


@dataclass
class _Found:
    """Patients found by code, by ``:text`` (None: no text search) and among uncoded Conditions
    (None: no ``:missing`` search), and how they were asked for."""

    by_code: set[str]
    by_text: set[str] | None
    uncoded: set[str] | None
    how: str
    records: RecordBuilder | None = None  # the records of ``by_code``, when asked with them (``_has``)


def observation_tokens(definition: CriteriaDefinition) -> list[str]:
    """Every Observation code any criterion reads (and local codes mapped to one), as search tokens."""
    codes = [(c.system, c.code) for c in definition.observation_codes()]
    codes += definition.concept_maps.sources_for(codes)
    return [token(system, code) for system, code in dict.fromkeys(codes)]


def window_start(as_of: date, window_days: int) -> date:
    """The first day a ``date=ge`` search asks for: the window's first day, one day early, because a
    server compares instants (in UTC or its own zone) and the engine the day written in the result."""
    return as_of - timedelta(days=window_days + 1)


def _key(resource: dict[str, Any]) -> str:
    return resource_key(resource) or str(id(resource))


def population_codes(definition: CriteriaDefinition) -> list[tuple[str, str]]:
    """The full expansion of the diagnosis concept sets (roots with every known descendant), plus the
    site's local codes its ConceptMaps translate to any of them."""
    codes = [code for concept in definition.population_concepts() for code in concept.expansion()]
    codes += definition.concept_maps.sources_for(codes)
    return list(dict.fromkeys(codes))


def population_tokens(definition: CriteriaDefinition) -> list[str]:
    return [token(system, code) for system, code in population_codes(definition)]


def chunks(tokens: list[str], budget: int = URL_BUDGET) -> list[str]:
    """OR-lists of tokens, each short enough for a GET URL (servers cut URLs at a few kilobytes)."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for item in tokens:
        if current and size + len(item) + 1 > budget:
            out.append(any_of(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(any_of(current))
    return out


class ServerSource:
    def __init__(
        self,
        client: FhirClient,
        definition: CriteriaDefinition,
        *,
        batch_size: int = 50,
        concurrency: int = 4,
        also_read: Sequence[CriteriaDefinition] = (),
        as_of: date | None = None,
    ) -> None:
        """``also_read``: other studies whose Observation codes the records carry too, so that one
        fetch of a patient's data serves every study a worker or the service screens for.
        ``as_of``: screening day; with it, Observations are asked within each criterion's window."""
        self.client = client
        self.as_of = as_of
        self.definition = definition
        self.batch_size = batch_size
        self.concurrency = concurrency
        tokens = [t for d in (definition, *also_read) for t in observation_tokens(d)]
        self._observation_codes = any_of(dict.fromkeys(tokens))
        self._text_probe: bool | None = None
        self._batch_population: bool | None = None  # learnt on the first population search
        self._missing_probe: bool | None = None
        self._has_works: bool | None = None  # learnt on the first population_records
        self._probing = asyncio.Lock()
        self._reads = [r for d in (definition, *also_read) for r in observation_reads(d)]
        self._code_windows = codes_by_widest_window(self._reads)
        self._signs = DiagnosisSigns(definition)
        self.population_method = "not searched yet"

    async def population(self, since: str | None = None) -> list[str]:
        """Patient ids with any Condition of the disease on the server (changed since ``since`` when given).

        1. By code: the full expansion of the diagnosis sets and the site's mapped local codes.
        2. By words, where the server proves it can: token ``:text`` searches (FHIR: the text or a
           display starts with the value) for the ways the disease's wording begins (the study's
           ``population.text_search``), and ``:missing`` for Conditions with no coding at all. Their
           text is read here against the criteria's wording, so a loose server answer never adds a
           patient without that wording.
        All of it travels as ONE batch Bundle (the searches in its body, so no URL limit); a server or
        proxy refusing that is asked with GETs instead (code chunks, probe, one GET per prefix), and
        remembered. ``population_method`` says how the patients were found."""
        tokens = population_tokens(self.definition)
        extra = [("_lastUpdated", f"ge{since}")] if since else []
        found: _Found | None = None
        if self._batch_population is not False:
            found = await self._population_in_one_batch(tokens, extra)
            self._batch_population = found is not None
        if found is None:
            found = await self._population_by_get(tokens, extra)
        return self._found(found, tokens)

    async def population_records(self) -> tuple[list[str], AsyncIterator[PatientRecord]]:
        """The population and its records in as few round trips as the server allows.

        Where the server answers ``_has`` (HAPI does; many EHR servers do not), ONE batch Bundle holds
        the population's wording searches and its records selected server-side by code
        (``Patient?_has:Condition:subject:code=...``, ``Observation?subject:Patient._has:...``): the
        population by code is the Patients it returns, and only patients found by wording alone are
        fetched by id afterwards. Anywhere else (or a code list too long for one search): ``population``
        then ``records``. The same patients and the same records either way."""
        tokens = population_tokens(self.definition)
        codes = chunks(tokens, BATCH_URL_BUDGET)
        if self._has_works is not False and self._batch_population is not False and len(codes) == 1:
            by_has = await self._population_in_one_batch(tokens, [], has=codes[0])
            self._has_works = by_has is not None
            if by_has is not None:
                ids = self._found(by_has, tokens)
                builder = by_has.records or RecordBuilder()
                fetched = {key.removeprefix("Patient/") for key in builder.patient_keys()}
                others = [pid for pid in ids if pid not in fetched]
                return ids, self._and_records(builder, others)
        ids = await self.population()
        return ids, self.records(ids)

    async def _and_records(self, builder: RecordBuilder, others: list[str]) -> AsyncIterator[PatientRecord]:
        for record in builder.records():
            yield record
        async for record in self.records(others):
            yield record

    def _found(self, found: _Found, tokens: list[str]) -> list[str]:
        ids = found.by_code | (found.by_text or set()) | (found.uncoded or set())
        disease = self.definition.diagnosis_clause().wording.disease  # "ALL": the study's own word
        notes = [f"Condition search on {len(tokens)} {disease} codes (expansion and mapped local codes)"]
        if not text_prefixes(self.definition):
            notes.append("no text search configured (population.text_search)")
        elif found.by_text is not None:
            notes.append(f"text search for {disease} wording")
        else:
            notes.append(
                f"no text search on this server: local codes with {disease} only in a display are not found"
            )
        if found.uncoded is None:
            notes.append("no missing-code search: Conditions with only text are not found")
        else:
            notes.append(f"Conditions with only text read for {disease} wording")
        notes.append(f"{len(ids) - len(found.by_code)} patients found by wording only")
        notes.append(found.how)
        self.population_method = "; ".join(notes)
        log.info(
            "screening population found",
            extra={"patients": len(ids), "by_code": len(found.by_code), "method": self.population_method},
        )
        return sorted(ids)

    async def _population_in_one_batch(
        self, tokens: list[str], extra: list[tuple[str, str]], has: str | None = None
    ) -> _Found | None:
        """Every population search in one batch Bundle; None when the server refuses batches (or any
        code search in it: the GET path then asks again and raises the server's own error).
        ``has``: the code list; the code search is then the population's records selected by ``_has``
        (None also when the server does not answer those)."""
        code_searches = [
            query(
                "Condition", [("code", chunk), *extra, ("_elements", "subject"), ("_count", str(PAGE_SIZE))]
            )
            for chunk in chunks(tokens, BATCH_URL_BUDGET)
        ]
        as_of = self.as_of if has is not None and await self._windows() else None
        if has is not None:
            code_searches = self._batch_requests(None, as_of, undated=True, has=has)
        worded = [("code:text", term) for term in text_prefixes(self.definition)]
        worded.append(("code:missing", "true"))
        word_searches = [
            query("Condition", [search, *extra, ("_elements", "code,subject"), ("_count", str(PAGE_SIZE))])
            for search in worded
        ]
        try:
            results = await batch_entries(self.client, [*code_searches, TEXT_PROBE, *word_searches])
        except FhirError as exc:
            if not refused(exc):
                raise
            log.info("batch population search refused", extra={"status": getattr(exc, "status", None)})
            return None
        coded, (probe, *texts, missing) = results[: len(code_searches)], results[len(code_searches) :]
        if not all(result.ok for result in coded):
            log.info("batch population search failed", extra={"statuses": [r.status for r in coded]})
            return None
        records: RecordBuilder | None = None
        if has is not None:
            records = await self._settled(code_searches, [r.resources for r in coded], as_of)
            by_code = {key.removeprefix("Patient/") for key in records.patient_keys()}
        self._text_probe = probe.ok and probe.total == 0
        by_text: set[str] | None = None
        if self._text_probe:
            # a prefix the server refuses inside a working text search is an error, not a silent gap
            failed = [r.status for r in texts if not r.ok]
            if failed:
                raise FhirError(f"text search for the study's wording failed with status {failed[0]}")
            by_text = set().union(*(self._with_wording(r.resources) for r in texts))
        return _Found(
            by_code=by_code
            if records is not None
            else set().union(*(patients_in(r.resources) for r in coded)),
            by_text=by_text,
            uncoded=self._with_wording(missing.resources) if missing.ok else None,
            how="one batch request" + (" with the records (_has)" if records is not None else ""),
            records=records,
        )

    async def _population_by_get(self, tokens: list[str], extra: list[tuple[str, str]]) -> _Found:
        ids: set[str] = set()
        for chunk in chunks(tokens):
            params = [("code", chunk), *extra, ("_elements", "subject"), ("_count", str(PAGE_SIZE))]
            ids |= patients_in(await self.client.search_resources("Condition", params))
        by_text: set[str] | None = None
        if text_prefixes(self.definition) and await self._text_search_works():
            by_text = set()
            for term in text_prefixes(self.definition):
                by_text |= await self._worded(("code:text", term), extra) or set()
        uncoded = await self._worded(("code:missing", "true"), extra, optional=True)
        return _Found(by_code=ids, by_text=by_text, uncoded=uncoded, how="GET searches (no batch)")

    async def _worded(
        self, search: tuple[str, str], extra: list[tuple[str, str]], optional: bool = False
    ) -> set[str] | None:
        """Patients of the Conditions a search finds whose text or display names the disease."""
        params = [search, *extra, ("_elements", "code,subject"), ("_count", str(PAGE_SIZE))]
        try:
            found = await self.client.search_resources("Condition", params)
        except FhirError as exc:
            if not optional:
                raise
            log.info("search not supported", extra={"status": getattr(exc, "status", None)})
            return None
        return self._with_wording(found)

    def _with_wording(self, found: list[dict[str, Any]]) -> set[str]:
        return patients_in(
            c for c in found if c.get("resourceType") == "Condition" and self._signs.wording(c.get("code"))
        )

    async def _text_search_works(self) -> bool:
        """Probe once: the server accepts token ``:text`` and does not ignore it (a nonsense word must
        find nothing; a server that drops the modifier would answer every Condition)."""
        if self._text_probe is None:
            try:
                probe = await self.client.get_json(TEXT_PROBE)
                self._text_probe = isinstance(probe, dict) and probe.get("total") == 0
            except FhirError as exc:
                log.info("text search not supported", extra={"status": getattr(exc, "status", None)})
                self._text_probe = False
        return self._text_probe

    def _batch_requests(
        self,
        patient_ids: list[str] | None,
        as_of: date | None = None,
        undated: bool = False,
        has: str | None = None,
    ) -> list[str]:
        """One batch's searches: Patient, then each clinical type by subject. With ``as_of``, each group
        of Observation codes is asked only from its widest window on (``date=ge``, a day early for time
        zones), and with ``undated`` also for the results with no date (``date:missing``). ``has``
        instead of ids: the patients with a Condition of these codes, selected by the server."""
        count = ("_count", str(PAGE_SIZE))
        if has is not None:
            queries = [query("Patient", [(HAS_CONDITION, has), count])]
        else:
            subjects = references("Patient", patient_ids or [])
            queries = [query("Patient", [("_id", any_of(escape(pid) for pid in patient_ids or [])), count])]
        for rtype, read in READ_TYPES.items():
            if read.subject is None:
                continue
            params = [(f"{read.subject}:Patient.{HAS_CONDITION}", has) if has else (read.subject, subjects)]
            if rtype == "Observation":  # only the codes the criteria read: never a hospital's vital signs
                queries += [
                    query(rtype, [*params, *window, count])
                    for window in self._observation_windows(as_of, undated)
                ]
                continue
            if read.include:
                params.append(("_include", read.include))
            queries.append(query(rtype, [*params, count]))
        return queries

    def _observation_windows(self, as_of: date | None, undated: bool) -> list[list[tuple[str, str]]]:
        """The code and date parameters of each Observation search of a batch."""
        if as_of is None:
            return [[("code", self._observation_codes)]]
        found: list[list[tuple[str, str]]] = []
        for window, codes in self._code_windows.items():
            code = ("code", any_of(token(system, value) for system, value in codes))
            if window is None:
                found.append([code])
                continue
            found.append([code, ("date", f"ge{window_start(as_of, window).isoformat()}")])
            if undated:
                found.append([code, ("date:missing", "true")])
        return found

    async def _windows(self) -> bool:
        """Windows only where undated results can be asked for too: ``date=ge`` never finds them, yet
        the engine may read one (undated, or dated only by ``issued``). Elsewhere: all history."""
        return self.as_of is not None and await self._missing_date_works()

    async def _fetch_batch(self, patient_ids: list[str], as_of: date | None = None) -> RecordBuilder:
        if as_of is not None and not await self._windows():
            as_of = None
        searches = self._batch_requests(patient_ids, as_of, undated=True)
        return await self._settled(searches, await self.client.batch_searches(searches), as_of)

    async def _settled(
        self, searches: list[str], answers: list[list[dict[str, Any]]], as_of: date | None
    ) -> RecordBuilder:
        """A batch's answers as records; with windows (``as_of``), what they did not settle is asked
        again over all history."""
        builder = RecordBuilder()
        observations: dict[str, dict[str, Any]] = {}
        for search, resources in zip(searches, answers, strict=True):
            if search.startswith("Observation?"):
                observations.update((_key(r), r) for r in resources)
            else:
                builder.add_all(resources)
        patient_ids = sorted(key.removeprefix("Patient/") for key in builder.patient_keys())
        if as_of is not None:
            # What the windows did not settle is asked again over all history (those patients, those
            # codes), so the engine sees what it would see in the files: same answers, same reasons.
            again = self._unsettled(patient_ids, observations.values(), as_of)
            by_codes: dict[frozenset[tuple[str, str]], list[str]] = {}
            for pid, codes in again.items():
                by_codes.setdefault(frozenset(codes), []).append(pid)
            searches = [
                query(
                    "Observation",
                    [
                        ("subject", references("Patient", pids)),
                        ("code", any_of(token(system, value) for system, value in sorted(codes))),
                        ("_count", str(PAGE_SIZE)),
                    ],
                )
                for codes, pids in by_codes.items()
            ]
            if searches:
                for resources in await self.client.batch_searches(searches):
                    observations.update((_key(r), r) for r in resources)
        builder.add_all(observations.values())
        return builder

    def _unsettled(
        self, patient_ids: list[str], found: Iterable[dict[str, Any]], as_of: date
    ) -> dict[str, set[tuple[str, str]]]:
        """Per patient, the codes of each windowed clause with no usable dated result inside its
        window: the engine then reads older, undated or no results, which the windows left out."""
        settled: dict[str, set[int]] = {}
        for obs in found:
            subject, code = obs.get("subject"), obs.get("code")
            if obs.get("status") in IGNORED_OBSERVATION or not isinstance(subject, dict):
                continue
            day = effective_day(obs)
            if day is None or day > as_of or not isinstance(code, dict):
                continue  # an odd shape settles nothing: its patient is asked over all history
            reference = subject.get("reference")
            patient = (normalise_reference(reference) if isinstance(reference, str) else None) or ""
            codings = code.get("coding")
            codes = {
                (c.get("system"), c.get("code"))
                for c in (codings if isinstance(codings, list) else ())
                if isinstance(c, dict)
            }
            for index, read in enumerate(self._reads):
                window = read.window_days
                if window is not None and (as_of - day).days <= window and codes & read.codes:
                    settled.setdefault(patient, set()).add(index)
        again: dict[str, set[tuple[str, str]]] = {}
        for pid in patient_ids:
            done = settled.get(f"Patient/{pid}", set())
            for index, read in enumerate(self._reads):
                if read.window_days is not None and index not in done:
                    again.setdefault(pid, set()).update(read.codes)
        return again

    async def _missing_date_works(self) -> bool:
        """Probe once: the server answers ``date:missing`` on Observations (HAPI only with missing
        fields indexed). A server that ignored the modifier would answer more, never less: safe."""
        async with self._probing:  # concurrent batches wait for one probe
            if self._missing_probe is None:
                try:
                    await self.client.get_json(
                        "Observation", [("date:missing", "true"), ("_summary", "count")]
                    )
                    self._missing_probe = True
                except FhirError as exc:
                    log.info("date:missing not supported", extra={"status": getattr(exc, "status", None)})
                    self._missing_probe = False
                log.info("observation windows", extra={"used": self._missing_probe})
        return self._missing_probe

    async def records(self, patient_ids: Iterable[str]) -> AsyncIterator[PatientRecord]:
        """Records for these patients, batch by batch (bounded concurrency, order of completion)."""
        ids = list(dict.fromkeys(patient_ids))
        batches = [ids[i : i + self.batch_size] for i in range(0, len(ids), self.batch_size)]
        semaphore = asyncio.Semaphore(self.concurrency)

        async def run(batch: list[str]) -> RecordBuilder:
            async with semaphore:
                return await self._fetch_batch(batch, self.as_of)

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
