"""SMART Backend Services: the signing key, its algorithm, endpoint URLs, and the errors (see smart.py).

Nothing here ever quotes the key: errors name the problem, never the PEM text."""

from __future__ import annotations

import ipaddress
import logging
from typing import Literal
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from adapter.fhir.auth import CredentialError
from adapter.fhir.client import FhirError

log = logging.getLogger("adapter.fhir.smart")  # the logger's name stays what operators filter on

Algorithm = Literal["RS384", "ES384"]
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("RS384", "ES384")
MIN_RSA_BITS = 2048


class SmartAuthError(FhirError):
    """Getting an access token failed. ``str()`` is one line without the assertion or any token."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.error_description = error_description
        self.retry_after = retry_after
        self.retryable = retryable

    def again(self) -> SmartAuthError:
        """A fresh copy, for callers that waited on a refresh which failed."""
        return type(self)(
            str(self),
            status=self.status,
            error=self.error,
            error_description=self.error_description,
            retry_after=self.retry_after,
            retryable=self.retryable,
        )


class SmartConfigError(SmartAuthError, CredentialError):
    """Unusable configuration: a missing setting, an unreadable or unsuitable key, a bad URL."""


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise SmartConfigError(f"the {what} must be an absolute http(s) URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        log.warning("smart auth over plain http", extra={"what": what, "host": parts.netloc})
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_key(private_key_pem: bytes | str) -> PrivateKeyTypes:
    data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted without a password; the message never quotes the key
        raise SmartConfigError("the SMART private key is encrypted; provide an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SmartConfigError("the SMART private key is not a readable PEM private key") from None


def choose_algorithm(key: PrivateKeyTypes, algorithm: str | None) -> Algorithm:
    if algorithm is not None and algorithm not in SUPPORTED_ALGORITHMS:
        raise SmartConfigError(
            f"unsupported signing algorithm {algorithm!r}: SMART Backend Services uses RS384 or ES384"
        )
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SmartConfigError(
                f"the SMART private key is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are required"
            )
        if algorithm not in (None, "RS384"):
            raise SmartConfigError(f"an RSA key signs with RS384, not {algorithm}")
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise SmartConfigError(
                f"the SMART private key is an EC key on {key.curve.name}; ES384 needs P-384 (secp384r1)"
            )
        if algorithm not in (None, "ES384"):
            raise SmartConfigError(f"an EC P-384 key signs with ES384, not {algorithm}")
        return "ES384"
    kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey") or "unknown"
    raise SmartConfigError(
        f"unsupported SMART private key type ({kind}): use an RSA (>= {MIN_RSA_BITS} bits, RS384) "
        "or EC P-384 (ES384) key"
    )
