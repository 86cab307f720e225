"""The OperationOutcome the service and the worker answer with (one issue: severity, code, text)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from . import FHIR_JSON


def operation_outcome(
    code: str, text: str, severity: str = "error", expression: str | None = None
) -> dict[str, Any]:
    """``code``: an issue-type code (https://hl7.org/fhir/R4/valueset-issue-type.html)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(
    status: int, code: str, text: str, severity: str = "error", expression: str | None = None
) -> JSONResponse:
    return JSONResponse(
        operation_outcome(code, text, severity, expression), status_code=status, media_type=FHIR_JSON
    )
