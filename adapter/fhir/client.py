"""FHIR REST access: fhirpy's API on one shared httpx connection pool, with typed errors and retries.

fhirpy 2.3.1 is kept for its search-set builder and resource API, and compensated where it falls short:
- ``AsyncFHIRClient`` opens a new aiohttp session per request: ``_do_request`` is replaced so every
  request goes through one ``httpx.AsyncClient`` (connection reuse, respx-testable).
- its exceptions carry no status or headers: ``FhirHttpError`` carries status, Retry-After and the
  OperationOutcome (and still subclasses fhirpy's matching exception).
- ``fetch_all()`` drops ``_include``d resources and next links to another base raise: ``pages()``
  follows next links itself, keeps every entry, and never leaves the server's origin except through
  a configured alias.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from fhirpy import AsyncFHIRClient
from tenacity import AsyncRetrying, stop_after_attempt, stop_after_delay

from adapter.fhir import FHIR_JSON
from adapter.fhir.http_errors import (
    ERROR_BY_STATUS,
    FhirConflict,
    FhirConnectionError,
    FhirError,
    FhirForbidden,
    FhirHttpError,
    FhirInvalidResponse,
    FhirNotFound,
    FhirOperationError,
    FhirPagingError,
    FhirPreconditionFailed,
    FhirUnauthorized,
    response_json,
)
from adapter.fhir.retry import NO_RETRY, RetryPolicy, certificate_error, parse_retry_after, retryable

# Callers import the errors and the retry policy from the client (they live in http_errors.py and retry.py).
__all__ = [
    "NO_RETRY",
    "Auth",
    "FhirClient",
    "FhirConflict",
    "FhirConnectionError",
    "FhirError",
    "FhirForbidden",
    "FhirHttpError",
    "FhirInvalidResponse",
    "FhirNotFound",
    "FhirOperationError",
    "FhirPagingError",
    "FhirPreconditionFailed",
    "FhirUnauthorized",
    "RetryPolicy",
    "certificate_error",
    "parse_retry_after",
]

log = logging.getLogger(__name__)


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...


def _refreshable(auth: Auth | None) -> bool:
    return callable(getattr(auth, "invalidate", None))


class FhirClient(AsyncFHIRClient):
    """An async FHIR R4 client. Use as ``async with FhirClient(url) as client:``."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        max_connections: int = 8,
        url_aliases: list[str] | None = None,
        verify: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = "trial-adapter/0.1",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(url.rstrip("/"), url_aliases=url_aliases or [])
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            verify=verify,
            transport=transport,
            headers={"Accept": FHIR_JSON, "User-Agent": user_agent},
            follow_redirects=False,
        )
        self._sleep = sleep
        self.requests_sent = 0
        self.bytes_received = 0

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the one way requests are made ------------------------------------------------------------

    def url_for(self, path: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None) -> str:
        """Absolute URL for a path relative to the base, or a checked absolute URL (e.g. a next link)."""
        if urlsplit(path).scheme:
            url = self._same_server(path)
        else:
            url = f"{self.url}/{path.lstrip('/')}" if path else self.url
        if params:
            query = urlencode(list(params.items()) if isinstance(params, Mapping) else params, doseq=True)
            url += ("&" if "?" in url else "?") + query
        return url

    def _same_server(self, url: str) -> str:
        for alias in self.url_aliases:
            alias = alias.rstrip("/")
            if url == alias or url.startswith(alias + "/") or url.startswith(alias + "?"):
                url = self.url + url[len(alias) :]
                break
        base, target = urlsplit(self.url), urlsplit(url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise FhirPagingError(
                f"refusing to follow a link to another server ({target.scheme}://{target.netloc}); "
                "configure it as a URL alias if it is the same server"
            )
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request with bounded retries; return a 2xx/3xx response or raise ``FhirError``."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        url = self.url_for(path, params)
        body = None if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(self.retry.total),
            wait=self.retry.wait,
            retry=retryable(idempotent),
            reraise=True,
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "fhir request retry",
                extra={
                    "method": method,
                    "path": urlsplit(url).path,
                    "attempt": state.attempt_number,
                    "error": type(state.outcome.exception()).__name__ if state.outcome else None,
                },
            ),
        )
        try:
            try:
                async for attempt in retrying:
                    with attempt:
                        return await self._send_once(method, url, body, headers)
            except FhirUnauthorized:
                # A token the server no longer accepts (revoked, keys rotated): one fresh token, one
                # more try. Safe for any method: a 401 means the request was not carried out.
                if not _refreshable(self.auth):
                    raise
                async for attempt in retrying.copy():
                    with attempt:
                        return await self._send_once(method, url, body, headers)
        except httpx.TimeoutException as exc:
            raise FhirConnectionError(
                f"timed out talking to {urlsplit(url).netloc} ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            bad_certificate = certificate_error(exc)
            if bad_certificate is not None:
                raise FhirConnectionError(
                    f"TLS certificate verification failed for {urlsplit(url).netloc}: "
                    f"{bad_certificate.verify_message or 'untrusted certificate'}"
                ) from exc
            raise FhirConnectionError(f"cannot reach {urlsplit(url).netloc}: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if self.auth is not None:
            all_headers.update(await self.auth.headers())
        if body is not None:
            all_headers.setdefault("Content-Type", FHIR_JSON)
        self.requests_sent += 1
        response = await self._http.request(method, url, content=body, headers=all_headers)
        self.bytes_received += len(response.content)
        if response.status_code < 400:
            return response
        # A server may echo our credentials in its error; they must not reach messages or logs.
        credential = (all_headers.get("Authorization") or "").partition(" ")[2].strip()
        if response.status_code == 401 and credential and _refreshable(self.auth):
            self.auth.invalidate(credential)  # type: ignore[union-attr]
        text = response.text
        if credential:
            text = text.replace(credential, "[redacted]")
        outcome = None
        try:
            parsed = json.loads(text)
            if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
                outcome = parsed
        except ValueError:
            pass
        error_type = ERROR_BY_STATUS.get(response.status_code, FhirOperationError)
        raise error_type(
            response.status_code,
            method,
            url,
            outcome=outcome,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            body=text[:2000],
        )

    # --- fhirpy integration -------------------------------------------------------------------------

    async def _do_request(
        self,
        method: str,
        path: str,
        data: dict | None = None,
        params: dict | None = None,
        extra_headers: dict | None = None,
        *,
        returning_status: bool = False,
    ) -> Any:
        response = await self.request(
            method, path, params=_flatten(params), json_body=data, headers=extra_headers
        )
        parsed = response_json(response) if response.content else None
        return (parsed, response.status_code) if returning_status else parsed

    # --- conveniences -----------------------------------------------------------------------------

    async def get_json(
        self, path: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None
    ) -> Any:
        response = await self.request("GET", path, params=params)
        return response_json(response)

    async def pages(
        self, path: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a search, following next links (same server only), entries untouched."""
        bundle = await self.get_json(path, params)
        seen: set[str] = set()
        while True:
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise FhirError(f"expected a Bundle from {path}, got {type(bundle).__name__}")
            yield bundle
            next_url = next(
                (link.get("url") for link in bundle.get("link") or () if link.get("relation") == "next"), None
            )
            if not next_url:
                return
            if next_url in seen:
                raise FhirPagingError("the server returned the same next link twice")
            seen.add(next_url)
            bundle = await self.get_json(next_url)

    async def search_resources(
        self, resource_type: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        """All resources of a search, matches and includes, across every page."""
        out: list[dict[str, Any]] = []
        async for bundle in self.pages(resource_type, params):
            out.extend(entry["resource"] for entry in bundle.get("entry") or () if "resource" in entry)
        return out

    async def batch_searches(self, searches: list[str]) -> list[list[dict[str, Any]]]:
        """Run several searches (``Type?params`` built with ``search.query``) in one batch Bundle; return
        each one's resources (matches and includes) across all of its pages."""
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for url in searches],
        }
        reply = await self.transaction(bundle, idempotent=True)
        entries = reply.get("entry") or []
        if len(entries) != len(searches):
            raise FhirError(
                f"the server answered a batch of {len(searches)} searches with {len(entries)} entries"
            )
        results = []
        for search, entry in zip(searches, entries, strict=True):
            status = str((entry.get("response") or {}).get("status", ""))
            page = entry.get("resource")
            if (
                not status.startswith("2")
                or not isinstance(page, dict)
                or page.get("resourceType") != "Bundle"
            ):
                # An OperationOutcome (or nothing) in a 2xx entry is no answer: never read as "no data".
                raise FhirError(f"batch search {search.split('?')[0]} failed with status {status or 'none'}")
            found: list[dict[str, Any]] = []
            seen: set[str] = set()
            while True:
                found.extend(item["resource"] for item in page.get("entry") or () if "resource" in item)
                next_url = next(
                    (ln.get("url") for ln in page.get("link") or () if ln.get("relation") == "next"), None
                )
                if not next_url:
                    break
                if next_url in seen:
                    raise FhirPagingError("the server returned the same next link twice")
                seen.add(next_url)
                page = await self.get_json(next_url)
            results.append(found)
        return results

    async def transaction(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a transaction/batch Bundle to the base. Pass ``idempotent=True`` only for one made of
        conditional or PUT requests, which may safely be resent after a lost answer."""
        response = await self.request("POST", "", json_body=bundle, idempotent=idempotent)
        return response_json(response)


def _flatten(params: dict | None) -> list[tuple[str, str]] | None:
    """fhirpy's params (values may be lists, meaning repeated parameters) as query pairs."""
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(item)))
    return pairs
