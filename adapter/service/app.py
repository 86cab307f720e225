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

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fhir.client import FhirClient
from adapter.fhir.outcome import outcome_response as outcome
from adapter.studies import served
from mappings.criteria import CriteriaDefinition

from .checks import InputError
from .context import DAY, ServiceContext, ServiceSettings
from .inbox import Inbox
from .intake import CpuPool
from .matching_routes import add_matching
from .meta import VERSION
from .mllp import start_mllp
from .mllp_wiring import inbox_acceptor
from .processor import Processor
from .push_routes import add_push_routes
from .sources import describe
from .status_routes import add_docs, add_status_routes

__all__ = ["DAY", "ServiceSettings", "create_app"]

log = logging.getLogger(__name__)


def create_app(
    settings: ServiceSettings, definitions: CriteriaDefinition | Sequence[CriteriaDefinition]
) -> FastAPI:
    """The service for every study given: pushed data is screened and flagged for each.

    The routes live by area: ``push_routes`` (data in, ``$screen``, notifications), ``status_routes``
    (status, replay, health, docs), ``matching_routes``; ``context`` holds what they share."""
    studies = served(definitions)
    ctx = ServiceContext(settings, [d.study for d in studies])
    parts = ctx.parts

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
        sources = ctx.sources()
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
        cpu = CpuPool(studies, settings.cpu_workers, settings.study_files)
        parts.update(inbox=inbox, processor=processor, cpu=cpu)
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
        description="Accepts FHIR R4 patient data from integration engines for "
        f"{', '.join(ctx.studies)} screening.",
        lifespan=lifespan,
        docs_url=None,  # the default pages load scripts from a CDN: blank offline
        redoc_url=None,
    )
    add_error_handlers(app)
    add_push_routes(app, ctx)
    add_status_routes(app, ctx)
    add_matching(
        app,
        lambda *args: parts["cpu"].run(*args),
        ctx.pusher,
        ctx.body,
        settings.max_entries,
        settings.cors_origins,
    )
    add_docs(app)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error is an OperationOutcome."""

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
