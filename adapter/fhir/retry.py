"""When a FHIR request is tried again: Retry-After, the backoff policy, and which failures qualify."""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception

from adapter.fhir.http_errors import NOT_PROCESSED_STATUS, RETRYABLE_STATUS, FhirHttpError


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    max_wait: float = 30.0  # one wait, including a server's Retry-After (longer ones are capped)
    total: float = 120.0  # all attempts together
    base: float = 0.5

    def wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        backoff = min(self.max_wait, self.base * 2 ** (state.attempt_number - 1))
        if isinstance(error, FhirHttpError) and error.retry_after is not None:
            return min(self.max_wait, max(error.retry_after, 0.0))
        return backoff


NO_RETRY = RetryPolicy(attempts=1)


def certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a connection error, if that is what it is (never retried)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def retryable(idempotent: bool) -> Any:
    def check(error: BaseException) -> bool:
        if certificate_error(error) is not None:
            return False  # a wrong certificate does not fix itself
        if isinstance(error, FhirHttpError):
            allowed = RETRYABLE_STATUS if idempotent else NOT_PROCESSED_STATUS
            return error.status in allowed
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True  # never reached the server
        return idempotent and isinstance(error, httpx.TransportError)

    return retry_if_exception(check)
