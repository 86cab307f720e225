"""The ingestion service: a FHIR-style HTTP API that integration engines push patient data to.

POST /fhir                           a transaction, batch or collection Bundle -> 202 + status location
POST /fhir/{type}, PUT /fhir/{type}/{id}   one resource -> 202
POST /fhir/ResearchStudy/$screen     one patient's Bundle -> the per-criterion result, writing nothing
POST /fhir/ResearchStudy/$match, POST /match/getClinicalTrial   trial-matching protocols (matching.py)
PUT|POST /notify/...                 rest-hook Subscription notifications -> re-screen those patients
GET  /fhir/metadata                  the CapabilityStatement
GET  /status/{id}, /status?state=    processing status (a source sees its own), POST /status/{id}/$replay
GET  /healthz                        liveness and inbox counts (no auth)
GET  /docs, /openapi.json            API docs, served offline
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fault_points import crash_point
from adapter.fhir import FHIR_JSON
from adapter.fhir.client import Auth, FhirClient
from adapter.fhir.outcome import outcome_response as outcome
from adapter.studies import served
from mappings.criteria import CriteriaDefinition

from .checks import InputError, parse_json
from .inbox import BodyExpired, IdempotencyConflict, Inbox
from .intake import Checked, CpuPool, check_push, screen_body
from .matching_routes import add_matching
from .meta import VERSION, capability_statement, docs_page, with_security
from .mllp import start_mllp
from .mllp_wiring import inbox_acceptor
from .processor import Processor
from .sources import ANY_SYSTEM, DEV_SOURCE, Caller, Source, Sources, describe

log = logging.getLogger(__name__)

JSON_TYPES = ("application/fhir+json", "application/json")
MAX_LIST = 1000
DAY = 86400.0


@dataclass
class ServiceSettings:
    fhir_url: str
    inbox_path: Path
    sources: Sources = field(default_factory=Sources, repr=False)
    dev_open: bool = False
    max_body_bytes: int = 20_000_000
    max_entries: int = 10_000
    process: bool = True
    fhir_auth: Auth | None = field(default=None, repr=False)
    timeout: float = 60.0
    url_aliases: list[str] = field(default_factory=list)
    verify_tls: bool = True
    cpu_workers: int = 2
    replay_window: float = 7 * DAY
    dead_window: float = 30 * DAY
    max_attempts: int = 5
    backoff: float = 2.0
    reference_wait: float = 3600.0
    max_transaction_entries: int = 500
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed on the matching paths
    process_concurrency: int = 64  # payloads in their forward step at once (processor: per-patient order)
    mllp: Any = None  # MllpSettings: HL7 v2 over MLLP into the same inbox (adapter/service/mllp.py)


async def read_body(request: Request, limit: int) -> bytes:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise InputError(415, "not-supported", f"Content-Type must be {' or '.join(JSON_TYPES)}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InputError(413, "too-long", f"body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(413, "too-long", f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: ServiceSettings, definitions: CriteriaDefinition | Sequence[CriteriaDefinition]
) -> FastAPI:
    """The service for every study given: pushed data is screened and flagged for each."""
    studies = served(definitions)
    definition = studies[0]
    state: dict[str, Any] = {}
    dev_source = Source(DEV_SOURCE, frozenset({ANY_SYSTEM}))  # --dev-open: one source, authoritative for all

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def client(timeout: float) -> FhirClient:
            return FhirClient(
                settings.fhir_url,
                auth=settings.fhir_auth,
                timeout=timeout,
                url_aliases=settings.url_aliases,
                verify=settings.verify_tls,
            )

        fhir = client(settings.timeout)
        # Forwarding sizes its own timeouts to each transaction; sent as non-idempotent, so the client
        # retries only what never reached the server (429, 503, connect errors), never a timeout.
        forward = client(24 * 3600.0)
        inbox = Inbox(
            settings.inbox_path, replay_window=settings.replay_window, dead_window=settings.dead_window
        )
        recovered = inbox.recover()
        if recovered:
            log.warning(
                "payloads interrupted by a previous stop are processed again", extra={"count": recovered}
            )
        sources = settings.sources
        if settings.dev_open:
            sources = Sources(sources={**sources.sources, DEV_SOURCE: dev_source}, keys=sources.keys)
        processor = Processor(
            fhir,
            studies,
            inbox,
            sources=sources,
            forward_client=forward,
            max_attempts=settings.max_attempts,
            backoff=settings.backoff,
            timeout=settings.timeout,
            reference_wait=settings.reference_wait,
            max_transaction_entries=settings.max_transaction_entries,
            breaker_wait=min(1.0, settings.backoff),
            concurrency=settings.process_concurrency,
        )
        cpu = CpuPool(definition, settings.cpu_workers)
        state.update(inbox=inbox, processor=processor, cpu=cpu)
        warming = asyncio.create_task(cpu.warm())
        mllp = None
        task = None
        try:
            if settings.mllp is not None:  # before processing starts: a port in use stops the start-up
                accept = inbox_acceptor(inbox, processor.wake, sources, cpu, settings.max_entries)
                mllp = await start_mllp(settings.mllp, accept, settings.inbox_path)
            task = asyncio.create_task(processor.run()) if settings.process else None
            log.info(
                "service started",
                extra={"processing": settings.process, "inbox": inbox.counts(), "sources": describe(sources)},
            )
            yield
        finally:
            if mllp is not None:
                await mllp.close()
            processor.stop()
            if task is not None:
                await task  # finishes the payload in hand
            warming.cancel()
            cpu.close()
            await fhir.aclose()
            await forward.aclose()
            inbox.close()

    app = FastAPI(
        title="trial-adapter ingestion service",
        version=VERSION,
        description="Accepts FHIR R4 patient data from integration engines for NCT06849401 screening.",
        lifespan=lifespan,
        docs_url=None,  # the default pages load scripts from a CDN: blank offline
        redoc_url=None,
    )

    # --- errors: always an OperationOutcome -----------------------------------------------------

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return outcome(exc.status, exc.code, str(exc), expression=exc.expression)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict"}.get(
            exc.status_code, "processing"
        )
        return outcome(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return outcome(400, "invalid", "invalid request parameters")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", extra={"path": request.url.path})
        return outcome(500, "exception", f"internal error ({type(exc).__name__})")

    # --- auth -----------------------------------------------------------------------------------

    def authorise(request: Request) -> Caller:
        if settings.dev_open:
            return Caller(dev_source, admin=True)
        supplied = request.headers.get("x-api-key") or ""
        header = request.headers.get("authorization") or ""
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        if not supplied:
            raise StarletteHTTPException(401, "authentication required (Bearer token or X-API-Key)")
        caller = settings.sources.caller(supplied)
        if caller is None:
            raise StarletteHTTPException(401, "unknown credentials")
        return caller

    def pusher(request: Request) -> Source:
        caller = authorise(request)
        if caller.source is None:
            raise StarletteHTTPException(403, "an admin key cannot push data; use the sending source's key")
        return caller.source

    def admin(request: Request) -> None:
        if not authorise(request).admin:
            raise StarletteHTTPException(403, "this operation needs an admin key")

    def accepted(item_id: str, created: bool) -> JSONResponse:
        location = f"/status/{item_id}"
        text = f"accepted as {item_id}" if created else f"already accepted as {item_id}; not processed again"
        response = outcome(202 if created else 200, "informational", text, severity="information")
        response.headers["Location"] = location
        response.headers["Content-Location"] = location
        return response

    async def store(
        source: Source, kind: str, body: bytes, key: str | None, digest: str | None
    ) -> JSONResponse:
        try:
            item_id, created = await asyncio.to_thread(
                state["inbox"].accept, source.name, key, body, kind, content_hash=digest
            )
        except IdempotencyConflict as exc:
            log.warning("idempotency key reused for other content", extra={"item": exc.item_id})
            raise InputError(
                409,
                "conflict",
                f"this key was used for other content (payload {exc.item_id}); use a new key for new content",
            ) from None
        crash_point("service-after-accept")
        if created:
            state["processor"].wake()
            log.info("payload accepted", extra={"item": item_id, "kind": kind, "source": source.name})
        return accepted(item_id, created)

    async def push(
        request: Request, resource_type: str | None = None, resource_id: str | None = None
    ) -> JSONResponse:
        source = pusher(request)
        body = await read_body(request, settings.max_body_bytes)
        checked: Checked = await state["cpu"].run(
            check_push, body, settings.max_entries, source, resource_type, resource_id
        )
        header_key = request.headers.get("idempotency-key")
        key: str | None
        if header_key:
            key = f"{'resource' if resource_type else 'bundle'}:{header_key}"
        else:
            key = f"bundle:{checked.bundle_key}" if checked.bundle_key else None
        return await store(source, "bundle", checked.body or body, key, checked.content_hash)

    # --- routes ---------------------------------------------------------------------------------

    @app.get("/fhir/metadata", summary="CapabilityStatement")
    async def metadata(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/") + "/fhir"
        return JSONResponse(capability_statement(base), media_type=FHIR_JSON)

    @app.post("/fhir", status_code=202, summary="Push a transaction, batch or collection Bundle")
    async def push_bundle(request: Request) -> JSONResponse:
        return await push(request)

    @app.post("/fhir/ResearchStudy/$screen", summary="Screen one patient's Bundle; writes nothing")
    async def screen(request: Request, asOf: str | None = None) -> Response:
        pusher(request)
        try:
            as_of = date.fromisoformat(asOf) if asOf else date.today()
        except ValueError:
            raise InputError(400, "invalid", "asOf must be a date, YYYY-MM-DD") from None
        body = await read_body(request, settings.max_body_bytes)
        accept = request.headers.get("accept") or ""
        as_json = "application/json" in accept and FHIR_JSON not in accept
        result = await state["cpu"].run(screen_body, body, settings.max_entries, as_of, as_json)
        return JSONResponse(result, media_type=None if as_json else FHIR_JSON)

    @app.post("/fhir/{resource_type}", status_code=202, summary="Push one resource")
    async def push_resource(resource_type: str, request: Request) -> JSONResponse:
        return await push(request, resource_type)

    @app.put("/fhir/{resource_type}/{resource_id}", status_code=202, summary="Update one resource by its id")
    async def put_resource(resource_type: str, resource_id: str, request: Request) -> JSONResponse:
        return await push(request, resource_type, resource_id)

    @app.api_route(
        "/notify/{rest:path}", methods=["POST", "PUT"], summary="Subscription rest-hook notifications"
    )
    async def notify(rest: str, request: Request) -> Response:
        source = pusher(request)
        body = (
            await read_body(request, settings.max_body_bytes) if request.headers.get("content-type") else b""
        )
        if not body.strip():
            return Response(status_code=200)  # id-only notification: the worker's polling covers it
        data = await state["cpu"].run(parse_json, body)
        if not isinstance(data, dict) or "resourceType" not in data:
            raise InputError(400, "structure", "notification body is not a FHIR resource")
        await store(source, "notification", body, None, None)
        return Response(status_code=200)

    def visible_to(caller: Caller) -> str | None:
        """The source whose payloads a caller may see (None: all, for an admin)."""
        if caller.admin:
            return None
        assert caller.source is not None
        return caller.source.name

    @app.get("/status/{item_id}", summary="Processing status of an accepted payload (your own)")
    async def status(item_id: str, request: Request) -> JSONResponse:
        caller = authorise(request)
        found = await asyncio.to_thread(state["inbox"].status, item_id, visible_to(caller))
        if found is None:
            raise StarletteHTTPException(404, "no such payload")  # another source's: not even its existence
        return JSONResponse(found)

    @app.get("/status", summary="Recent payloads (your own), e.g. ?state=dead for the dead letters")
    async def status_list(
        request: Request, state_filter: str | None = None, limit: str = "100"
    ) -> JSONResponse:
        caller = authorise(request)
        wanted = request.query_params.get("state", state_filter)
        if wanted is not None and wanted not in ("accepted", "processing", "done", "dead"):
            raise InputError(400, "invalid", "state must be accepted, processing, done or dead")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
            raise InputError(400, "invalid", f"limit must be a whole number from 1 to {MAX_LIST}")
        items = await asyncio.to_thread(state["inbox"].list, wanted, int(limit), visible_to(caller))
        return JSONResponse({"items": items})

    @app.post("/status/{item_id}/$replay", summary="Re-queue a dead-lettered payload (admin)")
    async def replay(item_id: str, request: Request) -> JSONResponse:
        admin(request)
        try:
            replayed = await asyncio.to_thread(state["inbox"].replay, item_id)
        except BodyExpired:
            raise StarletteHTTPException(
                409, f"payload {item_id}: its body was deleted by retention"
            ) from None
        if not replayed:
            raise StarletteHTTPException(409, f"payload {item_id} is not dead-lettered")
        state["processor"].wake()
        return outcome(202, "informational", f"{item_id} queued again", severity="information")

    @app.get("/healthz", summary="Liveness and inbox counts")
    async def healthz() -> JSONResponse:
        processor = state.get("processor")
        return JSONResponse(
            {
                "status": "ok",
                "inbox": await asyncio.to_thread(state["inbox"].counts),
                "processed": processor.processed if processor else 0,
                "fhirServer": "unavailable" if processor and processor.breaker.is_open else "ok",
                "processing": processor.stats() if processor else {},
            }
        )

    add_matching(
        app,
        lambda *args: state["cpu"].run(*args),
        pusher,
        lambda request: read_body(request, settings.max_body_bytes),
        settings.max_entries,
        settings.cors_origins,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            FastAPI.openapi(app)
            with_security(app.openapi_schema or {})
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    return app
