"""The eligibility criteria as a CQL library, for engines other than ours.

``cql_library`` writes one CQL 1.5 library (FHIR R4, FHIRHelpers 4.0.1) from the same criteria definition
screening reads: one ``define`` per expressible criterion, named by its id, whose value is ``true`` (met),
``false`` (not met) or ``null`` (unknown), the same three answers as our engine. A ``manual`` part of a
criterion is ``null`` (a person decides), as in our engine.

Each leaf clause kind has one generator (``_LEAF``); a kind without one, or a clause using a feature the
generator does not reproduce (text signals, broader-code review, unit conversion across analytes, ULN
ratios, coded answers...), makes the whole criterion inexpressible: it is left out of the library and
listed by ``inexpressible`` with the reason. tests/integration/test_cql_export.py runs the library with
the reference CQL engine (tools/cql-runner) over the sample population and checks every expressed
criterion agrees with our engine for every patient.

Codes are written as literal system/code lists (the concept set's explicit codes and the descendants of
its roots the bundled terminology knows), so the library needs no terminology server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mappings.concepts import ConceptSet
from mappings.criteria import Clause, CriteriaDefinition, Criterion
from mappings.kinds.age import AgeClause
from mappings.kinds.alive import AliveClause
from mappings.kinds.combine import AllOf, AnyOf
from mappings.kinds.condition import ConditionClause, WithinYears
from mappings.kinds.immunization import ImmunizationClause
from mappings.kinds.manual import ManualClause
from mappings.kinds.observation import ObservationClause
from mappings.kinds.procedure import ProcedureClause

FHIR_VERSION = "4.0.1"
NULL = "(null as Boolean)"


class Inexpressible(Exception):
    """A clause the CQL generator cannot reproduce exactly; the message says why."""


@dataclass(frozen=True)
class CqlExport:
    name: str
    version: str
    text: str
    expressed: tuple[str, ...]  # criterion ids, each a define of the same name
    inexpressible: dict[str, str]  # criterion id -> why it is left out


def library_name(criteria: CriteriaDefinition) -> str:
    return f"{criteria.study}Eligibility"


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tri(result: str) -> str:
    return {"met": "true", "not-met": "false"}.get(result, NULL)


def _codes(sets: Iterable[ConceptSet]) -> dict[str, list[str]]:
    by_system: dict[str, list[str]] = {}
    for concept_set in sets:
        if concept_set.ranges or concept_set.prefixes or concept_set.behaviours or concept_set.exclude:
            raise Inexpressible(f"concept set {concept_set.name} uses code patterns (ranges, prefixes)")
        for system, code in concept_set.expansion():
            codes = by_system.setdefault(system, [])
            if code not in codes:
                codes.append(code)
    if not by_system:
        raise Inexpressible("no codes to match")
    return by_system


def _coded(element: str, sets: Iterable[ConceptSet]) -> str:
    """CQL: the CodeableConcept ``element`` has a coding in the sets (string comparison, no terminology)."""
    tests = [
        f"(Y.system.value = {_string(system)} and Y.code.value in {{{', '.join(map(_string, codes))}}})"
        for system, codes in sorted(_codes(sets).items())
    ]
    return f"exists ({element}.coding Y where {' or '.join(tests)})"


# --- leaves -------------------------------------------------------------------------------------


def _age(clause: AgeClause, criteria: CriteriaDefinition) -> str:
    return f'"AgeWithin"({clause.min_years}, {clause.max_years})'


def _alive(clause: AliveClause, criteria: CriteriaDefinition) -> str:
    return (
        "(case when Patient.deceased is FHIR.boolean then not Coalesce((Patient.deceased as FHIR.boolean).value,"
        " false) when Patient.deceased is FHIR.dateTime then not Coalesce(date from (Patient.deceased as"
        " FHIR.dateTime).value <= AsOf, true) else true end)"
    )


def _condition(clause: ConditionClause, criteria: CriteriaDefinition) -> str:
    where = [_coded("C.code", [criteria.concept(n) for n in clause.concepts])]
    if clause.body_site:
        where.append(f"exists (C.bodySite B where {_coded('B', [criteria.concept(clause.body_site)])})")
    if clause.match == "history":
        state = "'present'"
    elif clause.match == "current":
        state = '"CurrentState"(C)'
    else:
        assert isinstance(clause.match, WithinYears)
        state = f'"WithinYearsState"(C, AsOf - {clause.match.within_years} years)'
    matching = " and ".join(where)

    def states(extra: str) -> str:
        return f'("Usable Conditions" C where {matching}{extra} return {state})'

    confirmed = states(' and not "Suspected"(C)')
    # A suspected (provisional, differential, unconfirmed) present condition is unknown, never met.
    return (
        f"(if exists ({confirmed} S where S = 'present') then {_tri(clause.when_present)} "
        f"else if exists ({states('')} S where S in {{'present', 'uncertain'}}) then {NULL} "
        f"else {_tri(clause.when_absent)})"
    )


def _judge(comparator: str, value: float, newest: str) -> str:
    """CQL for the newest result against ``comparator value``, honouring the result's own comparator:
    '<5' stands for every value below 5, so against '< 10' it is met and against '>= 1' unknown."""
    t = f"{value:g}"
    v, c = f"{newest}.v", f"{newest}.c"
    below = comparator in ("<", "<=")
    exact = f"{v} {comparator} {t}"
    # An open end equal to the threshold stands for the values just past it.
    high = f"(if {c} = '<' and {v} = {t} then {str(below).lower()} else {exact})"
    low = f"(if {c} = '>' and {v} = {t} then {str(not below).lower()} else {exact})"
    if below:  # the open low end of '<x' always passes a '<' threshold
        upper_open, lower_open = f"(if {high} then true else {NULL})", f"(if {low} then {NULL} else false)"
    else:
        upper_open, lower_open = f"(if {high} then {NULL} else false)", f"(if {low} then true else {NULL})"
    return (
        f"(case when {c} is null then {exact} when {c} in {{'<', '<='}} then {upper_open} "
        f"else {lower_open} end)"
    )


def _observation(clause: ObservationClause, criteria: CriteriaDefinition) -> str:
    if clause.expect is not None:
        raise Inexpressible("coded results (positive/negative answers) are not generated")
    if clause.relative_to or clause.analyte:
        raise Inexpressible("ULN ratios and molar-mass conversions are not generated")
    if clause.room_air:
        raise Inexpressible("the room-air check (oxygen components) is not generated")
    if clause.window_days is None:
        raise Inexpressible("results without a time window are not generated")
    assert clause.comparator is not None and clause.value is not None and clause.unit
    # Our engine counts an observation by its explicit codes only (no hierarchy): the same here.
    codes = [c for n in clause.concepts for c in criteria.concept(n).codes]
    coded = " or ".join(
        f"(Y.system.value = {_string(c.system)} and Y.code.value = {_string(c.code)})" for c in codes
    )
    found = f"([Observation] O where exists (O.code.coding Y where {coded}))"
    unitless = "true" if clause.unit in ("{score}", "{grade}") else "false"
    newest = f'"Newest"({found}, {_string(clause.unit)}, {unitless})'
    absent = f'(if "Undated"({found}) then {NULL} else {_tri(clause.when_absent)})'
    return (
        f"(if {newest} is null then {absent}"
        f' else if "DaysOld"({newest}.taken) > {clause.window_days} then {NULL}'
        f" else if {newest}.v is null then {NULL} else {_judge(clause.comparator, clause.value, newest)})"
    )


def _dated_presence(found: str, alias: str, day: str, within_days: int | None, when_absent: str) -> str:
    """Met when a record is dated in the window (or any time, without one); unknown when only an undated
    record could be in the window; else ``when_absent``. Future-dated records never count."""
    if within_days is None:
        state = "'present'"
    else:
        state = (
            f"case when {day} is null then 'uncertain' "
            f"when \"DaysOld\"({day}) <= {within_days} then 'present' else 'outside' end"
        )
    states = f"(({found}) {alias} where Coalesce({day} > AsOf, false) is false return {state})"
    return (
        f"(if exists ({states} S where S = 'present') then true "
        f"else if exists ({states} S where S = 'uncertain') then {NULL} else {_tri(when_absent)})"
    )


def _procedure(clause: ProcedureClause, criteria: CriteriaDefinition) -> str:
    tests = []
    if clause.concepts:
        tests.append(_coded("P.code", [criteria.concept(n) for n in clause.concepts]))
    if clause.category:
        tests.append(_coded("P.category", [criteria.concept(clause.category)]))
    found = f'[Procedure] P where "ProcedureCounts"(P) and ({" or ".join(tests)})'
    return _dated_presence(found, "P", '"ProcedureDay"(P)', clause.within_days, clause.when_absent)


def _immunization(clause: ImmunizationClause, criteria: CriteriaDefinition) -> str:
    found = (
        "[Immunization] I where Coalesce(I.status.value in {'not-done', 'entered-in-error'}, false) is false"
    )
    day = '"DayOf"((I.occurrence as FHIR.dateTime).value)'
    return _dated_presence(found, "I", day, clause.within_days, clause.when_absent)


def _manual(clause: ManualClause, criteria: CriteriaDefinition) -> str:
    return NULL  # a person decides: unknown, as in our engine


_LEAF: dict[str, Callable[[Any, CriteriaDefinition], str]] = {
    "age": _age,
    "alive": _alive,
    "condition": _condition,
    "observation": _observation,
    "procedure": _procedure,
    "immunization": _immunization,
    "manual": _manual,
}


def clause_cql(clause: Clause, criteria: CriteriaDefinition) -> str:
    if isinstance(clause, AllOf | AnyOf):
        joiner = " and " if isinstance(clause, AllOf) else " or "
        return "(" + joiner.join(clause_cql(c, criteria) for c in clause.clauses) + ")"
    generator = _LEAF.get(clause.kind)
    if generator is None:
        raise Inexpressible(f"{clause.kind} clauses are not generated")
    if getattr(clause, "text_signals", ()):
        raise Inexpressible("text signals (wording without codes) are not generated")
    body = generator(clause, criteria)
    if clause.only_for_sex:
        other = _tri(clause.otherwise or "unknown")
        body = (
            f"(if Patient.gender.value in {{'male', 'female'}} and Patient.gender.value != "
            f"{_string(clause.only_for_sex)} then {other} else {body})"
        )
    return body


def criterion_cql(criterion: Criterion, criteria: CriteriaDefinition) -> str:
    if all(isinstance(leaf, ManualClause) for leaf in criterion.leaves()):
        raise Inexpressible("needs a person's judgement only (no computable part)")
    return clause_cql(criterion.rule, criteria)


# The helpers every generated define uses: our engine's reading of statuses, days and values.
_HELPERS = Path(__file__).with_name("cql_helpers.cql").read_text(encoding="utf-8")


def cql_library(criteria: CriteriaDefinition) -> CqlExport:
    """The CQL library for every criterion it can express, and why the others are left out."""
    name = library_name(criteria)
    version = f"{criteria.version}.0.0"
    defines: list[str] = []
    expressed: list[str] = []
    left_out: dict[str, str] = {}
    for criterion in criteria.criteria:
        try:
            body = criterion_cql(criterion, criteria)
        except Inexpressible as why:
            left_out[criterion.id] = str(why)
            continue
        expressed.append(criterion.id)
        title = (criterion.title or criterion.text).replace("*/", "* /")
        defines.append(f'/* {criterion.type}: {title} */\ndefine "{criterion.id}":\n  {body}\n')
    header = (
        f"// {criteria.study} eligibility, generated from mappings/studies/{criteria.study}/criteria.yaml\n"
        "// (trial-adapter map). Each define: true = met, false = not met, null = unknown (review).\n"
        f"library {name} version '{version}'\n\n"
        f"using FHIR version '{FHIR_VERSION}'\n\n"
        f"include FHIRHelpers version '{FHIR_VERSION}' called FHIRHelpers\n\n"
        'parameter "AsOf" Date default Today()\n\n'
        "context Patient\n\n"
    )
    text = header + _HELPERS + "\n" + "\n".join(defines)
    return CqlExport(name, version, text, tuple(expressed), left_out)
