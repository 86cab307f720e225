"""Signs of the disease under study that are not coded evidence of it.

A Condition can show the disease without a code the criteria recognise: its text or a coding's display
names it ("Relapsed T-cell acute lymphoblastic leukaemia", a local code), or it carries a broader code
(ICD-10-CM ``C91`` or the header ``C91`` above ``C91.0x``). Such a record is never read as "no
disease": the diagnosis criterion becomes ``unknown`` and names what was found. The wording comes from
the criteria (``diagnosis.text_signals``); the broader codes from the shipped hierarchies.
"""

from __future__ import annotations

import re
from typing import Any

from mappings import terminology
from mappings.concepts import ConceptSet

_MAX_QUOTE = 80


class Wording:
    """Wording the criteria name (regular expressions from the study definition), looked for in a
    CodeableConcept's text and its codings' displays."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        # One alternation (a hospital's texts repeat: each text is tested once, then memoised).
        scoped = [f"(?i:{p[4:]})" if p.startswith("(?i)") else f"(?:{p})" for p in patterns]
        self._pattern = re.compile("|".join(scoped)) if scoped else None
        self._seen: dict[str, bool] = {}

    def quote(self, concept: Any) -> str | None:
        """The first text or display that matches, quoted (shortened), else None."""
        if not isinstance(concept, dict) or self._pattern is None:
            return None
        texts = [concept.get("text")] + [
            c.get("display") for c in concept.get("coding") or () if isinstance(c, dict)
        ]
        for text in texts:
            if isinstance(text, str) and self._matches(text):
                shown = text.strip()
                return shown if len(shown) <= _MAX_QUOTE else shown[: _MAX_QUOTE - 1] + "…"
        return None

    def _matches(self, text: str) -> bool:
        found = self._seen.get(text)
        if found is None:
            assert self._pattern is not None
            found = self._pattern.search(text) is not None
            if len(self._seen) < 50_000:
                self._seen[text] = found
        return found


class DiseaseSigns:
    """Signs of the disease: wording (``text_signals``) and codes broader than one the ``sets`` name.
    The diagnosis kind builds it from the criteria (``mappings.kinds.diagnosis.DiagnosisSigns``)."""

    def __init__(self, text_signals: tuple[str, ...], sets: list[ConceptSet]) -> None:
        self._wording = Wording(text_signals)
        self._sets = sets
        self._targets = {(c.system, c.code) for s in sets for c in (*s.codes, *s.roots)}
        self._broader: dict[tuple[str, str], bool] = {}

    def recognised(self, concept: dict[str, Any] | None) -> bool:
        return any(s.matching_coding(concept) for s in self._sets)

    def wording(self, concept: Any) -> str | None:
        """The text or display of a CodeableConcept that names the disease, quoted, else None."""
        return self._wording.quote(concept)

    def broader_code(self, concept: Any) -> str | None:
        """``system|code`` of a coding strictly broader than a code the diagnosis recognises, else None."""
        if not isinstance(concept, dict):
            return None
        for coding in concept.get("coding") or ():
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and code and self._is_broader(system, code):
                return f"{_system_label(system)} {code}"
        return None

    def any_sign(self, concept: Any) -> bool:
        return self.wording(concept) is not None or self.broader_code(concept) is not None

    def _is_broader(self, system: str, code: str) -> bool:
        key = (system, code)
        found = self._broader.get(key)
        if found is None:
            term = terminology.default_terminology()
            found = any(
                s == system and term.is_ancestor_of(system, code, target) for s, target in self._targets
            )
            if len(self._broader) < 50_000:
                self._broader[key] = found
        return found


_LABELS = {
    terminology.ICD10CM: "ICD-10-CM",
    terminology.ICD10: "ICD-10",
    terminology.SCT: "SNOMED CT",
    terminology.ICDO3: "ICD-O-3",
    terminology.NCIT: "NCIt",
}


def _system_label(system: str) -> str:
    return _LABELS.get(system, system)
