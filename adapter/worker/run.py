"""``trial-adapter worker``: wiring the worker, its state, HTTP endpoint, subscriptions and signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
from collections.abc import Sequence

import uvicorn

from adapter.fhir.client import FhirClient
from adapter.httpserver import EmbeddedServer, parse_listen
from adapter.settings import current as environment
from adapter.studies import served
from mappings.criteria import CriteriaDefinition

from .http import NOTIFY_PATH, build_app, ensure_subscriptions
from .loop import Worker, WorkerConfig
from .state import WorkerState

log = logging.getLogger(__name__)


async def run_worker(
    args: argparse.Namespace, client: FhirClient, definitions: Sequence[CriteriaDefinition]
) -> int:
    """One worker for every study given (one ``--study`` each)."""
    studies = served(definitions)
    # An older state file was written for one study: the first given (see state.py).
    state = WorkerState(args.state, legacy_study=studies[0].study if len(studies) == 1 else None)
    config = WorkerConfig(
        interval=args.interval, overlap=args.overlap, batch_size=args.batch_size, once=args.once
    )
    worker = Worker(client, studies, state, config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    server: EmbeddedServer | None = None
    server_task = None
    try:
        listen = args.listen or ("127.0.0.1:8787" if args.subscribe else None)
        if listen:
            host, port = parse_listen(listen)
            # The notification secret: from the environment, else a fresh one per run (the
            # subscriptions are updated with it at start).
            secret = environment().worker_notify_token or secrets.token_urlsafe(32)
            server = EmbeddedServer(
                uvicorn.Config(
                    build_app(worker, secret), host=host, port=port, log_level="warning", access_log=False
                )
            )
            server_task = await server.start_in_background()
            log.info("worker endpoint listening", extra={"host": host, "port": port})
            if args.subscribe:
                public = (args.public_url or f"http://{host}:{port}").rstrip("/")
                await ensure_subscriptions(client, worker, public + NOTIFY_PATH, secret)
        return await worker.run()
    finally:
        if server is not None and server_task is not None:
            server.should_exit = True
            await server_task
        state.close()
