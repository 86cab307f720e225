"""The parser (one global part, each command group adding its own) and ``main``.

Every expected failure ends with one line on stderr and a non-zero exit code (1: the work failed,
2: the command was used wrongly), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from adapter import logs
from adapter.errors import EXIT_FAILED, EXIT_INTERRUPTED, as_adapter_error

from .common import PROG
from .options import study_option
from .report import add_report_command
from .screen import add_screen_command
from .serve import add_serve_command
from .study_commands import add_study_commands
from .worker import add_worker_command

DESCRIPTION = """\
FHIR R4 integration adapter for clinical trials: each study is a folder (study.json + criteria.yaml);
shipped with NCT06849401 (CD7 CAR-NK cells for children with relapsed/refractory T-ALL).

  map       write the study's FHIR resources (ResearchStudy, PlanDefinition, Group) as JSON
  publish   publish them to a FHIR server, idempotently (conditional updates)
  screen    screen patients against every eligibility criterion, from files or a FHIR server
  worker    keep screening a FHIR server and flag candidates back in it (ResearchSubject + Task)
  serve     accept patient data pushed by integration engines, keep it safe, screen it
  load-sample  load the bundled sample population into a FHIR server (for trying the above)
  report    what changed since the worker's last pass (new candidates, newly ineligible, ...)

--study ID|PATH (before or after the command) picks the study; default: the only installed one.

Try:  trial-adapter screen --sample --as-of 2026-11-23 --format html --output report.html
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="json", choices=["json", "text"])
    study_option(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_study_commands(commands)
    add_screen_command(commands)
    add_worker_command(commands)
    add_serve_command(commands)
    add_report_command(commands)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        known = as_adapter_error(exc)
        if known is not None:  # one of ours (or a study definition's): its line, its exit code
            _fail(str(known), known.exit_code)
        # a bug: still one line, with the type to report it by
        if args.log_level == "debug":
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}; rerun with --log-level debug and report it", EXIT_FAILED)
