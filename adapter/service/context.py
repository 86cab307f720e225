"""What every route of the ingestion service shares: its settings, the running parts (inbox, processor,
CPU pool, set at start-up) and who the caller is (API keys, or ``--dev-open``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.fhir.client import Auth

from .checks import InputError
from .sources import ANY_SYSTEM, DEV_SOURCE, Caller, Source, Sources

JSON_TYPES = ("application/fhir+json", "application/json")
DAY = 86400.0


@dataclass
class ServiceSettings:
    fhir_url: str
    inbox_path: Path
    sources: Sources = field(default_factory=Sources, repr=False)
    dev_open: bool = False
    max_body_bytes: int = 20_000_000
    max_entries: int = 10_000
    process: bool = True
    fhir_auth: Auth | None = field(default=None, repr=False)
    timeout: float = 60.0
    url_aliases: list[str] = field(default_factory=list)
    verify_tls: bool = True
    cpu_workers: int = 2
    replay_window: float = 7 * DAY
    dead_window: float = 30 * DAY
    max_attempts: int = 5
    backoff: float = 2.0
    reference_wait: float = 3600.0
    max_transaction_entries: int = 500
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed on the matching paths
    process_concurrency: int = 64  # payloads in their forward step at once (processor: per-patient order)
    mllp: Any = None  # MllpSettings: HL7 v2 over MLLP into the same inbox (adapter/service/mllp.py)
    # Each served study's registry record (study.json) by study id, for a study not installed under
    # mappings/studies/ (``--study PATH``): the matching protocols answer with its ResearchStudy.
    study_files: dict[str, Path] = field(default_factory=dict)


async def read_body(request: Request, limit: int) -> bytes:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise InputError(415, "not-supported", f"Content-Type must be {' or '.join(JSON_TYPES)}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InputError(413, "too-long", f"body of {declared} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(413, "too-long", f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class ServiceContext:
    """The settings, the running parts by name (``parts["inbox"]``, ``"processor"``, ``"cpu"``) and auth."""

    def __init__(self, settings: ServiceSettings, studies: Sequence[str] = ()) -> None:
        self.settings = settings
        self.studies = tuple(studies)  # the served studies' ids (CapabilityStatement, API description)
        self.parts: dict[str, Any] = {}
        self.dev_source = Source(DEV_SOURCE, frozenset({ANY_SYSTEM}))  # --dev-open: authoritative for all

    def sources(self) -> Sources:
        """The configured sources, plus the development source with ``--dev-open``."""
        sources = self.settings.sources
        if self.settings.dev_open:
            sources = Sources(sources={**sources.sources, DEV_SOURCE: self.dev_source}, keys=sources.keys)
        return sources

    async def body(self, request: Request) -> bytes:
        return await read_body(request, self.settings.max_body_bytes)

    def authorise(self, request: Request) -> Caller:
        if self.settings.dev_open:
            return Caller(self.dev_source, admin=True)
        supplied = request.headers.get("x-api-key") or ""
        header = request.headers.get("authorization") or ""
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        if not supplied:
            raise StarletteHTTPException(401, "authentication required (Bearer token or X-API-Key)")
        caller = self.settings.sources.caller(supplied)
        if caller is None:
            raise StarletteHTTPException(401, "unknown credentials")
        return caller

    def pusher(self, request: Request) -> Source:
        caller = self.authorise(request)
        if caller.source is None:
            raise StarletteHTTPException(403, "an admin key cannot push data; use the sending source's key")
        return caller.source

    def admin(self, request: Request) -> None:
        if not self.authorise(request).admin:
            raise StarletteHTTPException(403, "this operation needs an admin key")

    @staticmethod
    def visible_to(caller: Caller) -> str | None:
        """The source whose payloads a caller may see (None: all, for an admin)."""
        if caller.admin:
            return None
        assert caller.source is not None
        return caller.source.name
