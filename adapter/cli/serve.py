"""``serve``: the ingestion service (FHIR-style HTTP API, optional HL7 v2 over MLLP)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
from pathlib import Path
from typing import Any

from adapter.errors import UsageError
from adapter.settings import current as environment

from .common import CliError, auth_of, definitions
from .options import concept_map_option, server_options, study_option


def _sources(args: argparse.Namespace) -> Any:
    """Sources from --sources FILE, or (backwards compatible) one 'default' source from SERVICE_API_KEYS
    ('key:role,...') and/or --api-keys-file ('key role' lines)."""
    from adapter.service.sources import load_sources

    env = environment()
    entries = list(env.service_api_keys)
    if args.api_keys_file:
        try:
            entries += args.api_keys_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise CliError(f"cannot read API keys from {args.api_keys_file}") from None
    entries = [e for e in entries if e.strip() and not e.strip().startswith("#")]
    return load_sources(args.sources, entries, env.service_authoritative_systems)


def _bind(host: str, port: int) -> Any:
    """The listening socket, bound here so that a taken port is one clear line, not uvicorn's exit 3."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise CliError(
            f"cannot listen on {host}:{port}: the port {reason}; choose another with --listen"
        ) from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from adapter.httpserver import EmbeddedServer, parse_listen
    from adapter.service import mllp_wiring
    from adapter.service.app import DAY, ServiceSettings, create_app
    from adapter.service.matching_routes import check_origins

    studies = definitions(args)  # every --study, read before anything listens
    sources = _sources(args)
    if not sources and not args.dev_open:
        raise UsageError(
            "no API keys configured: use --sources FILE, SERVICE_API_KEYS or --api-keys-file "
            "(or --dev-open, development only)"
        )
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        mllp = mllp_wiring.settings_from_args(args)
        mllp_wiring.check_facilities(mllp, sources)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        cors_origins = check_origins(args.cors_origin or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = ServiceSettings(
        mllp=mllp,
        cors_origins=cors_origins,
        fhir_url=args.fhir_url,
        inbox_path=args.inbox,
        sources=sources,
        dev_open=args.dev_open,
        max_body_bytes=args.max_body_bytes,
        max_entries=args.max_entries,
        process=not args.no_processing,
        fhir_auth=auth_of(args),
        timeout=args.timeout,
        url_aliases=args.url_alias or [],
        verify_tls=not args.insecure,
        cpu_workers=args.cpu_workers,
        replay_window=args.replay_window_days * DAY,
        dead_window=args.dead_letter_days * DAY,
        max_attempts=args.max_attempts,
        backoff=args.retry_backoff,
        reference_wait=args.reference_wait,
        max_transaction_entries=args.max_transaction_entries,
        process_concurrency=args.process_concurrency,
    )
    sock = _bind(host, port)
    app = create_app(settings, studies)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        use_colors=False,
    )
    server = EmbeddedServer(config)

    async def run() -> None:
        # Our own signal handling: a graceful stop (the payload in hand finished) exits 0.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        with contextlib.suppress(SystemExit):  # uvicorn exits when start-up fails: answered below
            await server.serve(sockets=[sock])

    asyncio.run(run())
    if not server.started:
        where = args.listen + (f" (MLLP {args.mllp_listen})" if args.mllp_listen else "")
        raise CliError(f"the service could not start on {where}")
    return 0


def add_serve_command(commands: Any) -> None:
    p_serve = commands.add_parser(
        "serve",
        help="accept patient data pushed by integration engines, store it durably, screen it",
        description="A FHIR-style HTTP API (POST /fhir with a Bundle, POST /fhir/{type}, PUT /fhir/{type}/{id}, "
        "POST /fhir/ResearchStudy/$screen). Accepted data is committed to an SQLite inbox before the "
        "202, then forwarded to the FHIR server, screened and flagged. Each API key belongs to a source "
        "(--sources FILE, JSON or YAML); SERVICE_API_KEYS ('key:role,...', role push or admin) or "
        "--api-keys-file define one source, 'default'. Keys never come from flags.",
    )
    study_option(p_serve, several=True)
    concept_map_option(p_serve)
    server_options(p_serve, required=True)
    p_serve.add_argument(
        "--listen", default="127.0.0.1:8090", metavar="HOST:PORT", help="default 127.0.0.1:8090"
    )
    p_serve.add_argument(
        "--inbox",
        type=Path,
        default=Path(".trial-adapter/inbox.sqlite"),
        metavar="FILE",
        help="SQLite inbox file (created mode 0600)",
    )
    p_serve.add_argument(
        "--sources", type=Path, metavar="FILE", help="the sources: their keys, identifier systems and types"
    )
    p_serve.add_argument(
        "--api-keys-file",
        type=Path,
        metavar="FILE",
        help="API keys of the default source, 'key role' per line",
    )
    p_serve.add_argument(
        "--dev-open", action="store_true", help="DEVELOPMENT ONLY: accept requests without credentials"
    )
    p_serve.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin (https://host[:port]) allowed to call the trial-matching endpoints "
        "(/match/getClinicalTrial, ResearchStudy/$match); repeatable; default none",
    )
    p_serve.add_argument(
        "--max-body-bytes", type=int, default=20_000_000, metavar="N", help="request size limit"
    )
    p_serve.add_argument("--max-entries", type=int, default=10_000, metavar="N", help="Bundle entry limit")
    p_serve.add_argument(
        "--max-transaction-entries",
        type=int,
        default=500,
        metavar="N",
        help="collection and batch Bundles are forwarded in transactions of at most N entries (default 500)",
    )
    p_serve.add_argument(
        "--process-concurrency",
        type=int,
        default=64,
        metavar="N",
        help="payloads in their forward step at once, in order per patient (default 64; they reach the "
        "server as at most 2 batched transactions at a time)",
    )
    p_serve.add_argument(
        "--cpu-workers",
        type=int,
        default=2,
        metavar="N",
        help="processes for parsing and $screen (default 2)",
    )
    p_serve.add_argument(
        "--replay-window-days",
        type=float,
        default=7.0,
        metavar="DAYS",
        help="keep a processed payload's body this long, for replay (default 7)",
    )
    p_serve.add_argument(
        "--dead-letter-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="keep a dead letter's body this long (default 30)",
    )
    p_serve.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        metavar="N",
        help="attempts while the FHIR server is up (default 5)",
    )
    p_serve.add_argument(
        "--retry-backoff", type=float, default=2.0, metavar="SECONDS", help="first retry delay (default 2)"
    )
    p_serve.add_argument(
        "--reference-wait",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long data waits for the Patient it refers to (default 3600)",
    )
    p_serve.add_argument(
        "--no-processing",
        action="store_true",
        help="accept and store only (maintenance); process on the next start",
    )
    from adapter.service.mllp_wiring import add_arguments as add_mllp_arguments

    add_mllp_arguments(p_serve)
    p_serve.set_defaults(func=cmd_serve)
