"""The adapter's environment configuration, in one place: every variable it reads, named and typed.

Options stay on the command line (``adapter/cli/``); the environment holds secrets and deployment settings a
supervisor sets. ``current()`` reads the environment when a command, the service or the worker starts
using it (and each crash point when it is reached), so a test or a supervisor that changes a variable
is honoured; nothing else in ``adapter`` reads ``os.environ`` (``mappings`` reads none: the CLI hands
it ``studies_root``), except ``sources/spark.py``, which hands PySpark its own ``PYSPARK_*`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

STUDIES_ENV = "TRIAL_ADAPTER_STUDIES"  # a folder of study folders, instead of the package's
LOG_FILE_ENV = "TRIAL_ADAPTER_LOG_FILE"  # also every record, at debug, as JSON lines (tests check PHI)
CRASH_AT_ENV = "TRIAL_ADAPTER_CRASH_AT"  # fault injection: exit at this crash point (tests only)
SMART_PREFIX = "SMART_"  # SMART Backend Services client settings (adapter/fhir/smart.py names them)


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(e for e in (value or "").split(",") if e.strip())


def _text(value: str | None) -> str | None:
    return value or None


@dataclass(frozen=True)
class Settings:
    # ``key:role,...``: the service's API keys for one 'default' source (or --sources FILE)
    service_api_keys: tuple[str, ...] = field(default=(), repr=False)
    # identifier systems the 'default' source is authoritative for (comma-separated)
    service_authoritative_systems: str | None = None
    mllp_facilities: tuple[str, ...] = ()  # ``FACILITY:source,...`` for HL7 v2 over MLLP
    worker_notify_token: str | None = field(default=None, repr=False)  # Subscription secret
    studies_root: str | None = None  # where installed studies live (--study ID looks there)
    log_file: str | None = None
    crash_at: str | None = None
    smart: Mapping[str, str] = field(default_factory=dict, repr=False)  # the SMART_* variables

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            service_api_keys=_list(env.get("SERVICE_API_KEYS")),
            service_authoritative_systems=env.get("SERVICE_AUTHORITATIVE_SYSTEMS"),
            mllp_facilities=_list(env.get("MLLP_FACILITIES")),
            worker_notify_token=_text(env.get("WORKER_NOTIFY_TOKEN")),
            studies_root=_text(env.get(STUDIES_ENV)),
            log_file=_text(env.get(LOG_FILE_ENV)),
            crash_at=_text(env.get(CRASH_AT_ENV)),
            smart={k: v for k, v in env.items() if k.startswith(SMART_PREFIX)},
        )


def current() -> Settings:
    """The environment's settings now."""
    return Settings.from_env()


def secret(name: str) -> str:
    """The variable an option names (``--token-env NAME``), stripped; "" when unset."""
    return os.environ.get(name, "").strip()
