"""What the service says about itself: CapabilityStatement, $screen Parameters, offline API docs."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date
from typing import Any

from adapter.screening.results import CriterionResult, PatientResult

from .checks import ACCEPTED_TYPES

VERSION = "0.2.0"
MATCH_DEFINITION = (
    "http://trial-adapter.org/fhir/OperationDefinition/ResearchStudy-match"  # served by matching_routes
)
AUTH_TEXT = (
    "Authorization: Bearer <key>, or X-API-Key: <key>. Each key belongs to a named source (a sending "
    "system) that may write only its own data; admin keys read every payload's status and replay dead letters."
)
RETRY_TEXT = (
    "2xx: stored durably (202: accepted now; 200: the same key and content were accepted before). "
    "4xx: do not retry, the payload is refused as it is (409: the key was used for other content). "
    "5xx or 429: retry later; nothing was stored."
)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "a source's or an admin's API key"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same key"},
}


def capability_statement(base: str, studies: Sequence[str]) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "trial-adapter ingestion service", "version": VERSION},
        "implementation": {
            "description": f"Accepts patient data for {', '.join(studies)} screening",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Pushed data is stored durably, answered 202 with a status location, "
                "forwarded to the system-of-record FHIR server and screened in the background. " + RETRY_TEXT,
                "security": {"description": AUTH_TEXT},
                "resource": [
                    {"type": rtype, "interaction": [{"code": "create"}, {"code": "update"}]}
                    for rtype in sorted(ACCEPTED_TYPES)
                ]
                + [
                    {
                        "type": "ResearchStudy",
                        "operation": [
                            {
                                "name": "screen",
                                "definition": "http://trial-adapter.org/fhir/OperationDefinition/ResearchStudy-screen",
                                "documentation": "Screen one patient's Bundle against every criterion; writes nothing.",
                            },
                            {
                                "name": "match",
                                "definition": MATCH_DEFINITION,
                                "documentation": "Trial matching in the CodeX draft's shape: the patient's Bundle "
                                "in (trialMatchClinicalData), a searchset of matching studies out; writes nothing.",
                            },
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
    parameters += [{"name": "criterion", "part": criterion_parts(c)} for c in result.criteria]
    return {"resourceType": "Parameters", "parameter": parameters}


def criterion_parts(c: CriterionResult) -> list[dict[str, Any]]:
    """One criterion's result as Parameters parts ($screen, and $match's result)."""
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": c.id},
        {"name": "type", "valueCode": c.type},
        {"name": "result", "valueCode": c.result},
        {"name": "reason", "valueString": c.reason},
    ]
    parts += [{"name": "evidence", "valueReference": {"reference": ref}} for ref in c.evidence]
    return parts


def with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the service's two ways of presenting a key."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def docs_page(schema: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no CDN): the endpoints, the auth scheme, the retry rules."""
    rows = []
    for path, operations in sorted(schema.get("paths", {}).items()):
        for method, operation in operations.items():
            rows.append(
                f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code>"
                f"</td><td>{html.escape(str(operation.get('summary', '')))}</td></tr>"
            )
    info = schema.get("info", {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(str(info.get('title', '')))}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}</style></head><body>"
        f"<h1>{html.escape(str(info.get('title', '')))} {html.escape(str(info.get('version', '')))}</h1>"
        f"<p>{html.escape(str(info.get('description', '')))}</p>"
        f"<h2>Authentication</h2><p>{html.escape(AUTH_TEXT)}</p>"
        f"<h2>Answers and retries</h2><p>{html.escape(RETRY_TEXT)}</p>"
        "<h2>Endpoints</h2><table>" + "".join(rows) + "</table>"
        "<p>The machine-readable description: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3).</p>"
        "</body></html>"
    )
