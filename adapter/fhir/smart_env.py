"""SMART Backend Services authorization configured from arguments or ``SMART_*`` settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapter.fhir.smart import SmartBackendAuth
from adapter.fhir.smart_keys import SmartConfigError
from adapter.settings import current as environment

ENV_CLIENT_ID = "SMART_CLIENT_ID"
ENV_TOKEN_URL = "SMART_TOKEN_URL"
ENV_PRIVATE_KEY_FILE = "SMART_PRIVATE_KEY_FILE"
ENV_KEY_ID = "SMART_KEY_ID"
ENV_SCOPE = "SMART_SCOPE"
ENV_ALGORITHM = "SMART_ALGORITHM"


def smart_auth_from_env(
    *,
    client_id: str | None = None,
    token_url: str | None = None,
    private_key_file: str | os.PathLike[str] | None = None,
    key_id: str | None = None,
    scope: str | None = None,
    algorithm: str | None = None,
    fhir_base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> SmartBackendAuth:
    """``SmartBackendAuth`` from arguments, falling back to ``SMART_*`` environment variables.

    The private key is only ever read from a file (``private_key_file`` or ``SMART_PRIVATE_KEY_FILE``).
    Without a token URL (argument or ``SMART_TOKEN_URL``) the token endpoint is discovered from
    ``fhir_base_url`` on first use.
    """
    env = environment().smart if env is None else env

    def setting(value: str | None, name: str) -> str | None:
        chosen = value if value else env.get(name, "")
        return chosen.strip() or None

    client = setting(client_id, ENV_CLIENT_ID)
    if not client:
        raise SmartConfigError(f"a SMART client id is required (set {ENV_CLIENT_ID})")
    url = setting(token_url, ENV_TOKEN_URL)
    if not url and not fhir_base_url:
        raise SmartConfigError(f"a SMART token URL is required (set {ENV_TOKEN_URL})")
    key_path = setting(os.fspath(private_key_file) if private_key_file else None, ENV_PRIVATE_KEY_FILE)
    if not key_path:
        raise SmartConfigError(f"a SMART private key file is required (set {ENV_PRIVATE_KEY_FILE})")
    try:
        pem = Path(key_path).expanduser().read_bytes()
    except OSError as exc:
        raise SmartConfigError(f"cannot read the SMART private key file {key_path}: {exc.strerror}") from None
    if not pem.strip():
        raise SmartConfigError(f"the SMART private key file {key_path} is empty")
    return SmartBackendAuth(
        url,
        client,
        pem,
        key_id=setting(key_id, ENV_KEY_ID),
        algorithm=setting(algorithm, ENV_ALGORITHM),
        scope=setting(scope, ENV_SCOPE) or "system/*.read",
        fhir_base_url=fhir_base_url,
        **kwargs,
    )
