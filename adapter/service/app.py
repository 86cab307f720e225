"""The ingestion service: a FHIR-style HTTP API that integration engines push patient data to.

POST /fhir                           a transaction, batch or collection Bundle -> 202 + status location
POST /fhir/{type}                    one resource -> 202
POST /fhir/ResearchStudy/$screen     one patient's Bundle -> the per-criterion result, writing nothing
PUT|POST /notify/...                 rest-hook Subscription notifications -> re-screen those patients
GET  /fhir/metadata                  the CapabilityStatement
GET  /status/{id}, /status?state=    processing status, dead letters; POST /status/{id}/$replay
GET  /healthz                        liveness and inbox counts (no auth)
OpenAPI docs at /docs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fault_points import crash_point
from adapter.fhir.client import Auth, FhirClient
from adapter.screening.engine import Screener
from adapter.screening.record import RecordBuilder
from adapter.screening.results import PatientResult
from adapter.screening.run import report_for
from adapter.screening.unmapped import UnmappedCollector
from adapter.sources.files import bundle_entries
from mappings.criteria import CriteriaDefinition

from .checks import ACCEPTED_TYPES, InputError, check_bundle, check_resource, parse_json
from .inbox import Inbox
from .processor import Processor

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json")
VERSION = "0.1.0"


@dataclass
class ServiceSettings:
    fhir_url: str
    inbox_path: Path
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # key -> role (push | admin)
    dev_open: bool = False
    max_body_bytes: int = 20_000_000
    max_entries: int = 10_000
    process: bool = True
    fhir_auth: Auth | None = field(default=None, repr=False)
    timeout: float = 60.0
    url_aliases: list[str] = field(default_factory=list)
    verify_tls: bool = True


def outcome(status: int, code: str, text: str, severity: str = "error") -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "trial-adapter ingestion service", "version": VERSION},
        "implementation": {"description": "Accepts patient data for NCT06849401 screening", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Pushed data is stored durably, answered 202 with a status location, "
                "forwarded to the system-of-record FHIR server and screened in the background.",
                "security": {
                    "description": "Authorization: Bearer <key>, or X-API-Key: <key>. Keys are configured "
                    "per deployment."
                },
                "resource": [
                    {"type": rtype, "interaction": [{"code": "create"}]} for rtype in sorted(ACCEPTED_TYPES)
                ]
                + [
                    {
                        "type": "ResearchStudy",
                        "operation": [
                            {
                                "name": "screen",
                                "definition": "http://trial-adapter.org/fhir/OperationDefinition/ResearchStudy-screen",
                                "documentation": "Screen one patient's Bundle against every criterion; writes nothing.",
                            }
                        ],
                    }
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }


def screening_parameters(result: PatientResult, as_of: date) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": result.patient}},
        {"name": "asOf", "valueDate": as_of.isoformat()},
        {"name": "status", "valueCode": result.status},
    ]
    for c in result.criteria:
        parts: list[dict[str, Any]] = [
            {"name": "id", "valueString": c.id},
            {"name": "type", "valueCode": c.type},
            {"name": "result", "valueCode": c.result},
            {"name": "reason", "valueString": c.reason},
        ]
        parts += [{"name": "evidence", "valueReference": {"reference": ref}} for ref in c.evidence]
        parameters.append({"name": "criterion", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameters}


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


def create_app(settings: ServiceSettings, definition: CriteriaDefinition) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = FhirClient(
            settings.fhir_url,
            auth=settings.fhir_auth,
            timeout=settings.timeout,
            url_aliases=settings.url_aliases,
            verify=settings.verify_tls,
        )
        inbox = Inbox(settings.inbox_path)
        recovered = inbox.recover()
        if recovered:
            log.warning(
                "payloads interrupted by a previous stop are processed again", extra={"count": recovered}
            )
        processor = Processor(client, definition, inbox)
        state.update(client=client, inbox=inbox, processor=processor)
        task = asyncio.create_task(processor.run()) if settings.process else None
        log.info("service started", extra={"processing": settings.process, "inbox": inbox.counts()})
        try:
            yield
        finally:
            processor.stop()
            if task is not None:
                await task  # finishes the payload in hand
            await client.aclose()
            inbox.close()

    app = FastAPI(
        title="trial-adapter ingestion service",
        version=VERSION,
        description="Accepts FHIR R4 patient data from integration engines for NCT06849401 screening.",
        lifespan=lifespan,
    )

    # --- errors: always an OperationOutcome -----------------------------------------------------

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(exc.outcome(), status_code=exc.status, media_type=FHIR_JSON)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported"}.get(
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

    def authorise(request: Request, role: str = "push") -> None:
        if settings.dev_open:
            return
        supplied = request.headers.get("x-api-key") or ""
        header = request.headers.get("authorization") or ""
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        if not supplied:
            raise StarletteHTTPException(401, "authentication required (Bearer token or X-API-Key)")
        granted = None
        for key, key_role in settings.api_keys.items():  # compare with every key: no early exit
            if hmac.compare_digest(supplied.encode(), key.encode()):
                granted = key_role
        if granted is None:
            raise StarletteHTTPException(401, "unknown credentials")
        if role == "admin" and granted != "admin":
            raise StarletteHTTPException(403, "this operation needs an admin key")

    def accepted(item_id: str, created: bool) -> JSONResponse:
        location = f"/status/{item_id}"
        text = f"accepted as {item_id}" if created else f"already accepted as {item_id}; not processed again"
        response = outcome(202 if created else 200, "informational", text, severity="information")
        response.headers["Location"] = location
        response.headers["Content-Location"] = location
        return response

    async def store(kind: str, body: bytes, key: str | None) -> tuple[str, bool]:
        item_id, created = await asyncio.to_thread(state["inbox"].accept, kind, body, key)
        crash_point("service-after-accept")
        if created:
            state["processor"].wake()
            log.info("payload accepted", extra={"item": item_id, "kind": kind})
        return item_id, created

    # --- routes ---------------------------------------------------------------------------------

    @app.get("/fhir/metadata", summary="CapabilityStatement")
    async def metadata(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/") + "/fhir"
        return JSONResponse(capability_statement(base), media_type=FHIR_JSON)

    @app.post("/fhir", status_code=202, summary="Push a transaction, batch or collection Bundle")
    async def push_bundle(request: Request) -> JSONResponse:
        authorise(request)
        body = await read_body(request, settings.max_body_bytes)
        bundle = check_bundle(parse_json(body), settings.max_entries)
        key = request.headers.get("idempotency-key")
        identifier = bundle.get("identifier") or {}
        if not key and identifier.get("value"):
            key = f"{identifier.get('system', '')}|{identifier['value']}"
        item_id, created = await store("bundle", body, f"bundle:{key}" if key else None)
        return accepted(item_id, created)

    @app.post("/fhir/ResearchStudy/$screen", summary="Screen one patient's Bundle; writes nothing")
    async def screen(request: Request, asOf: str | None = None) -> Response:
        authorise(request)
        try:
            as_of = date.fromisoformat(asOf) if asOf else date.today()
        except ValueError:
            raise InputError(400, "invalid", f"asOf must be YYYY-MM-DD, got {asOf!r}") from None
        bundle = check_bundle(
            parse_json(await read_body(request, settings.max_body_bytes)), settings.max_entries
        )
        builder = RecordBuilder()
        for resource, full_url in bundle_entries(bundle, "Bundle"):
            builder.add(resource, full_url)
        records = list(builder.records())
        if len(records) != 1:
            raise InputError(
                422, "invalid", f"$screen needs exactly one Patient in the Bundle, found {len(records)}"
            )
        result = Screener(definition, as_of).screen(records[0])
        accept = request.headers.get("accept") or ""
        if "application/json" in accept and FHIR_JSON not in accept:
            unmapped = UnmappedCollector(definition)  # the same report as the CLI's, gaps included
            unmapped.add(records[0])
            return JSONResponse(report_for(definition, as_of, [result], unmapped).to_json_dict())
        return JSONResponse(screening_parameters(result, as_of), media_type=FHIR_JSON)

    @app.post("/fhir/{resource_type}", status_code=202, summary="Push one resource")
    async def push_resource(resource_type: str, request: Request) -> JSONResponse:
        authorise(request)
        resource = check_resource(parse_json(await read_body(request, settings.max_body_bytes)))
        if resource["resourceType"] != resource_type:
            raise InputError(
                400,
                "invalid",
                f"resourceType {resource['resourceType']} does not match the URL ({resource_type})",
            )
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
        key = request.headers.get("idempotency-key")
        item_id, created = await store(
            "bundle", json.dumps(bundle).encode(), f"resource:{key}" if key else None
        )
        return accepted(item_id, created)

    @app.api_route(
        "/notify/{rest:path}", methods=["POST", "PUT"], summary="Subscription rest-hook notifications"
    )
    async def notify(rest: str, request: Request) -> Response:
        authorise(request)
        body = (
            await read_body(request, settings.max_body_bytes) if request.headers.get("content-type") else b""
        )
        if not body.strip():
            return Response(status_code=200)  # id-only notification: the worker's polling covers it
        data = parse_json(body)
        if not isinstance(data, dict) or "resourceType" not in data:
            raise InputError(400, "structure", "notification body is not a FHIR resource")
        await store("notification", body, None)
        return Response(status_code=200)

    @app.get("/status/{item_id}", summary="Processing status of an accepted payload")
    async def status(item_id: str, request: Request) -> JSONResponse:
        authorise(request)
        found = await asyncio.to_thread(state["inbox"].status, item_id)
        if found is None:
            raise StarletteHTTPException(404, f"no payload {item_id}")
        return JSONResponse(found)

    @app.get("/status", summary="Recent payloads, e.g. ?state=dead for the dead letters")
    async def status_list(
        request: Request, state_filter: str | None = None, limit: int = 100
    ) -> JSONResponse:
        authorise(request)
        wanted = request.query_params.get("state", state_filter)
        return JSONResponse({"items": await asyncio.to_thread(state["inbox"].list, wanted, min(limit, 1000))})

    @app.post("/status/{item_id}/$replay", summary="Re-queue a dead-lettered payload (admin)")
    async def replay(item_id: str, request: Request) -> JSONResponse:
        authorise(request, role="admin")
        if not await asyncio.to_thread(state["inbox"].replay, item_id):
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
            }
        )

    return app
