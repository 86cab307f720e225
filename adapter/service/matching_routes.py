"""HTTP wiring of the matching protocols (matching.py): routes, our $match OperationDefinition, CORS.

Authentication is the service's own: a source's key (``Authorization: Bearer`` or ``X-API-Key``), as
for $screen; both protocols write nothing. The matching app sends no credentials of its own, so it
reaches us through a proxy that adds the key. CORS (for browser clients) is off unless ``serve
--cors-origin`` lists origins; it covers only the matching paths, answers with the caller's listed
origin (never ``*``) and never allows credentials (keys travel in headers, not cookies).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.fhir import FHIR_JSON

from .checks import InputError
from .matching import (
    CODEX_MATCH,
    CORS_PATHS,
    MATCH_ID,
    MATCH_PATH,
    MATCH_URL,
    MITRE_HELLO,
    MITRE_PATH,
    MITRE_PREFIX,
    match_operation,
    mitre_search,
)

log = logging.getLogger(__name__)
Run = Callable[..., Awaitable[Any]]


def _param(name: str, use: str, low: int, high: str, kind: str | None, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": text}
    if kind:
        out["type"] = kind
    return out


def operation_definition() -> dict[str, Any]:
    """Our $match: the CodeX draft's parameters, plus asOf in and a result per screened study out."""
    criterion = _param("criterion", "out", 0, "*", None, "One criterion's result.")
    criterion["part"] = [
        _param("id", "out", 1, "1", "string", "The criterion's id."),
        _param("type", "out", 1, "1", "code", "inclusion | exclusion"),
        _param("result", "out", 1, "1", "code", "met | not-met | unknown"),
        _param("reason", "out", 1, "1", "string", "Why, in words."),
        _param("evidence", "out", 0, "*", "Reference", "The resources the result rests on."),
    ]
    result = _param("result", "out", 0, "*", None, "The screening result of one study.")
    result["part"] = [
        _param("study", "out", 1, "1", "Reference", "The ResearchStudy screened for."),
        _param("status", "out", 1, "1", "code", "candidate | not-eligible"),
        _param(
            "score",
            "out",
            1,
            "1",
            "decimal",
            "search.score: 1 nothing to collect, < 0.75 data to collect, 0 not eligible.",
        ),
        _param("asOf", "out", 1, "1", "date", "The day screened for."),
        _param(
            "outsideFilter",
            "out",
            0,
            "1",
            "string",
            "The phase or recruitmentStatus filter the "
            "study is outside of (then it is not in trialMatchOutput).",
        ),
        criterion,
    ]
    return {
        "resourceType": "OperationDefinition",
        "id": MATCH_ID,
        "url": MATCH_URL,
        "version": "1",
        "name": "ResearchStudyMatch",
        "title": "Match a patient to the study (CodeX trial-matching shape)",
        "status": "active",
        "kind": "operation",
        "description": "Screens one patient's Bundle against every eligibility criterion and answers a "
        "searchset of the studies they are a candidate for (search.mode match, search.score 0..1), "
        "in the shape of the CodeX trial-matching draft IG's ClinicalTrialMatchService "
        f"({CODEX_MATCH}). Writes nothing.",
        "affectsState": False,
        "code": "match",
        "resource": ["ResearchStudy"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            _param("zipCode", "in", 0, "1", "string", "Accepted, not applied (no site coordinates)."),
            _param("travelRadius", "in", 0, "1", "string", "Accepted, not applied."),
            _param("phase", "in", 0, "1", "string", "Only studies of this phase (code or text)."),
            _param("recruitmentStatus", "in", 0, "1", "string", "Only studies with this status."),
            _param("trialMatchClinicalData", "in", 1, "1", "Bundle", "The patient's data: one Patient."),
            _param("asOf", "in", 0, "1", "date", "Screen as of this day (default today)."),
            _param("trialMatchOutput", "out", 1, "1", "Bundle", "The searchset of matching studies."),
            result,
        ],
    }


def check_origins(origins: list[str]) -> list[str]:
    """--cors-origin values: scheme://host[:port] each, never '*'."""
    for origin in origins:
        parts = urlsplit(origin)
        if origin == "*" or parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"--cors-origin {origin!r}: give an origin such as https://app.example.org")
    return origins


class MatchingCors:
    """CORS on the matching paths only; other paths pass through untouched."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept", "X-API-Key"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in CORS_PATHS:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def add_matching(
    app: FastAPI,
    run: Run,
    authorise: Callable[[Request], object],
    read: Callable[[Request], Awaitable[bytes]],
    max_entries: int,
    cors_origins: list[str],
) -> None:
    """The matching routes on ``app``; ``run`` is the CpuPool's, ``authorise`` and ``read`` the app's."""
    if cors_origins:
        app.add_middleware(MatchingCors, origins=check_origins(cors_origins))

    @app.get(MITRE_PREFIX, summary="The matching-service protocol's hello", include_in_schema=False)
    async def hello() -> PlainTextResponse:
        return PlainTextResponse(MITRE_HELLO)

    @app.post(MITRE_PATH, summary="MITRE clinical-trial-matching-service: patient Bundle -> searchset")
    async def get_clinical_trial(request: Request) -> JSONResponse:
        try:  # this protocol answers errors as {"error": "..."}, not as an OperationOutcome
            authorise(request)
            body = await read(request)
            found = await run(mitre_search, body, max_entries, date.today())
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except StarletteHTTPException as exc:
            return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)
        except Exception as exc:  # the protocol's 500 shape; the type only, never patient data
            log.exception("getClinicalTrial failed", extra={"path": request.url.path})
            return JSONResponse(
                {"error": "Internal server error", "exception": type(exc).__name__}, status_code=500
            )
        return JSONResponse(found)

    @app.post(MATCH_PATH, summary="CodeX-shaped $match: Parameters with the patient Bundle -> matches")
    async def match(request: Request) -> JSONResponse:
        authorise(request)
        body = await read(request)
        return JSONResponse(await run(match_operation, body, max_entries, date.today()), media_type=FHIR_JSON)

    @app.get(f"/fhir/OperationDefinition/{MATCH_ID}", summary="The $match OperationDefinition")
    async def match_definition() -> JSONResponse:
        return JSONResponse(operation_definition(), media_type=FHIR_JSON)
