"""Definitions: the concept sets a study's criteria name (codes by meaning) and the model base.

The lowest layer of ``mappings``: clinical helpers, criterion kinds and the criteria loader build on
it; it reads only the shipped terminology.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mappings import terminology

Result = Literal["met", "not-met", "unknown"]
Comparator = Literal["<", "<=", ">", ">="]


class Model(BaseModel):
    # NaN or infinity as a threshold would make every comparison false: a silent wrong screening.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    """Text signals must be regular expressions: a typo is an error when the criteria load."""
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"text signal {pattern!r} is not a regular expression: {exc}") from None
    return value


# --- concept sets -------------------------------------------------------------------------------


class Code(Model):
    system: str
    code: str
    display: str = ""
    verified: bool = True


class CodeRange(Model):
    """ICD-10 categories compared on their first three characters, inclusive: C00..C96."""

    system: str
    first: str
    last: str

    def contains(self, code: str) -> bool:
        category = code[:3].upper()
        return len(category) == 3 and self.first.upper() <= category <= self.last.upper()


class CodePrefix(Model):
    system: str
    prefix: str

    def contains(self, code: str) -> bool:
        return code.upper().startswith(self.prefix.upper())


class Behaviour(Model):
    """ICD-O-3 morphology codes (``NNNN/B``) whose behaviour digit is ``behaviour``: 3 = malignant."""

    system: str
    behaviour: str


class ConceptSet(Model):
    """Codes by meaning: explicit ``codes``, ``roots`` (the code and all its descendants in its system,
    from ``mappings.terminology``), ICD ``ranges``, ATC ``prefixes``, ICD-O-3 ``behaviours``; minus
    ``exclude`` (each item excludes the code and its descendants). RxNorm drugs count for their
    ingredients (``matches_coding``)."""

    name: str
    display: str
    codes: tuple[Code, ...] = ()
    roots: tuple[Code, ...] = ()
    ranges: tuple[CodeRange, ...] = ()
    prefixes: tuple[CodePrefix, ...] = ()
    behaviours: tuple[Behaviour, ...] = ()
    exclude: tuple[CodePrefix, ...] = ()

    @cached_property
    def _exact(self) -> frozenset[tuple[str, str]]:
        return frozenset((c.system, c.code) for c in self.codes)

    @cached_property
    def _memo(self) -> dict[tuple[str, str], bool]:
        return {}

    @cached_property
    def _ingredient_names(self) -> tuple[str, ...]:
        return tuple(c.display for c in self.codes if c.system == terminology.RXNORM and c.display)

    @cached_property
    def _simple(self) -> bool:
        return not (self.ranges or self.prefixes or self.exclude or self.roots or self.behaviours)

    def matches(self, system: str | None, code: str | None) -> bool:
        if not system or not code:
            return False
        if self._simple:
            return (system, code) in self._exact
        # Hierarchy tests are slow to repeat for every record; a hospital's codes repeat a lot.
        memo = self._memo
        key = (system, code)
        found = memo.get(key)
        if found is None:
            found = self._matches(system, code)
            if len(memo) < 50_000:
                memo[key] = found
        return found

    def _matches(self, system: str, code: str) -> bool:
        term = terminology.default_terminology()
        if any(x.system == system and term.is_a(system, code, x.prefix) for x in self.exclude):
            return False
        if (system, code) in self._exact:
            return True
        if any(r.system == system and term.is_a(system, code, r.code) for r in self.roots):
            return True
        if self.behaviours:
            found = terminology.morphology(code)
            if found and any(b.system == system and b.behaviour == found[1] for b in self.behaviours):
                return True
        return any(r.system == system and r.contains(code) for r in self.ranges) or any(
            p.system == system and p.contains(code) for p in self.prefixes
        )

    @cached_property
    def _named(self) -> tuple[tuple[str, str], ...]:
        return tuple({(c.system, c.code) for c in (*self.codes, *self.roots)})

    @cached_property
    def _broader_memo(self) -> dict[tuple[str, str], bool]:
        return {}

    def broader_than_member(self, system: str, code: str) -> bool:
        """Whether a code is strictly broader than a code this set names (ICD-10-CM ``B18`` above a
        listed ``B18.1``): it may mean a member but does not say so, so it is never a match."""
        key = (system, code)
        found = self._broader_memo.get(key)
        if found is None:
            term = terminology.default_terminology()
            found = not self.matches(system, code) and any(
                s == system and term.is_ancestor_of(system, code, named)
                for s, named in self._named
                if len(code.strip()) >= 3
            )
            if len(self._broader_memo) < 50_000:
                self._broader_memo[key] = found
        return found

    def broader_coding(self, concept: dict[str, Any] | None) -> dict[str, Any] | None:
        for coding in (concept or {}).get("coding") or ():
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and self.broader_than_member(system, code):
                return coding
        return None

    def matches_coding(self, coding: dict[str, Any]) -> bool:
        """A Coding in this set: by its code, or (RxNorm) by one of the drug's ingredients."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return False
        if self.matches(system, code):
            return True
        if system != terminology.RXNORM or not self._ingredient_names:
            return False
        term = terminology.default_terminology()
        if any(self.matches(system, ingredient) for ingredient in term.ingredients_of(code)):
            return True
        display = coding.get("display")
        return isinstance(display, str) and any(
            terminology.names_ingredient(display, name) for name in self._ingredient_names
        )

    def matching_coding(self, concept: dict[str, Any] | None) -> dict[str, Any] | None:
        """The first Coding of a CodeableConcept that belongs to this set, if any."""
        for coding in (concept or {}).get("coding") or ():
            if isinstance(coding, dict) and self.matches_coding(coding):
                return coding
        return None

    def expansion(self) -> list[tuple[str, str]]:
        """Every (system, code) this set names or knows to descend from its roots, for searches.
        Ranges, prefixes and behaviours are patterns: only a terminology server could list them."""
        term = terminology.default_terminology()
        found = [(c.system, c.code) for c in self.codes]
        found += [(r.system, code) for r in self.roots for code in term.expand(r.system, r.code)]
        return [item for item in dict.fromkeys(found) if self.matches(*item)]

    def search_tokens(self) -> list[str]:
        """``system|code`` tokens for a FHIR token search (the expansion)."""
        return [f"{system}|{code}" for system, code in self.expansion()]


class Analyte(Model):
    molar_mass: float = Field(gt=0, description="g/mol")
