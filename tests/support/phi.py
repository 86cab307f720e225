"""Patient data that must never reach a log: needles built from the test fixtures themselves.

Sources: the committed sample population (adapter/samples/nct06849401-sample-bundle.json) and the
unit-test builders (tests/support/clinical.py), also as the integration tests move them to today
(tests/support/patients.py). Each needle is a regular expression with a label saying what it is:

- names: every given and family name (whole words, case-sensitive);
- birth dates: every birthDate, and the builders' default birth date shifted to today (+-1 day);
- MRNs: ``system|value`` of every sample MRN, and any value under a known MRN system, raw or
  percent-encoded (the sample's MRN values equal its resource ids, which logs may hold, so the value
  alone is no needle);
- observation values with their units, as a report prints them ("93.5 %", "0.6 mg/dL");
- resource bodies: FHIR element names as JSON keys (``"birthDate":``), i.e. a resource dumped whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from adapter.cli import sample_bundle_path
from tests.support.clinical import AS_OF, candidate_resources, patient

#: Identifier systems that carry MRNs in the fixtures (sample bundle; test_service's engine bundles).
MRN_SYSTEMS = ("http://trial-adapter.org/fhir/sid/sample-mrn", "urn:oid:1.2.36.146.595.217.0.1")
#: Elements whose presence as JSON keys means a resource (or part of one) was logged.
BODY_KEYS = ("birthDate", "valueQuantity", "family", "given", "identifier", "valueCodeableConcept")


@dataclass(frozen=True)
class Needle:
    label: str
    pattern: re.Pattern[str]

    def find(self, text: str) -> str | None:
        match = self.pattern.search(text)
        return match.group(0) if match else None


def _word(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(text)}(?![\w-])")


def _number(value: float) -> Iterator[str]:
    """How a value may be printed: as given, and in the %g form the screening reasons use."""
    yield str(value)
    yield f"{value:g}"
    if isinstance(value, float) and value.is_integer():
        yield str(int(value))


def _value_with_unit(value: float, unit: str) -> re.Pattern[str]:
    numbers = "|".join(re.escape(n) for n in dict.fromkeys(_number(value)))
    return re.compile(rf"(?<![\w.])(?:{numbers}) ?{re.escape(unit)}(?![\w/])")


def _resources() -> list[dict[str, Any]]:
    sample = json.loads(Path(sample_bundle_path()).read_text(encoding="utf-8"))
    return [e["resource"] for e in sample["entry"]] + candidate_resources() + [patient()]


def _quantities(resources: Iterable[dict[str, Any]]) -> Iterator[tuple[float, str]]:
    for resource in resources:
        for holder in (resource, *(resource.get("component") or ())):
            quantity = holder.get("valueQuantity") or {}
            if isinstance(quantity.get("value"), int | float) and quantity.get("unit"):
                yield quantity["value"], quantity["unit"]


@cache
def needles() -> tuple[Needle, ...]:
    resources = _resources()
    found: dict[str, Needle] = {}

    def add(label: str, pattern: re.Pattern[str]) -> None:
        found.setdefault(pattern.pattern, Needle(label, pattern))

    patients = [r for r in resources if r["resourceType"] == "Patient"]
    for p in patients:
        for name in p.get("name") or ():
            for part in [*(name.get("given") or ()), name.get("family")]:
                if part:
                    add(f"name {part}", _word(part))
        if p.get("birthDate"):
            add(f"birth date {p['birthDate']}", _word(p["birthDate"]))
        for identifier in p.get("identifier") or ():
            if identifier.get("system") in MRN_SYSTEMS and identifier.get("value"):
                token = f"{identifier['system']}|{identifier['value']}"
                add(f"MRN {token}", re.compile(re.escape(token)))
    default_birth = date.fromisoformat(patient()["birthDate"])
    for shift in (-1, 0, 1):  # tests/support/patients.py moves the builders' dates to today
        moved = default_birth + (date.today() - AS_OF) + timedelta(days=shift)
        add(f"birth date {moved} (builders, moved to today)", _word(moved.isoformat()))
    for system in MRN_SYSTEMS:
        encoded = re.escape(system).replace(":", "(?::|%3A)").replace("/", "(?:/|%2F)")
        add(f"MRN under {system}", re.compile(rf"{encoded}(?:\||%7C|\\\|)[\w.-]+", re.IGNORECASE))
    for value, unit in _quantities(resources):
        add(f"observation value {value} {unit}", _value_with_unit(value, unit))
    for key in BODY_KEYS:
        add(f"resource element {key} (a resource in the log)", re.compile(rf"[\"']{key}[\"']\s*:"))
    return tuple(found.values())


def hits(text: str) -> list[tuple[str, str]]:
    """(needle label, matched text) for every needle found in ``text``."""
    return [(n.label, m) for n in needles() if (m := n.find(text))]
