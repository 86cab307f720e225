"""Wiring the MLLP listener into ``trial-adapter serve``: its command-line options and settings, and
the accept function that puts a converted message into today's Inbox (the same inbox, processing and
exactly-once rules as HTTP pushes).

Sending facilities come from ``--mllp-facilities FILE`` (one ``FACILITY SOURCE`` per line, ``#``
comments) and/or ``MLLP_FACILITIES='FACILITY:source,...'``. FACILITY is MSH-4's namespace id (HD.1)
or universal id (HD.2); SOURCE is a source of ``--sources`` (checked at start-up): a message is
accepted as that source's push, with its authority and its idempotency scope. Several facilities of
one hospital (its ADT and lab feeds) usually map to one source, the one authoritative for the
hospital's MRN system. With ``--dev-open`` every facility pushes as the ``dev`` source.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.fault_points import crash_point
from adapter.httpserver import parse_listen
from adapter.settings import current as environment

from .checks import InputError
from .inbox import IdempotencyConflict, Inbox
from .intake import CpuPool, check_push
from .mllp import Accept, Accepted, Duplicate, MllpSettings, Rejected
from .sources import Sources


def inbox_acceptor(
    inbox: Inbox, wake: Callable[[], None], sources: Sources, cpu: CpuPool, max_entries: int = 10_000
) -> Accept:
    """Accept a converted message as its facility's source: the checks, authority rules and
    exactly-once inbox an HTTP push of the same Bundle gets."""

    async def accept(source_name: str, key: str, bundle: dict[str, Any]) -> Accepted | Duplicate:
        source = sources.sources.get(source_name)
        if source is None:
            raise Rejected("the sending facility maps to a source this service does not know")
        body = json.dumps(bundle, separators=(",", ":")).encode()
        try:
            checked = await cpu.run(check_push, body, max_entries, source)
            item_id, created = await asyncio.to_thread(
                inbox.accept, source.name, f"mllp:{key}", body, "bundle", content_hash=checked.content_hash
            )
        except InputError as exc:
            raise Rejected(str(exc)) from None
        except IdempotencyConflict:
            raise Rejected("this message control id was used for another message; use a new MSH-10") from None
        crash_point("mllp-after-accept")
        if created:
            wake()
        return Accepted(item_id) if created else Duplicate(item_id)

    return accept


def check_facilities(settings: MllpSettings | None, sources: Sources) -> None:
    """At start-up: every facility must feed a configured source (else each message would get AE)."""
    if settings is None or settings.any_facility:
        return
    unknown = sorted(set(settings.facilities.values()) - set(sources.sources))
    if unknown:
        raise ValueError(
            f"MLLP facilities map to sources that are not configured: {', '.join(unknown)} "
            "(define them in --sources, or map the facilities to an existing source)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HL7 v2 over MLLP")
    group.add_argument(
        "--mllp-listen", metavar="HOST:PORT", help="also accept HL7 v2 over MLLP here (off by default)"
    )
    group.add_argument(
        "--mllp-facilities",
        type=Path,
        metavar="FILE",
        help="allowed sending facilities: 'FACILITY SOURCE' per line (SOURCE: a configured source)",
    )
    group.add_argument(
        "--mllp-tls-cert", type=Path, metavar="PEM", help="serve MLLP over TLS with this certificate chain"
    )
    group.add_argument("--mllp-tls-key", type=Path, metavar="PEM", help="the private key of --mllp-tls-cert")
    group.add_argument(
        "--mllp-tls-client-ca",
        type=Path,
        metavar="PEM",
        help="require client certificates signed by these CAs",
    )
    group.add_argument(
        "--mllp-max-bytes", type=int, default=1_000_000, metavar="N", help="message size limit"
    )
    group.add_argument(
        "--mllp-idle-timeout", type=float, default=300.0, metavar="SECONDS", help="close idle connections"
    )
    group.add_argument(
        "--mllp-max-connections", type=int, default=100, metavar="N", help="concurrent connections"
    )
    group.add_argument(
        "--mllp-timezone",
        default="UTC",
        metavar="ZONE",
        help="zone of v2 times sent without an offset (IANA name)",
    )
    group.add_argument(
        "--mllp-local-system-base",
        default="http://trial-adapter.org/fhir/v2/",
        metavar="URL",
        help="base of the code/identifier systems made for a facility's local codes",
    )


def _facilities(args: argparse.Namespace) -> dict[str, str]:
    entries = [e.replace(":", " ") for e in environment().mllp_facilities]
    if args.mllp_facilities:
        try:
            entries += args.mllp_facilities.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise ValueError(f"cannot read the MLLP facilities from {args.mllp_facilities}") from None
    facilities = {}
    for raw in entries:
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2:
            raise ValueError("each MLLP facility entry needs a FACILITY and a SOURCE name")
        facilities[parts[0]] = parts[1]
    return facilities


def settings_from_args(args: argparse.Namespace) -> MllpSettings | None:
    """MLLP settings from ``serve``'s options (None without --mllp-listen); ValueError on bad usage."""
    if not args.mllp_listen:
        return None
    host, port = parse_listen(args.mllp_listen)
    facilities = _facilities(args)
    if not facilities and not args.dev_open:
        raise ValueError(
            "--mllp-listen needs allowed sending facilities (--mllp-facilities or MLLP_FACILITIES)"
        )
    tls = None
    if args.mllp_tls_cert or args.mllp_tls_key:
        if not (args.mllp_tls_cert and args.mllp_tls_key):
            raise ValueError("--mllp-tls-cert and --mllp-tls-key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(args.mllp_tls_cert, args.mllp_tls_key)
            if args.mllp_tls_client_ca:
                tls.load_verify_locations(args.mllp_tls_client_ca)
                tls.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the MLLP TLS files: {exc.__class__.__name__}") from None
    elif args.mllp_tls_client_ca:
        raise ValueError("--mllp-tls-client-ca needs --mllp-tls-cert and --mllp-tls-key")
    try:
        zone = ZoneInfo(args.mllp_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {args.mllp_timezone!r}") from None
    if args.mllp_max_bytes < 1000 or args.mllp_idle_timeout <= 0 or args.mllp_max_connections < 1:
        raise ValueError("MLLP limits must be positive (--mllp-max-bytes at least 1000)")
    return MllpSettings(
        host=host,
        port=port,
        facilities=facilities,
        any_facility=args.dev_open,
        max_message_bytes=args.mllp_max_bytes,
        idle_timeout=args.mllp_idle_timeout,
        max_connections=args.mllp_max_connections,
        tls=tls,
        local_base=args.mllp_local_system_base,
        tz=zone,
    )
