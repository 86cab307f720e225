"""The ``trial-adapter`` command line.

Every expected failure ends with one line on stderr and a non-zero exit code (1: the work failed,
2: the command was used wrongly), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from adapter import logs
from adapter.fhir.auth import CredentialError, bearer_from
from adapter.fhir.client import FhirClient, FhirError
from adapter.screening.report import FORMATS, render
from adapter.sources.files import SourceError
from mappings.criteria import CriteriaDefinitionError, load_criteria
from mappings.study import StudyDefinitionError, study_dir

PROG = "trial-adapter"
EXIT_FAILED = 1
EXIT_USAGE = 2

DESCRIPTION = """\
FHIR R4 integration adapter for clinical trial NCT06849401 (CD7 CAR-NK cells for children with
relapsed/refractory T-ALL).

  map       write the study's FHIR resources (ResearchStudy, PlanDefinition, Group) as JSON
  publish   publish them to a FHIR server, idempotently (conditional updates)
  screen    screen patients against every eligibility criterion, from files or a FHIR server
  worker    keep screening a FHIR server and flag candidates back in it (ResearchSubject + Task)

Try:  trial-adapter screen --sample --as-of 2026-11-23 --format html --output report.html
"""


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- helpers ------------------------------------------------------------------------------------


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def sample_bundle_path() -> Path:
    return Path(str(resources.files("adapter.samples").joinpath("nct06849401-sample-bundle.json")))


def write_output(text: str, output: Path | None) -> None:
    """Write to stdout, or atomically to a file (a crash never leaves half a report)."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.resolve()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None


def _criteria(study: str | None) -> Any:
    return load_criteria(study_dir(study) / "criteria.yaml")


def _client(args: argparse.Namespace) -> FhirClient:
    auth = bearer_from(args.token_env, args.token_file)
    return FhirClient(
        args.fhir_url,
        auth=auth,
        timeout=args.timeout,
        url_aliases=args.url_alias or [],
        verify=not args.insecure,
    )


def _progress(enabled: bool) -> Callable[[int, int], None] | None:
    if not enabled:
        return None

    def show(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            end = "\n" if done == total else ""
            sys.stderr.write(f"\rscreened {done}/{total} patients{end}")
            sys.stderr.flush()

    return show


# --- commands -----------------------------------------------------------------------------------


def cmd_map(args: argparse.Namespace) -> int:
    from mappings.resources import build_study_resources, transaction_bundle
    from mappings.study import load_study

    folder = study_dir(args.study)
    built = build_study_resources(load_study(folder / "study.json"), load_criteria(folder / "criteria.yaml"))
    out: Path = args.out
    for resource in built.all():
        name = f"{resource['resourceType']}-{resource['id']}.json"
        write_output(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", out / name)
    write_output(
        json.dumps(transaction_bundle(built), indent=2, ensure_ascii=False) + "\n", out / "transaction.json"
    )
    print(f"wrote {len(built.all())} resources and transaction.json to {out}", file=sys.stderr)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from adapter.publish import publish

    return asyncio.run(publish(args))


def cmd_worker(args: argparse.Namespace) -> int:
    from adapter.worker.run import run_worker

    definition = _criteria(args.study)

    async def run() -> int:
        async with _client(args) as client:
            return await run_worker(args, client, definition)

    return asyncio.run(run())


def cmd_screen(args: argparse.Namespace) -> int:
    from adapter.screening.run import screen_files, screen_server

    definition = _criteria(args.study)
    progress = _progress(sys.stderr.isatty() and not args.quiet)
    if args.fhir_url:

        async def run() -> Any:
            async with _client(args) as client:
                return await screen_server(client, definition, args.as_of, progress)

        report = asyncio.run(run())
    else:
        source = sample_bundle_path() if args.sample else args.source
        report = screen_files(source, definition, args.as_of, progress)
    write_output(render(report, args.format), args.output)
    summary = report.summary
    if not args.quiet:
        print(
            f"screened {summary.screened} patients as of {report.as_of.isoformat()}: "
            f"{summary.candidates} candidates, {summary.not_eligible} not eligible",
            file=sys.stderr,
        )
    return 0


# --- parser -------------------------------------------------------------------------------------


def _server_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("FHIR server")
    if required:
        group.add_argument("--fhir-url", required=True, metavar="URL", help="base URL of the FHIR R4 server")
    group.add_argument(
        "--token-env",
        default="FHIR_TOKEN",
        metavar="NAME",
        help="environment variable holding a bearer token (default: FHIR_TOKEN; the token is never printed)",
    )
    group.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file whose first line is a bearer token"
    )
    group.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-request timeout")
    group.add_argument(
        "--url-alias",
        action="append",
        metavar="URL",
        help="another public base URL of the same server (paging links to it are followed); repeatable",
    )
    group.add_argument("--insecure", action="store_true", help="skip TLS certificate checks (testing only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="json", choices=["json", "text"])
    parser.add_argument("--study", default=None, metavar="NCT", help="study folder under mappings/studies")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_map = commands.add_parser("map", help="write the study's FHIR resources and a transaction Bundle")
    p_map.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p_map.set_defaults(func=cmd_map)

    p_pub = commands.add_parser(
        "publish", help="publish the study resources to a FHIR server (conditional create/update)"
    )
    _server_options(p_pub, required=True)
    p_pub.add_argument(
        "--dry-run", action="store_true", help="show what would be created or changed; write nothing"
    )
    p_pub.set_defaults(func=cmd_publish)

    p_screen = commands.add_parser(
        "screen",
        help="screen patients against every criterion",
        description="Screen every patient of a source against the study's criteria. Exactly one source.",
    )
    source = p_screen.add_mutually_exclusive_group(required=True)
    source.add_argument("--fhir-url", metavar="URL", help="a FHIR R4 server: screens its ALL patients")
    source.add_argument(
        "--source",
        type=Path,
        metavar="PATH",
        help="a Bundle JSON file, or a directory of Bulk Data NDJSON files",
    )
    source.add_argument(
        "--sample", action="store_true", help="the bundled sample population (no server needed)"
    )
    p_screen.add_argument(
        "--as-of", type=_as_of, default=date.today(), metavar="YYYY-MM-DD", help="default: today"
    )
    p_screen.add_argument("--format", choices=FORMATS, default="json", help="report format (default json)")
    p_screen.add_argument(
        "--output", type=Path, metavar="FILE", help="write the report here (default: stdout)"
    )
    p_screen.add_argument("--quiet", action="store_true", help="no summary or progress on stderr")
    _server_options(p_screen, required=False)
    p_screen.set_defaults(func=cmd_screen)

    p_worker = commands.add_parser(
        "worker",
        help="keep screening a FHIR server and flag candidates back in it",
        description="A full screening at start and each new day, then incremental passes over what changed. "
        "Candidates get a ResearchSubject (status candidate) and a review Task; state lives in SQLite.",
    )
    _server_options(p_worker, required=True)
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
    except CliError as exc:
        _fail(str(exc), exc.code)
    except (SourceError, CriteriaDefinitionError, StudyDefinitionError, CredentialError, FhirError) as exc:
        _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # a bug: still one line, with the type to report it by
        if args.log_level == "debug":
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}; rerun with --log-level debug and report it", EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
