"""The routes that report on the service: the CapabilityStatement, each payload's processing status
(a source sees only its own), replaying a dead letter (admin), liveness, and the offline API docs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fhir import FHIR_JSON
from adapter.fhir.outcome import outcome_response as outcome

from .checks import InputError
from .context import ServiceContext
from .inbox import BodyExpired
from .meta import capability_statement, docs_page, with_security

MAX_LIST = 1000


def add_status_routes(app: FastAPI, ctx: ServiceContext) -> None:
    parts = ctx.parts

    @app.get("/fhir/metadata", summary="CapabilityStatement")
    async def metadata(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/") + "/fhir"
        return JSONResponse(capability_statement(base, ctx.studies), media_type=FHIR_JSON)

    @app.get("/status/{item_id}", summary="Processing status of an accepted payload (your own)")
    async def status(item_id: str, request: Request) -> JSONResponse:
        caller = ctx.authorise(request)
        found = await asyncio.to_thread(parts["inbox"].status, item_id, ctx.visible_to(caller))
        if found is None:
            raise StarletteHTTPException(404, "no such payload")  # another source's: not even its existence
        return JSONResponse(found)

    @app.get("/status", summary="Recent payloads (your own), e.g. ?state=dead for the dead letters")
    async def status_list(
        request: Request, state_filter: str | None = None, limit: str = "100"
    ) -> JSONResponse:
        caller = ctx.authorise(request)
        wanted = request.query_params.get("state", state_filter)
        if wanted is not None and wanted not in ("accepted", "processing", "done", "dead"):
            raise InputError(400, "invalid", "state must be accepted, processing, done or dead")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
            raise InputError(400, "invalid", f"limit must be a whole number from 1 to {MAX_LIST}")
        items = await asyncio.to_thread(parts["inbox"].list, wanted, int(limit), ctx.visible_to(caller))
        return JSONResponse({"items": items})

    @app.post("/status/{item_id}/$replay", summary="Re-queue a dead-lettered payload (admin)")
    async def replay(item_id: str, request: Request) -> JSONResponse:
        ctx.admin(request)
        try:
            replayed = await asyncio.to_thread(parts["inbox"].replay, item_id)
        except BodyExpired:
            raise StarletteHTTPException(
                409, f"payload {item_id}: its body was deleted by retention"
            ) from None
        if not replayed:
            raise StarletteHTTPException(409, f"payload {item_id} is not dead-lettered")
        parts["processor"].wake()
        return outcome(202, "informational", f"{item_id} queued again", severity="information")

    @app.get("/healthz", summary="Liveness and inbox counts")
    async def healthz() -> JSONResponse:
        processor = parts.get("processor")
        return JSONResponse(
            {
                "status": "ok",
                "inbox": await asyncio.to_thread(parts["inbox"].counts),
                "processed": processor.processed if processor else 0,
                "fhirServer": "unavailable" if processor and processor.breaker.is_open else "ok",
                "processing": processor.stats() if processor else {},
            }
        )


def add_docs(app: FastAPI) -> None:
    """The OpenAPI document with its security schemes, and ``/docs`` served without a CDN."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            FastAPI.openapi(app)
            with_security(app.openapi_schema or {})
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))
