"""The study's own resources: ``map`` (to files), ``publish`` (to a server), and ``load-sample``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .common import client_of, one_study, sample_bundle_path, write_output
from .options import server_options, study_option

SAMPLE_MRN_SYSTEM = "http://trial-adapter.org/fhir/sid/sample-mrn"  # the sample bundle's Patient.identifier


def cmd_map(args: argparse.Namespace) -> int:
    from adapter.fhir.transaction import transaction_bundle
    from mappings.resources import build_study_resources

    folder = one_study(args)
    built = build_study_resources(folder.study, folder.criteria)
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

    export = eligibility_export(folder.criteria, built.research_study["status"])
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

    folder = one_study(args)  # read before connecting: a broken folder is one line, nothing sent

    async def run() -> int:
        async with client_of(args) as client:
            return await publish(client, folder.study, folder.criteria, args.dry_run)

    return asyncio.run(run())


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
        async with client_of(args) as client:
            for chunk in plan.chunks:  # conditional updates and PUTs: a rerun changes nothing
                await client.transaction(chunk.bundle, idempotent=True)

    asyncio.run(run())
    patients = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    print(
        f"loaded {len(bundle['entry'])} resources ({patients} patients) into {args.fhir_url}", file=sys.stderr
    )
    return 0


def add_study_commands(commands: Any) -> None:
    p_map = commands.add_parser("map", help="write the study's FHIR resources and a transaction Bundle")
    study_option(p_map)
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
    study_option(p_pub)
    server_options(p_pub, required=True)
    p_pub.add_argument(
        "--dry-run", action="store_true", help="show what would be created or changed; write nothing"
    )
    p_pub.set_defaults(func=cmd_publish)

    p_load = commands.add_parser(
        "load-sample",
        help="load the bundled sample population (26 patients) into a FHIR server, idempotently",
    )
    server_options(p_load, required=True)
    p_load.set_defaults(func=cmd_load_sample)
