"""Sources: the sending systems (hospitals, integration engines) that push data, and what each may assert.

Every API key belongs to one named source. A source is authoritative for some identifier systems (its
own MRNs): only through those may it create or update a Patient, and only those identifiers stay as
they are on the server; any other identifier it sends is namespaced by the source. It may write only
the resource types it is allowed. Admin keys read every payload's status and replay dead letters.

Configuration, a JSON or YAML file (``serve --sources FILE``)::

    sources:
      - name: hospital-a
        keys: ["a-long-random-key-of-16-or-more-characters"]
        identifier_systems: ["urn:oid:1.2.36.146.595.217.0.1"]
        resource_types: [Patient, Observation, Condition]   # optional; default: every accepted type
        engine_ids: stable      # or per-message: the engine's ids (Observation/1...) restart each message
    admin_keys: ["another-long-random-key"]

Backwards compatible: ``SERVICE_API_KEYS='key:push,key:admin'`` (or ``--api-keys-file``) defines one
source, ``default``, authoritative for the systems in ``SERVICE_AUTHORITATIVE_SYSTEMS`` (comma
separated; ``*``, every system, when unset: safe only because it is then the only source).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.errors import ConfigError

from .checks import ACCEPTED_TYPES

BASE = "http://trial-adapter.org/fhir"
SOURCE_URI = f"{BASE}/source"  # meta.source of everything forwarded: SOURCE_URI/<name>
SOURCE_SYSTEM = f"{BASE}/sid/source"  # Provenance agent identifier system; namespaced identifiers
ANY_SYSTEM = "*"
DEFAULT_SOURCE = "default"
MIN_KEY_LENGTH = 16
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SourceConfigError(ConfigError, ValueError):
    pass


DEV_SOURCE = "dev"  # --dev-open: the one source every unauthenticated push (HTTP or MLLP) comes from


@dataclass(frozen=True)
class Source:
    name: str
    identifier_systems: frozenset[str] = frozenset()
    resource_types: frozenset[str] = ACCEPTED_TYPES
    engine_ids: str = "stable"  # or "per-message": the engine reuses ids in every message

    @property
    def uri(self) -> str:
        return f"{SOURCE_URI}/{self.name}"

    def authoritative_for(self, system: str | None) -> bool:
        return bool(system) and (ANY_SYSTEM in self.identifier_systems or system in self.identifier_systems)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a source (may push), an admin (sees everything), or both."""

    source: Source | None
    admin: bool = False


@dataclass
class Sources:
    sources: dict[str, Source] = field(default_factory=dict)
    keys: dict[str, Caller] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def caller(self, supplied: str) -> Caller | None:
        found = None
        for key, caller in self.keys.items():  # compare with every key: no early exit
            if hmac.compare_digest(supplied.encode(), key.encode()):
                found = caller
        return found

    def _add_key(self, key: Any, caller: Caller) -> None:
        if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH or any(c.isspace() for c in key):
            raise SourceConfigError(f"each API key needs at least {MIN_KEY_LENGTH} characters, no spaces")
        if key in self.keys:
            raise SourceConfigError("an API key is listed twice")
        self.keys[key] = caller

    def _add_source(self, source: Source) -> None:
        if source.name in self.sources:
            raise SourceConfigError(f"source {source.name} is defined twice")
        for other in self.sources.values():
            shared = source.identifier_systems & other.identifier_systems
            if shared or ANY_SYSTEM in source.identifier_systems | other.identifier_systems:
                raise SourceConfigError(
                    f"sources {other.name} and {source.name} claim the same identifier systems; "
                    "each system has one authoritative source ('*' only for a single source)"
                )
        self.sources[source.name] = source

    @classmethod
    def from_file(cls, path: Path) -> Sources:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML, and so JSON too
        except (OSError, UnicodeDecodeError):
            raise SourceConfigError(f"cannot read sources from {path}") from None
        except yaml.YAMLError:
            raise SourceConfigError(f"{path} is not valid JSON or YAML") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Sources:
        if not isinstance(data, dict) or not isinstance(data.get("sources", []), list):
            raise SourceConfigError("the sources file needs a 'sources' list")
        out = cls()
        for index, raw in enumerate(data.get("sources") or []):
            if (
                not isinstance(raw, dict)
                or not isinstance(raw.get("name"), str)
                or not _NAME.match(raw["name"])
            ):
                raise SourceConfigError(
                    f"sources[{index}]: a name of lower-case letters, digits and '-' is required"
                )
            types = _strings(
                raw.get("resource_types", sorted(ACCEPTED_TYPES)), f"sources[{index}].resource_types"
            )
            unknown = set(types) - ACCEPTED_TYPES
            if unknown:
                raise SourceConfigError(f"sources[{index}]: resource types not accepted: {sorted(unknown)}")
            source = Source(
                raw["name"],
                frozenset(
                    _strings(raw.get("identifier_systems", []), f"sources[{index}].identifier_systems")
                ),
                frozenset(types),
                _engine_ids(raw.get("engine_ids", "stable"), index),
            )
            out._add_source(source)
            for key in _strings(raw.get("keys", []), f"sources[{index}].keys"):
                out._add_key(key, Caller(source))
        for key in _strings(data.get("admin_keys", []), "admin_keys"):
            out._add_key(key, Caller(None, admin=True))
        return out

    @classmethod
    def from_legacy(cls, entries: Iterable[str], systems: str | None) -> Sources:
        """'key role' / 'key:role' entries (role push or admin): one source, ``default``."""
        claimed = [s.strip() for s in (systems or ANY_SYSTEM).split(",") if s.strip()]
        default = Source(DEFAULT_SOURCE, frozenset(claimed))
        out = cls()
        for raw in entries:
            parts = raw.replace(":", " ").split()
            if not parts or parts[0].startswith("#"):
                continue
            role = parts[1] if len(parts) > 1 else "push"
            if role not in ("push", "admin"):
                raise SourceConfigError("each API key needs a role of push or admin")
            # An admin key of the legacy form also pushes as the default source, as it always did.
            out._add_key(parts[0], Caller(default, admin=role == "admin"))
        if out.keys:
            out.sources[DEFAULT_SOURCE] = default
        return out


def _engine_ids(value: Any, index: int) -> str:
    if value not in ("stable", "per-message"):
        raise SourceConfigError(f"sources[{index}].engine_ids must be stable or per-message")
    return str(value)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SourceConfigError(f"{where} must be a list of strings")
    return value


def load_sources(sources_file: Path | None, legacy_entries: list[str], legacy_systems: str | None) -> Sources:
    """The configured sources: a sources file, or the legacy keys; both at once is refused."""
    if sources_file is not None and legacy_entries:
        raise SourceConfigError(
            "use either --sources or SERVICE_API_KEYS/--api-keys-file, not both (put every key in the sources file)"
        )
    if sources_file is not None:
        return Sources.from_file(sources_file)
    return Sources.from_legacy(legacy_entries, legacy_systems)


def describe(sources: Sources) -> list[dict[str, Any]]:
    """For the start-up log: names and counts, never keys."""
    return [
        {"source": s.name, "systems": len(s.identifier_systems), "types": len(s.resource_types)}
        for s in sources.sources.values()
    ]
