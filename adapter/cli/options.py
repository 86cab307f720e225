"""Options more than one command takes: the study, a site's ConceptMaps, a FHIR server."""

from __future__ import annotations

import argparse
from pathlib import Path

STUDY_HELP = (
    "the study: an ID (a folder under the installed studies, mappings/studies or TRIAL_ADAPTER_STUDIES) "
    "or a PATH to a folder holding study.json and criteria.yaml; default: the only installed study"
)


def study_option(parser: argparse.ArgumentParser, *, several: bool = False, top: bool = False) -> None:
    """``--study``; on a subcommand it wins over the global option (SUPPRESS: absent, it sets
    nothing, so the global value stays). Repeatable where a command serves several studies."""
    parser.add_argument(
        "--study",
        action="append",
        metavar="ID|PATH",
        default=None if top else argparse.SUPPRESS,
        help=STUDY_HELP + ("; repeatable: several studies at once" if several else ""),
    )


def concept_map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concept-map",
        action="append",
        type=Path,
        metavar="FILE",
        help="a FHIR R4 ConceptMap (JSON) translating the site's local codes to standard ones; repeatable",
    )


def server_options(parser: argparse.ArgumentParser, required: bool) -> None:
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
