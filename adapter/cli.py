"""The ``trial-adapter`` command line.

Every expected failure ends with one line on stderr and a non-zero exit code (1: the work failed,
2: the command was used wrongly), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from adapter import logs
from adapter.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_SCREEN_ERRORS,
    AdapterError,
    UsageError,
    as_adapter_error,
)
from adapter.fhir.auth import bearer_from
from adapter.fhir.client import FhirClient
from adapter.screening.report import FORMATS, render
from adapter.settings import current as environment
from mappings.criteria import load_criteria
from mappings.study import study_dir
from mappings.terminology.conceptmap import load_concept_maps

PROG = "trial-adapter"

DESCRIPTION = """\
FHIR R4 integration adapter for clinical trial NCT06849401 (CD7 CAR-NK cells for children with
relapsed/refractory T-ALL).

  map       write the study's FHIR resources (ResearchStudy, PlanDefinition, Group) as JSON
  publish   publish them to a FHIR server, idempotently (conditional updates)
  screen    screen patients against every eligibility criterion, from files or a FHIR server
  worker    keep screening a FHIR server and flag candidates back in it (ResearchSubject + Task)
  serve     accept patient data pushed by integration engines, keep it safe, screen it
  load-sample  load the bundled sample population into a FHIR server (for trying the above)
  report    what changed since the worker's last pass (new candidates, newly ineligible, ...)

Try:  trial-adapter screen --sample --as-of 2026-11-23 --format html --output report.html
"""


class CliError(AdapterError):
    """A problem the CLI itself finds (an option, a file it writes); ``code``: the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message, code)

    @property
    def code(self) -> int:
        return self.exit_code


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


def _criteria(study: str | None, concept_maps: list[Path] | None = None) -> Any:
    definition = load_criteria(study_dir(study) / "criteria.yaml")
    if concept_maps:
        definition = definition.with_concept_maps(load_concept_maps(concept_maps))
    return definition


def _auth(args: argparse.Namespace) -> Any:
    """SMART Backend Services when asked for (settings from SMART_* variables), else a bearer token."""
    if getattr(args, "smart", False):
        from adapter.fhir.smart_env import smart_auth_from_env

        return smart_auth_from_env(fhir_base_url=args.fhir_url)
    return bearer_from(args.token_env, args.token_file)


def _client(args: argparse.Namespace) -> FhirClient:
    auth = _auth(args)
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
    from adapter.fhir.transaction import transaction_bundle
    from mappings.resources import build_study_resources
    from mappings.study import load_study

    folder = study_dir(args.study)
    criteria = load_criteria(folder / "criteria.yaml")
    built = build_study_resources(load_study(folder / "study.json"), criteria)
    out: Path = args.out
    if args.fhir_version == "5.0":
        return _map_r5(built, out)
    for resource in built.all():
        name = f"{resource['resourceType']}-{resource['id']}.json"
        write_output(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", out / name)
    # transaction.json holds the ValueSets too: what `publish` sends.
    write_output(
        json.dumps(transaction_bundle(built.published()), indent=2, ensure_ascii=False) + "\n",
        out / "transaction.json",
    )
    # The concept sets as ValueSets (is-a filters for roots): the same definition screening evaluates.
    for valueset in built.valuesets:
        write_output(
            json.dumps(valueset, indent=2, ensure_ascii=False) + "\n",
            out / "valuesets" / f"ValueSet-{valueset['id']}.json",
        )
    # The eligibility logic for other engines: EvidenceVariable + CQL Library (mappings.evidence).
    from mappings.evidence import eligibility_export

    export = eligibility_export(criteria, built.research_study["status"])
    for resource in (export.evidence_variable, export.library):
        name = f"{resource['resourceType']}-{resource['id']}.json"
        write_output(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", out / name)
    write_output(export.cql.text, out / f"{export.cql.name}.cql")
    print(
        f"wrote {len(built.all())} resources, transaction.json, {len(built.valuesets)} ValueSets and the "
        f"eligibility export ({len(export.cql.expressed)} criteria in CQL) to {out}",
        file=sys.stderr,
    )
    return 0


def _map_r5(built: Any, out: Path) -> int:
    from mappings.r5 import study_resources_r5

    resources = study_resources_r5(built)
    for resource in resources:
        name = f"{resource['resourceType']}-{resource['id']}.json"
        write_output(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", out / name)
    print(f"wrote {len(resources)} FHIR R5 resources to {out}", file=sys.stderr)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from adapter.publish import publish

    async def run() -> int:
        async with _client(args) as client:
            return await publish(client, args.study, args.dry_run)

    return asyncio.run(run())


SAMPLE_MRN_SYSTEM = "http://trial-adapter.org/fhir/sid/sample-mrn"  # the sample bundle's Patient.identifier


def cmd_load_sample(args: argparse.Namespace) -> int:
    """The bundled sample population into a FHIR server, the way the ingestion service forwards data
    (source 'sample': conditional updates on the sample MRNs, derived ids, meta.source, Provenance)."""
    from datetime import UTC, datetime

    from adapter.service.forward import plan_forward
    from adapter.service.sources import Source

    bundle = json.loads(sample_bundle_path().read_text(encoding="utf-8"))
    source = Source("sample", frozenset({SAMPLE_MRN_SYSTEM}))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    plan = plan_forward(bundle, source, "sample-population", now, max_entries=len(bundle["entry"]))

    async def run() -> None:
        async with _client(args) as client:
            for chunk in plan.chunks:  # conditional updates and PUTs: a rerun changes nothing
                await client.transaction(chunk.bundle, idempotent=True)

    asyncio.run(run())
    patients = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    print(
        f"loaded {len(bundle['entry'])} resources ({patients} patients) into {args.fhir_url}", file=sys.stderr
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from adapter.worker.run import run_worker

    definition = _criteria(args.study, args.concept_map)

    async def run() -> int:
        async with _client(args) as client:
            return await run_worker(args, client, definition)

    return asyncio.run(run())


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
        fhir_auth=_auth(args),
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
    app = create_app(settings, _criteria(args.study, args.concept_map))
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


def cmd_screen(args: argparse.Namespace) -> int:
    from adapter.screening.run import screen_files, screen_server

    definition = _criteria(args.study, args.concept_map)
    progress = _progress(sys.stderr.isatty() and not args.quiet)
    if args.fhir_url:

        async def run() -> Any:
            async with _client(args) as client:
                return await screen_server(client, definition, args.as_of, progress)

        report = asyncio.run(run())
    else:
        source = sample_bundle_path() if args.sample else args.source
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be at least 1")
        report = screen_files(
            source, definition, args.as_of, progress, all_patients=args.all_patients, workers=args.workers
        )
    write_output(render(report, args.format), args.output)
    summary = report.summary
    if not args.quiet:
        print(
            f"screened {summary.screened} patients as of {report.as_of.isoformat()}: "
            f"{summary.candidates} candidates, {summary.not_eligible} not eligible"
            + (
                f"; {summary.outside_population} outside the ALL population (not listed)"
                if summary.outside_population is not None
                else ""
            ),
            file=sys.stderr,
        )
        if summary.population:
            print(f"population: {summary.population}", file=sys.stderr)
        if summary.unmapped:
            print(
                f"{len(summary.unmapped)} codes or texts no criterion recognises (summary.unmapped)",
                file=sys.stderr,
            )
    if summary.errors:  # said even with --quiet: it is why the exit status is not 0
        print(
            f"{PROG}: warning: {summary.errors} patients could not be screened (status error in the report)",
            file=sys.stderr,
        )
        return EXIT_SCREEN_ERRORS
    return 0


# --- parser -------------------------------------------------------------------------------------


def _concept_map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concept-map",
        action="append",
        type=Path,
        metavar="FILE",
        help="a FHIR R4 ConceptMap (JSON) translating the site's local codes to standard ones; repeatable",
    )


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
    group.add_argument(
        "--smart",
        action="store_true",
        help="SMART Backend Services auth (client credentials, private_key_jwt); set SMART_CLIENT_ID, "
        "SMART_PRIVATE_KEY_FILE, and optionally SMART_TOKEN_URL (else discovered), SMART_KEY_ID, SMART_SCOPE",
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
    p_map.add_argument(
        "--fhir-version",
        choices=["4.0", "5.0"],
        default="4.0",
        help="4.0: R4 resources, transaction, EvidenceVariable + CQL (default); 5.0: R5 ResearchStudy + Group",
    )
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
    _concept_map_option(p_screen)
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
    p_screen.add_argument(
        "--all-patients",
        action="store_true",
        help="NDJSON export: list every patient (default: only those with a sign of ALL; the others are "
        "counted in summary.outsidePopulation)",
    )
    p_screen.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="NDJSON export: processes to screen with (default: all cores, at most one per 200 patients of "
        "the ALL population, as each reads the whole export)",
    )
    _server_options(p_screen, required=False)
    p_screen.set_defaults(func=cmd_screen)

    p_load = commands.add_parser(
        "load-sample",
        help="load the bundled sample population (26 patients) into a FHIR server, idempotently",
    )
    _server_options(p_load, required=True)
    p_load.set_defaults(func=cmd_load_sample)

    p_worker = commands.add_parser(
        "worker",
        help="keep screening a FHIR server and flag candidates back in it",
        description="A full screening at start and each new day, then incremental passes over what changed. "
        "Candidates get a ResearchSubject (status candidate) and a review Task; state lives in SQLite.",
    )
    _concept_map_option(p_worker)
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

    p_serve = commands.add_parser(
        "serve",
        help="accept patient data pushed by integration engines, store it durably, screen it",
        description="A FHIR-style HTTP API (POST /fhir with a Bundle, POST /fhir/{type}, PUT /fhir/{type}/{id}, "
        "POST /fhir/ResearchStudy/$screen). Accepted data is committed to an SQLite inbox before the "
        "202, then forwarded to the FHIR server, screened and flagged. Each API key belongs to a source "
        "(--sources FILE, JSON or YAML); SERVICE_API_KEYS ('key:role,...', role push or admin) or "
        "--api-keys-file define one source, 'default'. Keys never come from flags.",
    )
    _concept_map_option(p_serve)
    _server_options(p_serve, required=True)
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

    from adapter.worker.changes import add_report_command

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
