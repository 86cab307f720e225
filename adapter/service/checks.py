"""Checking pushed input before it is accepted: JSON, FHIR structure, limits, references.

Every failure is an ``InputError`` that becomes a 4xx OperationOutcome naming the problem; nothing of
a rejected payload is stored.
"""

from __future__ import annotations

from typing import Any

from adapter import errors
from adapter.fhir.outcome import operation_outcome
from adapter.fhir.parsing import InvalidJson, model_class, model_problem, parse_fhir_json, unresolved_urn
from mappings.clinical import resource_types

from .narrative import NarrativeError, check_narratives

# What the service accepts: the data screening reads, and what engines commonly send with it.
ACCEPTED_TYPES = resource_types.ACCEPTED_TYPES
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection"})
ACCEPTED_METHODS = frozenset({"POST", "PUT"})


class InputError(errors.InputError, ValueError):
    """Pushed input the service refuses: ``status`` is the HTTP status, ``code`` the issue type."""

    def __init__(self, status: int, code: str, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # an OperationOutcome issue-type code
        self.expression = expression

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, re-raised here
        return (InputError, (self.status, self.code, str(self), self.expression))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, str(self), expression=self.expression)


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(400, "structure", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return parse_fhir_json(text)
    except InvalidJson as exc:
        raise InputError(400, "structure", str(exc)) from None


def _model_check(resource: dict[str, Any], where: str) -> None:
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise InputError(422, "structure", f"{where}: no resourceType", where)
    if model_class(rtype) is None:
        raise InputError(422, "not-supported", f"{where}: unknown resource type {rtype[:100]!r}", where)
    if rtype not in ACCEPTED_TYPES:
        raise InputError(422, "not-supported", f"{where}: resource type {rtype} is not accepted", where)
    try:
        check_narratives(resource)
    except NarrativeError as exc:
        raise InputError(422, "invalid", f"{where}.{exc}", where) from None
    problem = model_problem(resource)
    if problem is None:
        return
    if problem.too_deep:
        raise InputError(422, "structure", f"{where}: nested too deeply", where)
    raise InputError(422, "invalid", f"{where}: {problem if problem.path else problem.message}", where)


def check_bundle(data: Any, max_entries: int) -> dict[str, Any]:
    """A pushed Bundle, checked; raises InputError naming the first problem."""
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InputError(400, "structure", "expected a FHIR resource (a JSON object with resourceType)")
    if data["resourceType"] != "Bundle":
        raise InputError(422, "invalid", f"expected a Bundle, got {str(data['resourceType'])[:100]!r}")
    if not isinstance(data.get("type"), str) or data["type"] not in BUNDLE_TYPES:
        raise InputError(
            422, "invalid", f"Bundle.type must be one of {', '.join(sorted(BUNDLE_TYPES))}", "Bundle.type"
        )
    identifier = data.get("identifier")
    if identifier is not None and not (
        isinstance(identifier, dict)
        and all(isinstance(identifier.get(k, ""), str) for k in ("system", "value"))
    ):
        raise InputError(
            422, "invalid", "Bundle.identifier must be an Identifier (system, value)", "Bundle.identifier"
        )
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise InputError(422, "structure", "Bundle.entry must be a list", "Bundle.entry")
    if not entries:
        raise InputError(422, "required", "the Bundle has no entries", "Bundle.entry")
    if len(entries) > max_entries:
        raise InputError(
            413, "too-long", f"the Bundle has {len(entries)} entries; the limit is {max_entries}"
        )
    full_urls: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise InputError(422, "required", f"{where}: no resource", where)
        request = entry.get("request")
        if isinstance(request, dict) and not (
            isinstance(request.get("method"), str) and request["method"] in ACCEPTED_METHODS
        ):
            raise InputError(
                422,
                "not-supported",
                f"{where}: request method {str(request.get('method'))[:20]!r} is not accepted",
                where,
            )
        full_url = entry.get("fullUrl")
        if full_url is not None:
            if not isinstance(full_url, str):
                raise InputError(422, "invalid", f"{where}: fullUrl must be a string", where)
            if full_url in full_urls:
                raise InputError(422, "duplicate", f"{where}: duplicate fullUrl {full_url}", where)
            full_urls.add(full_url)
        _model_check(entry["resource"], f"{where}.resource")
    for index, entry in enumerate(entries):
        ref = unresolved_urn(entry["resource"], full_urls)
        if ref is not None:
            where = f"Bundle.entry[{index}].resource"
            raise InputError(
                422, "not-found", f"{where}: reference {ref} points at no entry of the Bundle", where
            )
    return data


def check_resource(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InputError(400, "structure", "expected a FHIR resource (a JSON object with resourceType)")
    _model_check(data, data["resourceType"] if isinstance(data["resourceType"], str) else "resource")
    return data
