"""``report``: what changed since the last pass, read from a worker's SQLite state (no server needed)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import CliError, definitions, write_output
from .options import study_option


def add_report_command(commands: Any) -> None:
    from adapter.worker.changes import FORMATS

    p = commands.add_parser(
        "report",
        help="what changed since the last pass, from a worker's state (no server needed)",
        description="New candidates, patients who became ineligible, unknowns resolved and patients a person "
        "reviewed, from the worker's SQLite state. By default since the start of the latest full (daily) pass.",
    )
    study_option(p, several=True)
    p.add_argument("--state", type=Path, required=True, metavar="FILE", help="the worker's SQLite state file")
    p.add_argument(
        "--since", type=_when, metavar="DATETIME", help="ISO date or date-time (default: last full pass)"
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default), json or html")
    p.add_argument("--output", type=Path, metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=cmd_report)


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_report(args: argparse.Namespace) -> int:
    """The worker's studies as given to it (``--study``, the first one owning an older state file)."""
    from adapter.screening.wording import titles
    from adapter.worker.changes import render, what_changed
    from adapter.worker.state import WorkerState

    if not args.state.is_file():
        raise CliError(f"no worker state at {args.state}")
    studies = definitions(args)
    try:
        state = WorkerState(args.state, legacy_study=studies[0].study if len(studies) == 1 else None)
        try:
            report = what_changed(state, args.since, {d.study: titles(d) for d in studies})
        finally:
            state.close()
    except sqlite3.DatabaseError:
        raise CliError(f"{args.state} is not a worker state file") from None
    write_output(render(report, args.format), args.output)
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
