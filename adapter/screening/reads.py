"""What screening reads: which resources of a source can change a screening result.

A hospital export is mostly noise for this trial (vital signs, routine labs, ordinary diagnoses).
Sources use this to decide what to check up front and what to skip:

- Observations are read only through the criteria's exact codes (``PatientRecord.observations_coded``),
  so an Observation carrying none of them is never read; in NDJSON its line need not even be parsed.
- Observations are also read when a component carries a criteria code, and local codes that the site's
  ConceptMaps translate to a criteria code count as criteria codes (in raw lines too).
- Conditions, Procedures and medications are read only when a coding matches one of the criteria's
  concept sets (descendants, RxNorm ingredients and ConceptMap translations included), is broader than
  a code a set names (an ICD-10-CM header), or (Conditions) names ALL in words (``signs``). Others
  are skipped by the engine, which reads defensively; if one is malformed enough to trip it, the
  whole record is validated then
  (``adapter.pipeline.diagnose``), so a broken resource is still named.
- Patients, Immunizations (any vaccination counts) and Medications are always read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mappings.clinical.resource_types import ALWAYS_READ, CODED_ELEMENTS, NEVER_READ
from mappings.clinical.signs import Wording
from mappings.criteria import CriteriaDefinition
from mappings.kinds.diagnosis import DiagnosisSigns
from mappings.kinds.registry import kind_of
from mappings.terminology import RXNORM, default_terminology

# The only Patient elements screening reads. A hospital's Patient is mostly names, addresses,
# identifiers and contacts; validating those would cost most of the check and protect nothing.
_PATIENT_READ = (
    "resourceType",
    "id",
    "birthDate",
    "_birthDate",
    "gender",
    "deceasedBoolean",
    "deceasedDateTime",
)
# The top-level type of an NDJSON line (Bulk Data writers put resourceType first).
_OBSERVATION_START = b'{"resourceType":"Observation",'
_LINE_TYPE = re.compile(rb'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]{1,64})"\s*,')


def _json_text(value: str) -> bytes:
    """A string as it appears inside JSON quotes (a local code may hold a quote or a backslash)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode()


class ScreeningReads:
    """The criteria's view of a source: what is read, what can be skipped unparsed."""

    def __init__(self, definition: CriteriaDefinition) -> None:
        # Load the shipped hierarchies now: a broken table is a clear error before any record is read,
        # not a failure in the middle of one patient's screening.
        default_terminology()
        maps = definition.concept_maps
        standard = [(c.system, c.code) for c in definition.observation_codes()]
        # A site's local codes that its ConceptMaps translate to a criterion's code are read too.
        self.observation_codes = frozenset(standard + maps.sources_for(standard))
        self._maps = maps
        self._signs = DiagnosisSigns(definition)
        # Wording a kind looks for in Procedures (surgery named in words): such a Procedure is read.
        self._procedure_wording = Wording(
            tuple(
                pattern
                for criterion in definition.criteria
                for leaf in criterion.leaves()
                for found in (kind_of(leaf).reads(leaf),)
                if "Procedure" in found.resource_types
                for pattern in found.text_signals
            )
        )
        # Any of those codes as the JSON string value of a "code" key. Codes never need escaping; a line
        # with an escape (\u...) is parsed in full instead of trusting this scan.
        values = sorted({code for _, code in self.observation_codes}, key=len, reverse=True)
        self.criteria_code = re.compile(
            rb'"code"\s*:\s*"(?:' + b"|".join(re.escape(_json_text(v)) for v in values) + rb')"'
        )
        self._concepts = list(definition.concepts.values())
        self._matched: dict[tuple[str, str, str | None], bool] = {}

    # --- raw NDJSON lines ------------------------------------------------------------------------

    def skippable_line(self, raw: bytes) -> bool:
        """True when an NDJSON line is a resource no criterion reads, decided without parsing it: an
        Observation without any of the criteria's codes, or a type screening never reads.

        Conservative: anything unusual (resourceType not first, escapes, a line that does not end like
        an object) is parsed and checked as usual. Skipped lines are not checked for JSON syntax: they
        are never read, like the vital signs a Bundle's validation skips."""
        observation = raw.startswith(_OBSERVATION_START)
        if not observation:
            match = _LINE_TYPE.match(raw)
            if match is None:
                return False
            kind = match[1].decode()
            observation = kind == "Observation"
            if not observation and kind not in NEVER_READ:
                return False
        if b"\\u" in raw or not (raw.endswith(b"}\n") or raw.rstrip().endswith(b"}")):
            return False
        return not observation or self.criteria_code.search(raw) is None

    # --- parsed resources ------------------------------------------------------------------------

    def reads(self, resource: dict[str, Any]) -> bool:
        """Whether screening reads this resource's content (so it must be valid FHIR up front)."""
        rtype = str(resource.get("resourceType"))
        if rtype in ALWAYS_READ:
            return True
        if rtype == "Observation":
            if any_coding(resource.get("code"), self._is_observation_code):
                return True
            components = resource.get("component")
            if components is None:
                return False
            if not isinstance(components, list):
                return True  # malformed: let validation name it
            return any(
                not isinstance(c, dict) or any_coding(c.get("code"), self._is_observation_code)
                for c in components
            )
        elements = CODED_ELEMENTS.get(rtype)
        if elements is None:
            return False  # a type screening never reads (Encounter, ...)
        if rtype.startswith("Medication") and "medicationReference" in resource:
            return True  # the code is in a Medication or a contained resource
        concepts: list[Any] = [resource.get(e) for e in elements]
        if rtype == "Condition" and "extension" in resource:  # lineage may be coded in an extension
            extensions = resource["extension"]
            if not isinstance(extensions, list) or not all(isinstance(e, dict) for e in extensions):
                return True  # malformed: let validation name it
            concepts += [e.get("valueCodeableConcept") for e in extensions if isinstance(e, dict)]
        if self._maps:
            concepts = [self._maps.translate_concept(c) for c in concepts]
        if any(any_coding(concept, self._in_any_concept) for concept in concepts):
            return True
        # A Condition that names the disease in words or by a broader code: the diagnosis reads it; a
        # Procedure whose name suggests one a criterion looks for (surgery) is read for review.
        if rtype == "Procedure":
            return self._procedure_wording.quote(resource.get("code")) is not None
        return rtype == "Condition" and self._signs.any_sign(resource.get("code"))

    @staticmethod
    def read_part(resource: dict[str, Any]) -> dict[str, Any]:
        """The part of a resource screening reads, which is what needs validating."""
        if resource.get("resourceType") == "Patient":
            return {key: resource[key] for key in _PATIENT_READ if key in resource}
        return resource

    def _is_observation_code(self, coding: dict[str, Any]) -> bool:
        return (coding.get("system"), coding.get("code")) in self.observation_codes

    def _in_any_concept(self, coding: dict[str, Any]) -> bool:
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return system is not None and code is not None  # wrong types: validation names them
        # RxNorm drugs match by ingredient, read from the drug's name: the display is part of the key.
        display = coding.get("display") if system == RXNORM else None
        key = (system, code, display if isinstance(display, str) else None)
        found = self._matched.get(key)
        if found is None:
            # A broader code than a listed one (ICD-10-CM header) makes a condition unknown: read it.
            found = any(
                concept.matches_coding(coding) or concept.broader_than_member(system, code)
                for concept in self._concepts
            )
            if len(self._matched) < 100_000:  # a hospital's code vocabulary; bounded all the same
                self._matched[key] = found
        return found


def any_coding(concept: Any, test: Callable[[dict[str, Any]], bool]) -> bool:
    """True if a coding of a CodeableConcept passes ``test``, or if the concept is malformed (whoever
    reads it next, validation or a person, must see it)."""
    if concept is None:
        return False
    if not isinstance(concept, dict):
        return True
    codings = concept.get("coding")
    if codings is None:
        return False
    if not isinstance(codings, list):
        return True
    return any(not isinstance(coding, dict) or test(coding) for coding in codings)


# --- what each Observation criterion reads, and over which window (server queries) ----------------


@dataclass(frozen=True)
class ObservationRead:
    """One observation clause: the codes it reads (its concepts' exact codes plus the site's local codes
    mapped to one) and its window in days (None: all history decides, e.g. an undated result)."""

    codes: frozenset[tuple[str, str]]
    window_days: int | None


def observation_reads(definition: CriteriaDefinition) -> list[ObservationRead]:
    """Every clause that reads Observations, in definition order."""
    maps = definition.concept_maps
    found: list[ObservationRead] = []
    for criterion in definition.criteria:
        for leaf in criterion.leaves():
            reads = kind_of(leaf).reads(leaf)
            if "Observation" not in reads.resource_types or not reads.exact_concepts:
                continue
            codes = [
                (c.system, c.code) for name in reads.exact_concepts for c in definition.concepts[name].codes
            ]
            codes += maps.sources_for(codes)
            found.append(ObservationRead(frozenset(codes), reads.window_days))
    return found


def codes_by_widest_window(reads: list[ObservationRead]) -> dict[int | None, list[tuple[str, str]]]:
    """Each code under the widest window of the clauses reading it (None, all history, is widest),
    grouped by that window; codes keep definition order."""
    widest: dict[tuple[str, str], int | None] = {}
    for read in reads:
        for code in sorted(read.codes):
            if code not in widest:
                widest[code] = read.window_days
            else:
                old = widest[code]
                widest[code] = None if old is None or read.window_days is None else max(old, read.window_days)
    groups: dict[int | None, list[tuple[str, str]]] = {}
    for code, window in widest.items():
        groups.setdefault(window, []).append(code)
    return groups
