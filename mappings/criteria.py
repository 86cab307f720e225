"""The criteria definition: schema and loader.

One YAML file per study (``mappings/studies/<NCT>/criteria.yaml``) defines every eligibility criterion
once. Concept sets are in ``mappings.concepts``; each kind of clause (its schema, evaluation, reads and
publication) in ``mappings.kinds``, listed once in ``mappings.kinds.registry``. The published Group (``mappings.resources``) and the screening engine (``adapter.screening``)
both read this model, so the criteria cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mappings.concepts import Analyte, Code, ConceptSet, Model, patterns
from mappings.kinds import registry
from mappings.kinds.base import Clause
from mappings.kinds.diagnosis import DiagnosisClause
from mappings.kinds.observation import ObservationClause
from mappings.kinds.registry import COMBINATIONS, AnyClause, kind_of
from mappings.terminology.conceptmap import ConceptMaps


class CriteriaDefinitionError(ValueError):
    """The criteria file cannot be used; the message says where and why."""


def _normalise_rule(rule: Any) -> Any:
    """YAML writes combinators as ``{all_of: [...]}``; the model wants ``{kind: all_of, clauses: [...]}``."""
    if not isinstance(rule, dict):
        return rule
    for key in COMBINATIONS:
        if key in rule:
            if not isinstance(rule[key], list):
                return rule  # the model reports the shape error
            rest = {k: v for k, v in rule.items() if k != key}
            return {"kind": key, "clauses": [_normalise_rule(c) for c in rule[key]], **rest}
    return rule


class Criterion(Model):
    id: str
    # A short title for people (reports, Tasks); the verbatim registry text stays in `text`.
    title: str | None = Field(default=None, max_length=80)
    type: Literal["inclusion", "exclusion"]
    text: str
    computable: Literal["full", "partial", "none"]
    decision: str | None = None
    rule: AnyClause

    @field_validator("rule", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _normalise_rule(value)

    def leaves(self) -> list[Clause]:
        """The rule's leaf clauses, depth first (combinations are walked, never returned)."""
        out: list[Clause] = []

        def walk(clause: Clause) -> None:
            if kind_of(clause).combination:
                for child in getattr(clause, "clauses", ()):
                    walk(child)
            else:
                out.append(clause)

        walk(self.rule)
        return out


class Population(Model):
    """Who is screened from a server or an export: the patients with a Condition that might be the
    disease. Study data, so criteria.yaml says it (``population:``); every part is optional."""

    # Concept sets whose Conditions put a patient in the population (default: the diagnosis clause's
    # lineage, unknown-lineage and status sets).
    concepts: tuple[str, ...] = ()
    # Regular expressions for a Condition's text or a coding's display that may name the disease (in
    # addition to the diagnosis clause's text_signals).
    text: tuple[str, ...] = ()
    # How that wording begins, for a server's token ``:text`` searches (starts-with, case-insensitive);
    # what they find is read against the diagnosis wording before it counts. Empty: no text search.
    text_search: tuple[str, ...] = ()

    @field_validator("text")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return patterns(value)


class CriteriaDefinition(Model):
    study: str
    version: int
    manual_review_reason: str
    systems: dict[str, str]
    concepts: dict[str, ConceptSet]
    analytes: dict[str, Analyte] = Field(default_factory=dict)
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    population: Population = Population()
    # A site's local codes (``--concept-map``): not part of the criteria file, attached at run time.
    concept_maps: ConceptMaps = Field(default_factory=ConceptMaps, exclude=True)
    # The study folder it was read from (``mappings.study_folder``): its study.json is beside it.
    folder: Path | None = Field(default=None, exclude=True)

    def with_concept_maps(self, maps: ConceptMaps) -> CriteriaDefinition:
        return self.model_copy(update={"concept_maps": maps})

    def with_folder(self, folder: Path) -> CriteriaDefinition:
        return self.model_copy(update={"folder": folder})

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
        for name in self.population.concepts:
            if name not in self.concepts:
                raise ValueError(f"population: unknown concept set {name!r}")
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
        """Condition codes that put a patient in the screening population: ``population.concepts``,
        else the diagnosis clause's lineage, unknown-lineage and status sets."""
        names = list(self.population.concepts)
        if not names:
            diagnosis = self.diagnosis_clause()
            names = [diagnosis.lineage, diagnosis.unknown_lineage, *diagnosis.status]
        return [self.concepts[name] for name in dict.fromkeys(names)]

    def observation_codes(self) -> list[Code]:
        """Every Observation code any criterion reads, each once, in definition order."""
        names: dict[str, None] = {}
        for criterion in self.criteria:
            for leaf in criterion.leaves():
                names.update(dict.fromkeys(kind_of(leaf).reads(leaf).exact_concepts))
        return list({(c.system, c.code): c for n in names for c in self.concepts[n].codes}.values())

    def leaf_kinds(self) -> set[str]:
        return {leaf.kind for criterion in self.criteria for leaf in criterion.leaves()}


def _use_union(union: Any) -> None:
    """A kind was registered at run time: a criterion's rule may now be of it."""
    Criterion.model_fields["rule"].annotation = union
    Criterion.model_rebuild(force=True)
    CriteriaDefinition.model_rebuild(force=True)


registry.on_union_change(_use_union)


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
