"""Terminology gaps made visible: codes and texts on screened patients that no concept set recognises.

A site's terminologist reads this list to see what its ConceptMap still lacks: every Condition coding
(or, with no coding, its text) that no criterion recognises, and Observations whose text or display
names a criterion's measurement but whose code is not one the criteria read. Counts and a few example
resource ids; never values or names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mappings.clinical.record import PatientRecord, resource_key
from mappings.criteria import CriteriaDefinition
from mappings.kinds.registry import kind_of

from .reads import ScreeningReads

MAX_ENTRIES = 200
MAX_EXAMPLES = 3
# Words too generic to say that an Observation is about a criterion's measurement.
_GENERIC = {
    "blood", "serum", "plasma", "status", "test", "score", "count", "total", "performance", "positive",
    "cells", "with", "class", "grade", "functional", "pregnancy", "observation", "answer", "component",
}  # fmt: skip
_WORD = re.compile(r"[a-z0-9]{4,}")


@dataclass
class _Entry:
    kind: str
    system: str | None
    code: str | None
    text: str | None
    resource_type: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


class UnmappedCollector:
    def __init__(self, definition: CriteriaDefinition, reads: ScreeningReads | None = None) -> None:
        self._reads = reads or ScreeningReads(definition)
        self._maps = definition.concept_maps
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        # The measurements the criteria read, whichever kind reads them (asked through the registry).
        names = {
            name
            for criterion in definition.criteria
            for leaf in criterion.leaves()
            for leaf_reads in [kind_of(leaf).reads(leaf)]
            if "Observation" in leaf_reads.resource_types
            for name in leaf_reads.exact_concepts
        }
        words = {w for n in names for w in _WORD.findall(definition.concepts[n].display.lower())}
        words = {w[:-1] if w.endswith("s") else w for w in words} - _GENERIC
        self._measurement = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, words))) + r")", re.I)

    def add(self, record: PatientRecord) -> None:
        reads = self._reads.reads
        for condition in record.of_type("Condition"):
            if not reads(condition):
                self._note(condition)
        for obs in record.of_type("Observation"):
            code = obs.get("code")
            if isinstance(code, dict) and not reads(obs) and self._names_measurement(code):
                self._note(obs)

    def _names_measurement(self, code: dict[str, Any]) -> bool:
        texts = [code.get("text")] + [
            c.get("display") for c in code.get("coding") or () if isinstance(c, dict)
        ]
        return any(isinstance(t, str) and self._measurement.search(t) for t in texts)

    def _note(self, resource: dict[str, Any]) -> None:
        code = resource.get("code")
        if not isinstance(code, dict):
            return
        rtype = str(resource.get("resourceType"))
        codings = [
            c
            for c in code.get("coding") or ()
            if isinstance(c, dict) and isinstance(c.get("code"), str) and isinstance(c.get("system"), str)
        ]
        keys: list[tuple[Any, ...]] = [("code", c["system"], c["code"], rtype) for c in codings]
        text = code.get("text")
        if not keys and isinstance(text, str) and text.strip():
            keys = [("text", None, None, rtype, text.strip()[:200])]
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES * 20:
                    continue  # bounded memory on a huge vocabulary; the most frequent are kept below
                entry = _Entry(
                    kind=key[0],
                    system=key[1],
                    code=key[2],
                    text=key[4] if key[0] == "text" else _display(codings, key[2]),
                    resource_type=rtype,
                )
                self._entries[key] = entry
            entry.count += 1
            ref = resource_key(resource)
            if ref:
                _keep_example(entry.examples, ref)

    def findings(self) -> dict[tuple[Any, ...], _Entry]:
        """What was found so far, small enough to send from a worker process to ``absorb``."""
        return self._entries

    def absorb(self, findings: dict[tuple[Any, ...], _Entry]) -> None:
        """Add another collector's findings (a worker's share of the patients): counts add up and the
        examples are the same as one collector over every patient would keep."""
        for key, found in findings.items():
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES * 20:
                    continue
                entry = self._entries[key] = _Entry(
                    found.kind, found.system, found.code, found.text, found.resource_type
                )
            entry.count += found.count
            for ref in found.examples:
                _keep_example(entry.examples, ref)

    def entries(self) -> list[dict[str, Any]]:
        """The most frequent first, at most ``MAX_ENTRIES``."""
        ordered = sorted(
            self._entries.values(),
            key=lambda e: (-e.count, e.kind, e.system or "", e.code or "", e.text or "", e.resource_type),
        )
        return [
            {
                "kind": e.kind,
                "system": e.system,
                "code": e.code,
                "text": e.text,
                "resourceType": e.resource_type,
                "count": e.count,
                "examples": e.examples,
            }
            for e in ordered[:MAX_ENTRIES]
        ]


def _keep_example(examples: list[str], ref: str) -> None:
    """The smallest ids seen, in order: the same examples whatever order the records come in."""
    if ref not in examples:
        examples.append(ref)
        examples.sort()
        del examples[MAX_EXAMPLES:]


def _display(codings: list[dict[str, Any]], code: str | None) -> str | None:
    for coding in codings:
        if coding.get("code") == code and isinstance(coding.get("display"), str):
            return str(coding["display"])[:200]
    return None
