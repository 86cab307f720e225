"""The criteria definition: schema, loader and concept matching.

One YAML file per study (``mappings/studies/<NCT>/criteria.yaml``) defines every eligibility criterion
once. The published Group (``mappings.resources``) and the screening engine (``adapter.screening``)
both read this model, so the criteria cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mappings import terminology
from mappings.terminology.conceptmap import ConceptMaps

Result = Literal["met", "not-met", "unknown"]
Comparator = Literal["<", "<=", ">", ">="]


class CriteriaDefinitionError(ValueError):
    """The criteria file cannot be used; the message says where and why."""


class _Model(BaseModel):
    # NaN or infinity as a threshold would make every comparison false: a silent wrong screening.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    """Text signals must be regular expressions: a typo is an error when the criteria load."""
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"text signal {pattern!r} is not a regular expression: {exc}") from None
    return value


# --- concept sets -------------------------------------------------------------------------------


class Code(_Model):
    system: str
    code: str
    display: str = ""
    verified: bool = True


class CodeRange(_Model):
    """ICD-10 categories compared on their first three characters, inclusive: C00..C96."""

    system: str
    first: str
    last: str

    def contains(self, code: str) -> bool:
        category = code[:3].upper()
        return len(category) == 3 and self.first.upper() <= category <= self.last.upper()


class CodePrefix(_Model):
    system: str
    prefix: str

    def contains(self, code: str) -> bool:
        return code.upper().startswith(self.prefix.upper())


class Behaviour(_Model):
    """ICD-O-3 morphology codes (``NNNN/B``) whose behaviour digit is ``behaviour``: 3 = malignant."""

    system: str
    behaviour: str


class ConceptSet(_Model):
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


# --- clauses ------------------------------------------------------------------------------------


class _Clause(_Model):
    label: str | None = None
    only_for_sex: Literal["female", "male"] | None = None
    otherwise: Result | None = None

    @model_validator(mode="after")
    def _sex_gate_has_fallback(self) -> _Clause:
        if self.only_for_sex and self.otherwise is None:
            raise ValueError("only_for_sex needs `otherwise` (the result for the other sex)")
        return self

    def concept_names(self) -> Iterator[str]:
        return iter(())


class AgeClause(_Clause):
    kind: Literal["age"]
    min_years: int
    max_years: int


class AliveClause(_Clause):
    kind: Literal["alive"]


class DiagnosisClause(_Clause):
    kind: Literal["diagnosis"]
    lineage: str
    unknown_lineage: str
    other_lineage: str | None = None
    status: tuple[str, ...]
    # Regular expressions for wording that names the disease in a Condition's text or a display: such
    # a Condition without a recognised code makes the diagnosis unknown, never not-met.
    text_signals: tuple[str, ...] = ()

    @field_validator("text_signals")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _patterns(value)

    def concept_names(self) -> Iterator[str]:
        yield from (self.lineage, self.unknown_lineage, *self.status)
        if self.other_lineage:
            yield self.other_lineage


class WithinYears(_Model):
    within_years: int


class ConditionClause(_Clause):
    kind: Literal["condition"]
    concepts: tuple[str, ...]
    match: Literal["current", "history"] | WithinYears = "current"
    body_site: str | None = None
    when_present: Result = "met"
    when_absent: Result = "not-met"

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.body_site:
            yield self.body_site


class ObservationClause(_Clause):
    kind: Literal["observation"]
    concepts: tuple[str, ...]
    comparator: Comparator | None = None
    value: float | None = None
    unit: str | None = None
    relative_to: Literal["uln"] | None = None
    analyte: str | None = None
    # Coded results: 'positive', 'negative', or the name of a concept set of answers that meet.
    expect: str | None = None
    expect_not: str | None = None
    window_days: int | None = None
    room_air: str | None = None
    when_absent: Result = "unknown"

    @model_validator(mode="after")
    def _one_test(self) -> ObservationClause:
        quantitative = self.comparator is not None
        if quantitative == (self.expect is not None):
            raise ValueError("an observation clause needs either comparator/value or expect")
        if quantitative and self.value is None:
            raise ValueError("comparator needs value")
        if quantitative and self.relative_to is None and not self.unit:
            raise ValueError("a quantitative threshold needs a unit (UCUM) or relative_to")
        return self

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        for extra in (self.room_air, self.expect_not):
            if extra:
                yield extra
        if self.expect and self.expect not in ("positive", "negative"):
            yield self.expect


class EndedWithinDays(_Model):
    ended_within_days: int


class MedicationClause(_Clause):
    kind: Literal["medication"]
    concepts: tuple[str, ...]
    state: Literal["active"] | EndedWithinDays = "active"
    exclude_routes: str | None = None
    when_absent: Result = "not-met"

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.exclude_routes:
            yield self.exclude_routes


class ProcedureClause(_Clause):
    kind: Literal["procedure"]
    concepts: tuple[str, ...] = ()
    category: str | None = None
    within_days: int | None = None
    when_absent: Result = "not-met"
    # Regular expressions for names that suggest the procedure (e.g. "-ectomy" for surgery): such a
    # Procedure in the window without a recognised code makes the clause unknown (review), never met.
    text_signals: tuple[str, ...] = ()

    @field_validator("text_signals")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _patterns(value)

    @model_validator(mode="after")
    def _has_target(self) -> ProcedureClause:
        if not self.concepts and not self.category:
            raise ValueError("a procedure clause needs concepts or category")
        return self

    def concept_names(self) -> Iterator[str]:
        yield from self.concepts
        if self.category:
            yield self.category


class ImmunizationClause(_Clause):
    kind: Literal["immunization"]
    within_days: int
    when_absent: Result = "not-met"


class ManualClause(_Clause):
    kind: Literal["manual"]


class _Combination(_Clause):
    clauses: tuple[Clause, ...]

    def concept_names(self) -> Iterator[str]:
        for clause in self.clauses:
            yield from clause.concept_names()


class AllOf(_Combination):
    kind: Literal["all_of"] = "all_of"


class AnyOf(_Combination):
    kind: Literal["any_of"] = "any_of"


Clause = Annotated[
    AgeClause
    | AliveClause
    | DiagnosisClause
    | ConditionClause
    | ObservationClause
    | MedicationClause
    | ProcedureClause
    | ImmunizationClause
    | ManualClause
    | AllOf
    | AnyOf,
    Field(discriminator="kind"),
]
LeafClause = (
    AgeClause
    | AliveClause
    | DiagnosisClause
    | ConditionClause
    | ObservationClause
    | MedicationClause
    | ProcedureClause
    | ImmunizationClause
    | ManualClause
)
AllOf.model_rebuild()
AnyOf.model_rebuild()


def _normalise_rule(rule: Any) -> Any:
    """YAML writes combinators as ``{all_of: [...]}``; the model wants ``{kind: all_of, clauses: [...]}``."""
    if not isinstance(rule, dict):
        return rule
    for key in ("all_of", "any_of"):
        if key in rule:
            if not isinstance(rule[key], list):
                return rule  # the model reports the shape error
            rest = {k: v for k, v in rule.items() if k != key}
            return {"kind": key, "clauses": [_normalise_rule(c) for c in rule[key]], **rest}
    return rule


class Criterion(_Model):
    id: str
    # A short title for people (reports, Tasks); the verbatim registry text stays in `text`.
    title: str | None = Field(default=None, max_length=80)
    type: Literal["inclusion", "exclusion"]
    text: str
    computable: Literal["full", "partial", "none"]
    decision: str | None = None
    rule: Clause

    @field_validator("rule", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _normalise_rule(value)

    def leaves(self) -> list[LeafClause]:
        """The rule's leaf clauses, depth first."""
        out: list[LeafClause] = []

        def walk(clause: Clause) -> None:
            if isinstance(clause, AllOf | AnyOf):
                for child in clause.clauses:
                    walk(child)
            else:
                out.append(clause)

        walk(self.rule)
        return out


class Analyte(_Model):
    molar_mass: float = Field(gt=0, description="g/mol")


class CriteriaDefinition(_Model):
    study: str
    version: int
    manual_review_reason: str
    systems: dict[str, str]
    concepts: dict[str, ConceptSet]
    analytes: dict[str, Analyte] = {}
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    # A site's local codes (``--concept-map``): not part of the criteria file, attached at run time.
    concept_maps: ConceptMaps = Field(default_factory=ConceptMaps, exclude=True)

    def with_concept_maps(self, maps: ConceptMaps) -> CriteriaDefinition:
        return self.model_copy(update={"concept_maps": maps})

    @model_validator(mode="after")
    def _consistent(self) -> CriteriaDefinition:
        ids = [c.id for c in self.criteria]
        if len(set(ids)) != len(ids):
            raise ValueError("criterion ids must be unique")
        for kind in ("inclusion", "exclusion"):
            numbered = [c.id for c in self.criteria if c.type == kind]
            expected = [f"{kind}-{n}" for n in range(1, len(numbered) + 1)]
            if numbered != expected:
                raise ValueError(
                    f"{kind} criteria must be numbered {kind}-1..{kind}-{len(numbered)} in order"
                )
        for criterion in self.criteria:
            for name in criterion.rule.concept_names():
                if name not in self.concepts:
                    raise ValueError(f"{criterion.id}: unknown concept set {name!r}")
            for leaf in criterion.leaves():
                if isinstance(leaf, ObservationClause) and leaf.analyte and leaf.analyte not in self.analytes:
                    raise ValueError(f"{criterion.id}: unknown analyte {leaf.analyte!r}")
        return self

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)

    def concept(self, name: str) -> ConceptSet:
        return self.concepts[name]

    def diagnosis_clause(self) -> DiagnosisClause:
        for criterion in self.criteria:
            for leaf in criterion.leaves():
                if isinstance(leaf, DiagnosisClause):
                    return leaf
        raise CriteriaDefinitionError("the criteria define no diagnosis clause")

    def population_concepts(self) -> list[ConceptSet]:
        """Condition codes that put a patient in the screening population (any ALL record)."""
        diagnosis = self.diagnosis_clause()
        names = [diagnosis.lineage, diagnosis.unknown_lineage, *diagnosis.status]
        return [self.concepts[name] for name in dict.fromkeys(names)]

    def observation_codes(self) -> list[Code]:
        """Every Observation code any criterion reads, each once, in definition order."""
        names: dict[str, None] = {}
        for criterion in self.criteria:
            for leaf in criterion.leaves():
                if isinstance(leaf, ObservationClause):
                    names.update(dict.fromkeys(leaf.concepts))
        return list({(c.system, c.code): c for n in names for c in self.concepts[n].codes}.values())

    def leaf_kinds(self) -> set[str]:
        return {leaf.kind for criterion in self.criteria for leaf in criterion.leaves()}


# --- loading ------------------------------------------------------------------------------------

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same results, far faster on big files


def _code_entries(raw: Iterable[Any], systems: dict[str, str], where: str) -> list[dict[str, Any]]:
    entries = []
    for item in raw or ():
        if not isinstance(item, list | tuple) or len(item) < 2:
            raise CriteriaDefinitionError(f"{where}: each code is [system, code, display?, {{options}}?]")
        system, code, *rest = item
        options = rest.pop() if rest and isinstance(rest[-1], dict) else {}
        if len(rest) > 1:  # an unquoted display with a comma splits into several items
            raise CriteriaDefinitionError(
                f"{where}: code {code!r} has extra items; quote a display with commas"
            )
        entries.append(
            {
                "system": systems.get(system, system),
                "code": str(code),
                "display": str(rest[0]) if rest else "",
                **options,
            }
        )
    return entries


def _pairs(raw: Any, size: int, where: str) -> list[tuple[Any, ...]]:
    """``ranges`` ([system, first, last]) or ``prefixes``/``exclude`` ([system, prefix]) items."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(i, list | tuple) and len(i) == size for i in raw):
        raise CriteriaDefinitionError(f"{where}: expected a list of {size}-item lists")
    return [tuple(i) for i in raw]


def _resolve_concepts(raw: Any, systems: dict[str, str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CriteriaDefinitionError("concepts: expected a mapping of concept set names")
    concepts = {}
    for name, spec in raw.items():
        where = f"concepts.{name}"
        if not isinstance(spec, dict):
            raise CriteriaDefinitionError(f"{where}: expected a mapping (display, codes, ranges, ...)")
        for key in ("codes", "roots"):
            if spec.get(key) is not None and not isinstance(spec[key], list):
                raise CriteriaDefinitionError(f"{where}.{key}: expected a list")
        concepts[name] = {
            "name": name,
            "display": spec.get("display", name),
            "codes": _code_entries(spec.get("codes") or (), systems, where),
            "ranges": [
                {"system": systems.get(s, s), "first": a, "last": b}
                for s, a, b in _pairs(spec.get("ranges"), 3, f"{where}.ranges")
            ],
            "prefixes": [
                {"system": systems.get(s, s), "prefix": p}
                for s, p in _pairs(spec.get("prefixes"), 2, f"{where}.prefixes")
            ],
            "exclude": [
                {"system": systems.get(s, s), "prefix": p}
                for s, p in _pairs(spec.get("exclude"), 2, f"{where}.exclude")
            ],
            "roots": _code_entries(spec.get("roots") or (), systems, f"{where}.roots"),
            "behaviours": [
                {"system": systems.get(s, s), "behaviour": str(b)}
                for s, b in _pairs(spec.get("behaviours"), 2, f"{where}.behaviours")
            ],
        }
    return concepts


def parse_criteria(data: Any, source: str = "<criteria>") -> CriteriaDefinition:
    if not isinstance(data, dict):
        raise CriteriaDefinitionError(f"{source}: expected a mapping at the top level")
    systems = data.get("systems") or {}
    if not isinstance(systems, dict) or not all(isinstance(v, str) for v in systems.values()):
        raise CriteriaDefinitionError(f"{source}: systems: expected a mapping of alias to system URL")
    try:
        concepts = _resolve_concepts(data.get("concepts") or {}, systems)
        return CriteriaDefinition.model_validate({**data, "concepts": concepts})
    except CriteriaDefinitionError as exc:
        raise CriteriaDefinitionError(f"{source}: {exc}") from None
    except RecursionError:
        raise CriteriaDefinitionError(f"{source}: rules nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CriteriaDefinitionError(
            f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None


def load_criteria(path: Path) -> CriteriaDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CriteriaDefinitionError(f"{path}: cannot read criteria file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader: libyaml when present
    except yaml.YAMLError as exc:
        raise CriteriaDefinitionError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    except RecursionError:
        raise CriteriaDefinitionError(f"{path}: not valid YAML: nested too deeply") from None
    return parse_criteria(data, str(path))
