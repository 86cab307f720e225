"""The routes data comes in by: Bundles and single resources (stored durably, then ``202``), the
``$screen`` operation (screens one patient's Bundle, writes nothing) and Subscription notifications."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapter.fault_points import crash_point
from adapter.fhir import FHIR_JSON
from adapter.fhir.outcome import outcome_response as outcome

from .checks import InputError, parse_json
from .context import ServiceContext
from .inbox import IdempotencyConflict
from .intake import Checked, check_push, screen_body
from .sources import Source

log = logging.getLogger(__name__)


def accepted(item_id: str, created: bool) -> JSONResponse:
    location = f"/status/{item_id}"
    text = f"accepted as {item_id}" if created else f"already accepted as {item_id}; not processed again"
    response = outcome(202 if created else 200, "informational", text, severity="information")
    response.headers["Location"] = location
    response.headers["Content-Location"] = location
    return response


def add_push_routes(app: FastAPI, ctx: ServiceContext) -> None:
    settings, parts = ctx.settings, ctx.parts

    async def store(
        source: Source, kind: str, body: bytes, key: str | None, digest: str | None
    ) -> JSONResponse:
        try:
            item_id, created = await asyncio.to_thread(
                parts["inbox"].accept, source.name, key, body, kind, content_hash=digest
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
            parts["processor"].wake()
            log.info("payload accepted", extra={"item": item_id, "kind": kind, "source": source.name})
        return accepted(item_id, created)

    async def push(
        request: Request, resource_type: str | None = None, resource_id: str | None = None
    ) -> JSONResponse:
        source = ctx.pusher(request)
        body = await ctx.body(request)
        checked: Checked = await parts["cpu"].run(
            check_push, body, settings.max_entries, source, resource_type, resource_id
        )
        header_key = request.headers.get("idempotency-key")
        key: str | None
        if header_key:
            key = f"{'resource' if resource_type else 'bundle'}:{header_key}"
        else:
            key = f"bundle:{checked.bundle_key}" if checked.bundle_key else None
        return await store(source, "bundle", checked.body or body, key, checked.content_hash)

    @app.post("/fhir", status_code=202, summary="Push a transaction, batch or collection Bundle")
    async def push_bundle(request: Request) -> JSONResponse:
        return await push(request)

    @app.post("/fhir/ResearchStudy/$screen", summary="Screen one patient's Bundle; writes nothing")
    async def screen(request: Request, asOf: str | None = None) -> Response:
        ctx.pusher(request)
        try:
            as_of = date.fromisoformat(asOf) if asOf else date.today()
        except ValueError:
            raise InputError(400, "invalid", "asOf must be a date, YYYY-MM-DD") from None
        body = await ctx.body(request)
        accept = request.headers.get("accept") or ""
        as_json = "application/json" in accept and FHIR_JSON not in accept
        result = await parts["cpu"].run(screen_body, body, settings.max_entries, as_of, as_json)
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
        source = ctx.pusher(request)
        body = await ctx.body(request) if request.headers.get("content-type") else b""
        if not body.strip():
            return Response(status_code=200)  # id-only notification: the worker's polling covers it
        data = await parts["cpu"].run(parse_json, body)
        if not isinstance(data, dict) or "resourceType" not in data:
            raise InputError(400, "structure", "notification body is not a FHIR resource")
        await store(source, "notification", body, None, None)
        return Response(status_code=200)
