"""Typed errors for FHIR REST calls: one readable line each, carrying status, Retry-After and the
OperationOutcome (see client.py), and which statuses may be retried."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from fhirpy.base.exceptions import (
    AuthorizationError,
    ForbiddenError,
    MultipleResourcesFound,
    OperationOutcome,
    ResourceNotFound,
)

from adapter.errors import ServerError

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Statuses that say the server did not act on the request, so even a non-idempotent one may be resent.
NOT_PROCESSED_STATUS = frozenset({429, 503})


class FhirError(ServerError):
    """Any failure talking to a FHIR server; ``str()`` is one readable line."""


class FhirConnectionError(FhirError):
    pass


class FhirPagingError(FhirError):
    pass


class FhirInvalidResponse(FhirError):
    """A successful status whose body is not the JSON it should be (e.g. cut short, or an HTML page)."""


def response_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        request = response.request
        raise FhirInvalidResponse(
            f"invalid JSON in the HTTP {response.status_code} answer to {request.method} {request.url.path} "
            f"({len(response.content)} bytes)"
        ) from None


class FhirHttpError(FhirError):
    def __init__(
        self,
        status: int,
        method: str,
        url: str,
        outcome: dict[str, Any] | None = None,
        retry_after: float | None = None,
        body: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.outcome = outcome
        self.retry_after = retry_after
        self.body = body
        super().__init__(self.describe())

    def __str__(self) -> str:  # fhirpy's OperationOutcome would render JSON; we want one line
        return self.describe()

    def diagnostics(self) -> str:
        issues = (self.outcome or {}).get("issue") or []
        parts = []
        for issue in issues:
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            if text:
                parts.append(f"{issue.get('severity', 'error')}: {text}")
        if parts:
            return "; ".join(parts)
        return " ".join(self.body.split())[:300]

    def describe(self) -> str:
        path = urlsplit(self.url).path  # no query string: search values can be patient data
        detail = self.diagnostics()
        return f"HTTP {self.status} from {self.method} {path}" + (f": {detail}" if detail else "")


# fhirpy callers catch fhirpy's own exception types; ours are both.
class FhirNotFound(FhirHttpError, ResourceNotFound):
    pass


class FhirUnauthorized(FhirHttpError, AuthorizationError):
    pass


class FhirForbidden(FhirHttpError, ForbiddenError):
    pass


class FhirPreconditionFailed(FhirHttpError, MultipleResourcesFound):
    pass


class FhirConflict(FhirHttpError):
    """409: e.g. an If-Match on a version that is no longer current (HAPI answers that with 409)."""


class FhirOperationError(FhirHttpError, OperationOutcome):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        FhirHttpError.__init__(self, *args, **kwargs)
        self.resource = self.outcome or {}


ERROR_BY_STATUS: dict[int, type[FhirHttpError]] = {
    401: FhirUnauthorized,
    403: FhirForbidden,
    404: FhirNotFound,
    410: FhirNotFound,
    409: FhirConflict,
    412: FhirPreconditionFailed,
}
