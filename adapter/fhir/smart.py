"""SMART Backend Services authorization: OAuth 2.0 client_credentials with a signed JWT (private_key_jwt).

Implements the client side of the SMART App Launch IG's Backend Services profile and its
``client-confidential-asymmetric`` client authentication (RFC 7523):

- the client assertion is signed with RS384 (RSA, at least 2048 bits) or ES384 (EC P-384); header
  ``typ: JWT`` and ``kid``; claims ``iss = sub = client_id``, ``aud = token URL``, ``exp`` at most five
  minutes ahead, ``iat`` and a fresh random ``jti`` for every token request (retries included, since
  servers may refuse a ``jti`` they have already seen);
- the token endpoint is given or discovered from ``{fhir base}/.well-known/smart-configuration``;
- the access token is cached and refreshed ``refresh_margin`` seconds before it expires, with one
  refresh shared by all concurrent callers.

Secrets (the private key, assertions, access tokens) are never logged and never appear in ``repr()``,
``str()`` or exception messages. The private key is read from a file, never from command-line values.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from adapter.fhir.client import RetryPolicy, parse_retry_after
from adapter.fhir.smart_keys import (
    Algorithm,
    SmartAuthError,
    SmartConfigError,
    check_url,
    choose_algorithm,
    load_key,
    one_line,
)

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future
DEFAULT_EXPIRES_IN = 300  # when the token response has no expires_in
# The token request is safe to repeat (at worst the server issues a second token), so gateway errors
# are retried as well as "not processed" ones.
RETRYABLE_TOKEN_STATUS = frozenset({429, 502, 503, 504})
DEFAULT_RETRY = RetryPolicy(attempts=4, max_wait=30.0, total=90.0, base=0.5)


class SmartBackendAuth:
    """``Auth`` for ``FhirClient``: a cached SMART Backend Services access token as a bearer header.

    Use ``async with`` (or ``aclose()``) to close the HTTP client it creates when none is given.
    Give ``token_url``, or leave it empty and give ``fhir_base_url`` to discover the token endpoint on
    first use (``from_fhir_server`` discovers it at once).
    """

    def __init__(
        self,
        token_url: str | None,
        client_id: str,
        private_key_pem: bytes | str,
        *,
        key_id: str | None = None,
        algorithm: Algorithm | str | None = None,
        scope: str = "system/*.read",
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        lifetime: int = MAX_ASSERTION_LIFETIME,
        refresh_margin: float = 60,
        fhir_base_url: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = 30.0,
    ) -> None:
        if not client_id or not client_id.strip():
            raise SmartConfigError("a SMART client id is required")
        if not scope or not scope.strip():
            raise SmartConfigError("a SMART scope is required")
        if lifetime <= 0:
            raise SmartConfigError("the assertion lifetime must be positive")
        if refresh_margin < 0:
            raise SmartConfigError("the refresh margin cannot be negative")
        if not token_url and not fhir_base_url:
            raise SmartConfigError("a SMART token URL (or a FHIR base URL to discover it from) is required")
        key = load_key(private_key_pem)
        self.algorithm: Algorithm = choose_algorithm(key, algorithm)
        # Only RSA and EC keys pass _choose_algorithm. Never the PEM text: a key object's repr shows no key.
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SmartConfigError("the private key must be RSA (RS384) or EC P-384 (ES384)")
        self._key = key
        self.token_url: str | None = check_url(token_url, "token URL") if token_url else None
        self.fhir_base_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self.client_id = client_id.strip()
        self.key_id = key_id or None
        if self.key_id is None:
            log.warning("smart auth without a key id", extra={"hint": "SMART requires kid in the assertion"})
        self.scope = " ".join(scope.split())
        self.lifetime = min(int(lifetime), MAX_ASSERTION_LIFETIME)
        self.refresh_margin = float(refresh_margin)
        self.retry = retry or DEFAULT_RETRY
        self._clock = clock
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), follow_redirects=False
        )
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._token_margin = 0.0
        self._failures = 0
        self._last_error: SmartAuthError | None = None
        self.token_requests = 0

    # --- construction helpers ---------------------------------------------------------------------

    @classmethod
    async def from_fhir_server(
        cls,
        fhir_base_url: str,
        client_id: str,
        private_key_pem: bytes | str,
        **kwargs: Any,
    ) -> SmartBackendAuth:
        """Discover the token endpoint from ``{base}/.well-known/smart-configuration`` now."""
        auth = cls(None, client_id, private_key_pem, fhir_base_url=fhir_base_url, **kwargs)
        try:
            await auth.discover()
        except BaseException:
            await auth.aclose()
            raise
        return auth

    # --- the Auth protocol --------------------------------------------------------------------------

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.access_token()}"}

    async def access_token(self) -> str:
        """A token with more than the refresh margin left, fetching one if needed (one fetch at a time)."""
        token = self._usable_token()
        if token is not None:
            return token
        failures_before = self._failures
        async with self._lock:
            token = self._usable_token()
            if token is not None:  # another caller refreshed while we waited
                return token
            if self._failures != failures_before and self._last_error is not None:
                raise self._last_error.again()  # the refresh we waited on failed; don't repeat it at once
            try:
                return await self._fetch_token()
            except SmartAuthError as exc:
                self._failures += 1
                self._last_error = exc
                raise

    def invalidate(self, rejected: str | None = None) -> None:
        """Forget the cached token (e.g. after the FHIR server rejected it); the next call fetches one.

        ``rejected``: the token a server refused. When requests in flight all come back 401, only the
        first one throws the token away; the others find a fresh token already fetched."""
        if rejected is not None and rejected != self._token:
            return
        self._token = None
        self._expires_at = 0.0

    def _usable_token(self) -> str | None:
        if self._token is not None and self._expires_at - self._clock() > self._token_margin:
            return self._token
        return None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> SmartBackendAuth:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:  # never the key or the token
        return (
            f"SmartBackendAuth(client_id={self.client_id!r}, token_url={self.token_url!r}, "
            f"algorithm={self.algorithm!r}, key_id={self.key_id!r}, scope={self.scope!r})"
        )

    __str__ = __repr__

    # --- discovery ---------------------------------------------------------------------------------

    async def discover(self) -> str:
        """Read the token endpoint from the FHIR server's SMART configuration and use it."""
        if not self.fhir_base_url:
            raise SmartConfigError("no FHIR base URL to discover the SMART configuration from")
        url = f"{self.fhir_base_url}/.well-known/smart-configuration"
        where = f"{urlsplit(url).netloc}{urlsplit(url).path}"

        async def get() -> httpx.Response:
            response = await self._http.get(
                url, headers={"Accept": "application/json"}, follow_redirects=True
            )
            if response.status_code in RETRYABLE_TOKEN_STATUS:
                raise SmartAuthError(
                    f"SMART discovery at {where} failed: HTTP {response.status_code}",
                    status=response.status_code,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    retryable=True,
                )
            return response

        response = await self._with_retries(get, f"SMART discovery at {where}")
        if response.status_code != 200:
            raise SmartAuthError(
                f"no SMART configuration at {where}: HTTP {response.status_code}", status=response.status_code
            )
        try:
            config = response.json()
        except ValueError:
            config = None
        if not isinstance(config, dict):
            raise SmartAuthError(f"the SMART configuration at {where} is not a JSON object")
        endpoint = config.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise SmartAuthError(f"the SMART configuration at {where} has no token_endpoint")
        methods = config.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and "private_key_jwt" not in methods:
            raise SmartAuthError(
                f"the SMART configuration at {where} does not offer private_key_jwt client authentication "
                f"(offers: {', '.join(map(str, methods)) or 'none'})"
            )
        algs = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algs, list) and self.algorithm not in algs:
            raise SmartAuthError(
                f"the SMART configuration at {where} does not accept {self.algorithm} assertions "
                f"(accepts: {', '.join(map(str, algs)) or 'none'})"
            )
        self.token_url = check_url(endpoint, "token endpoint")
        log.info("smart token endpoint discovered", extra={"token_host": urlsplit(endpoint).netloc})
        return self.token_url

    # --- the token request -------------------------------------------------------------------------

    def client_assertion(self, token_url: str | None = None) -> str:
        """A freshly signed client assertion (new ``jti`` each time) for the token endpoint."""
        audience = token_url or self.token_url
        if not audience:
            raise SmartConfigError("the SMART token endpoint is not known yet")
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_urlsafe(32),
        }
        headers: dict[str, Any] = {"typ": "JWT"}
        if self.key_id:
            headers["kid"] = self.key_id
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    async def _fetch_token(self) -> str:
        token_url = self.token_url or await self.discover()
        parts = urlsplit(token_url)
        where = f"{parts.netloc}{parts.path}"

        async def post() -> tuple[httpx.Response, float, str]:
            assertion = self.client_assertion(token_url)  # a new jti for every attempt
            requested_at = self._clock()
            self.token_requests += 1
            response = await self._http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.scope,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
                headers={"Accept": "application/json"},
            )
            if response.status_code >= 400:
                raise self._token_error(response, where, assertion)
            return response, requested_at, assertion

        response, requested_at, assertion = await self._with_retries(post, f"SMART token request to {where}")
        return self._accept_token(response, requested_at, where, assertion)

    def _token_error(self, response: httpx.Response, where: str, assertion: str) -> SmartAuthError:
        status = response.status_code
        error = description = None
        if 400 <= status < 500:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                error = self._clean(body.get("error"), assertion, 100)
                description = self._clean(body.get("error_description"), assertion, 300)
        message = f"SMART token request to {where} failed: HTTP {status}"
        if error:
            message += f" {error}"
        if description:
            message += f": {description}"
        return SmartAuthError(
            message,
            status=status,
            error=error,
            error_description=description,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            retryable=status in RETRYABLE_TOKEN_STATUS,
        )

    def _clean(self, value: Any, assertion: str, limit: int) -> str | None:
        """Server-supplied text, on one line, with anything of ours that it might echo removed."""
        if not isinstance(value, str) or not value.strip():
            return None
        text = value
        for secret in (assertion, self._token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return one_line(text, limit) or None

    def _accept_token(self, response: httpx.Response, requested_at: float, where: str, assertion: str) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SmartAuthError(f"the SMART token endpoint {where} answered without a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise SmartAuthError(f"the SMART token endpoint {where} answered without an access_token")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            shown = self._clean(token_type, assertion, 40) if isinstance(token_type, str) else None
            raise SmartAuthError(
                f"the SMART token endpoint {where} issued a token of type {shown or 'none'}, not bearer"
            )
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
        if isinstance(expires_in, str) and expires_in.strip().isdigit():
            expires_in = int(expires_in)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise SmartAuthError(f"the SMART token endpoint {where} answered with an invalid expires_in")
        self._token = token.strip()
        self._expires_at = requested_at + float(expires_in)
        # A short-lived token is refreshed half way through rather than on every request.
        self._token_margin = min(self.refresh_margin, float(expires_in) / 2)
        log.info(
            "smart access token obtained",
            extra={"token_host": where.split("/")[0], "expires_in": expires_in, "scope": body.get("scope")},
        )
        return self._token

    # --- retries -------------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, SmartAuthError) and error.retry_after is not None:
            return min(self.retry.max_wait, max(error.retry_after, 0.0))
        return min(self.retry.max_wait, self.retry.base * 2 ** (state.attempt_number - 1))

    async def _with_retries(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        def retryable(error: BaseException) -> bool:
            if isinstance(error, SmartAuthError):
                return error.retryable
            return isinstance(error, httpx.TransportError)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(self.retry.total),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            reraise=True,
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "smart auth retry",
                extra={
                    "what": what,
                    "attempt": state.attempt_number,
                    "error": type(state.outcome.exception()).__name__ if state.outcome else None,
                },
            ),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except httpx.TimeoutException as exc:
            raise SmartAuthError(f"{what} timed out ({type(exc).__name__})", retryable=True) from None
        except httpx.TransportError as exc:
            raise SmartAuthError(f"{what} failed: {type(exc).__name__}", retryable=True) from None
        raise AssertionError("unreachable")  # pragma: no cover
