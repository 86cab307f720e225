"""``worker``: keep screening a FHIR server and flag candidates back in it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from .common import client_of, definitions
from .options import concept_map_option, server_options, study_option


def cmd_worker(args: argparse.Namespace) -> int:
    from adapter.worker.run import run_worker

    studies = definitions(args)  # every --study, read before connecting

    async def run() -> int:
        async with client_of(args) as client:
            return await run_worker(args, client, studies)

    return asyncio.run(run())


def add_worker_command(commands: Any) -> None:
    p_worker = commands.add_parser(
        "worker",
        help="keep screening a FHIR server and flag candidates back in it",
        description="A full screening at start and each new day, then incremental passes over what changed. "
        "Candidates get a ResearchSubject (status candidate) and a review Task; state lives in SQLite.",
    )
    study_option(p_worker, several=True)
    concept_map_option(p_worker)
    server_options(p_worker, required=True)
    p_worker.add_argument(
        "--state",
        type=Path,
        default=Path(".trial-adapter/worker.sqlite"),
        metavar="FILE",
        help="SQLite state file",
    )
    p_worker.add_argument(
        "--interval", type=float, default=300.0, metavar="SECONDS", help="poll interval (300)"
    )
    p_worker.add_argument(
        "--overlap",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how far each poll looks back before the checkpoint (300)",
    )
    p_worker.add_argument(
        "--batch-size", type=int, default=50, metavar="N", help="patients per batch request (50)"
    )
    p_worker.add_argument("--once", action="store_true", help="run one pass and exit (for cron and CI)")
    p_worker.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve /healthz and the subscription endpoint here (default with --subscribe: 127.0.0.1:8787)",
    )
    p_worker.add_argument(
        "--subscribe",
        action="store_true",
        help="create rest-hook Subscriptions on the server so changes are screened within seconds",
    )
    p_worker.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL the FHIR server reaches this worker at (default http://HOST:PORT of --listen)",
    )
    p_worker.set_defaults(func=cmd_worker)
