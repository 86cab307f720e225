"""``screen``: every patient of a source (files, an export, a FHIR server) against the study's criteria."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Any

from adapter.errors import EXIT_SCREEN_ERRORS, UsageError
from adapter.screening.report import FORMATS, render

from .common import PROG, as_of_date, client_of, definition, progress_of, sample_bundle_path, write_output
from .options import concept_map_option, server_options, study_option


def cmd_screen(args: argparse.Namespace) -> int:
    from adapter.screening.run import screen_files, screen_server

    criteria = definition(args)
    progress = progress_of(sys.stderr.isatty() and not args.quiet)
    if args.fhir_url and (args.engine == "spark" or args.spark_master):
        raise UsageError("--engine spark screens a Bulk Data NDJSON export (--source), not a server")
    if args.population_group and not args.fhir_url:
        raise UsageError("--population-group needs --fhir-url")
    if args.fhir_url:

        async def run() -> Any:
            async with client_of(args) as client:
                return await screen_server(
                    client, criteria, args.as_of, progress, population_group=args.population_group
                )

        report = asyncio.run(run())
    else:
        source = sample_bundle_path() if args.sample else Path(args.source)
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be at least 1")
        if args.engine == "spark":
            report = _screen_on_spark(args, criteria)
        else:
            if args.spark_master:
                raise UsageError("--spark-master needs --engine spark")
            report = screen_files(
                source, criteria, args.as_of, progress, all_patients=args.all_patients, workers=args.workers
            )
    write_output(render(report, args.format), args.output)
    summary = report.summary
    if not args.quiet:
        disease = criteria.diagnosis_clause().wording.disease  # the study's word for its disease
        print(
            f"screened {summary.screened} patients as of {report.as_of.isoformat()}: "
            f"{summary.candidates} candidates, {summary.not_eligible} not eligible"
            + (
                f"; {summary.outside_population} outside the {disease} population (not listed)"
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


def _screen_on_spark(args: argparse.Namespace, criteria: Any) -> Any:
    from adapter.screening.run import screen_files_spark

    if args.sample or args.source.endswith(".json") or args.workers is not None:
        raise UsageError("--engine spark screens a Bulk Data NDJSON export (--source); no --workers")
    return screen_files_spark(
        args.source, criteria, args.as_of, args.spark_master, all_patients=args.all_patients
    )


def add_screen_command(commands: Any) -> None:
    p_screen = commands.add_parser(
        "screen",
        help="screen patients against every criterion",
        description="Screen every patient of a source against the study's criteria. Exactly one source.",
    )
    study_option(p_screen)
    concept_map_option(p_screen)
    source = p_screen.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--fhir-url", metavar="URL", help="a FHIR R4 server: screens the study population on it"
    )
    source.add_argument(
        "--source",
        metavar="PATH",
        help="a Bundle JSON file, or a directory of Bulk Data NDJSON files (with --engine spark: also any "
        "path Spark reads, e.g. s3a://bucket/export/)",
    )
    source.add_argument(
        "--sample", action="store_true", help="the bundled sample population (no server needed)"
    )
    p_screen.add_argument(
        "--as-of", type=as_of_date, default=date.today(), metavar="YYYY-MM-DD", help="default: today"
    )
    p_screen.add_argument("--format", choices=FORMATS, default="json", help="report format (default json)")
    p_screen.add_argument(
        "--output", type=Path, metavar="FILE", help="write the report here (default: stdout)"
    )
    p_screen.add_argument("--quiet", action="store_true", help="no summary or progress on stderr")
    p_screen.add_argument(
        "--all-patients",
        action="store_true",
        help="NDJSON export: list every patient (default: only those with a sign of the study's disease; "
        "the others are counted in summary.outsidePopulation)",
    )
    p_screen.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="NDJSON export: processes to screen with (default: all cores, at most one per 200 patients of "
        "the study population, as each reads the whole export)",
    )
    p_screen.add_argument(
        "--population-group",
        metavar="Group/ID",
        help="with --fhir-url: screen this Group's Patient members (e.g. an mCODE cohort) instead of the "
        "Condition search; unreachable members are reported in summary.population",
    )
    p_screen.add_argument(
        "--engine",
        choices=("in-process", "spark"),
        default="in-process",
        help="NDJSON export: screen in this process (default) or on Apache Spark (pip install "
        "'trial-adapter[spark]'); the same report",
    )
    p_screen.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: the cluster (default: spark-submit's, else local[*])",
    )
    server_options(p_screen, required=False)
    p_screen.set_defaults(func=cmd_screen)
