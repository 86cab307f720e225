"""Credentials for outbound FHIR requests. Secrets come from the environment or a file, never flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapter.errors import ConfigError
from adapter.settings import secret


class CredentialError(ConfigError, ValueError):
    pass


@dataclass(frozen=True)
class BearerToken:
    token: str = field(repr=False)

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def __repr__(self) -> str:  # never show the secret
        return "BearerToken(***)"


def bearer_from(env_var: str | None = None, file: Path | None = None) -> BearerToken | None:
    """A bearer token from a file (first line) or an environment variable; None when neither is set."""
    if file is not None:
        try:
            token = file.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError):
            raise CredentialError(f"cannot read a token from {file}") from None
        if not token:
            raise CredentialError(f"the token file {file} is empty")
        return BearerToken(token)
    if env_var:
        token = secret(env_var)
        if token:
            return BearerToken(token)
    return None
