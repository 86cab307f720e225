"""What would settle each unknown (resolve), the attrition funnel and its properties, words for people."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.screening.funnel import build_funnel, rules_out
from adapter.screening.resolve import Resolver, collect_next, with_resolve
from adapter.screening.results import CriterionResult, Need, PatientResult, Resolve, ScreeningReport
from adapter.screening.wording import number, prose, threshold
from tests.support.clinical import (
    AS_OF,
    ECOG,
    PLATELETS,
    candidate_resources,
    definition,
    obs,
    patient,
    record_of,
    result_of,
    screener,
    t_all_relapsed,
)


def resolved(*resources) -> PatientResult:
    record = record_of(*resources)
    return with_resolve(screener(), record, screener().screen(record))


def without(resources, code):
    return [
        r
        for r in resources
        if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == code[1])
    ]


# --- resolve ------------------------------------------------------------------------------------


def test_every_unknown_has_a_resolve_and_nothing_else_does():
    for result in (resolved(*candidate_resources()), resolved(patient(None, None)), resolved()):
        for c in result.criteria:
            assert (c.resolve is not None) == (c.result == "unknown"), c.id
            if c.resolve:
                assert c.resolve.needs and c.resolve.text.strip()


def test_a_stale_platelet_count_asks_for_one_dated_within_the_window():
    resources = [*without(candidate_resources(), PLATELETS), obs(PLATELETS, 85, "10*9/L", ago=10)]
    c = result_of(resolved(*resources), "exclusion-13")
    assert c.result == "unknown"
    (need,) = c.resolve.needs
    assert need.kind == "observation" and need.decided_by == "data"
    assert need.concepts == ["platelets"] and need.since == date(2026, 11, 16)
    assert need.test == "< 10 x10^9/L excludes"
    assert need.text == "platelets dated 2026-11-16 or later (latest 2026-11-13)"
    assert c.resolve.text == "Collect: platelets dated 2026-11-16 or later (latest 2026-11-13)."


def test_only_the_leaves_still_unknown_are_asked_for():
    # inclusion-10 with three labs fine and no creatinine: only creatinine is needed.
    resources = [r for r in candidate_resources() if "14682-9" not in str(r.get("code"))]
    c = result_of(resolved(*resources), "inclusion-10")
    assert [n.label for n in c.resolve.needs] == ["creatinine"]
    # inclusion-7: ECOG or Karnofsky, neither on record: either settles it.
    c = result_of(resolved(*without(candidate_resources(), ECOG)), "inclusion-7")
    assert c.resolve.settles == "any" and [n.label for n in c.resolve.needs] == ["ECOG", "Karnofsky/Lansky"]
    assert c.resolve.text.startswith("Collect any of: ECOG dated 2026-10-24 or later, or Karnofsky/Lansky")
    todo = collect_next(resolved(*without(candidate_resources(), ECOG)))
    assert todo == ["ECOG dated 2026-10-24 or later, or Karnofsky/Lansky dated 2026-10-24 or later"]


def test_manual_criteria_say_who_decides():
    result = resolved(*candidate_resources())
    consent = result_of(result, "inclusion-12").resolve
    assert consent.needs[0].decided_by == "consent" and "consent visit" in consent.text
    survival = result_of(result, "inclusion-6").resolve
    assert [(n.label, n.decided_by) for n in survival.needs] == [
        ("estimated survival > 12 weeks", "investigator")
    ]
    assert collect_next(result) == []  # a complete candidate: nothing to collect, only people's judgement


def test_missing_birth_date_and_unknown_lineage_name_what_to_record():
    result = resolved(patient(None, "male"), *t_all_relapsed())
    assert result_of(result, "inclusion-1").resolve.needs[0].kind == "birth-date"


def test_a_result_without_resolve_is_never_ready():
    result = screener().screen(record_of(*candidate_resources()))  # no resolve attached
    assert collect_next(result) and all(item.startswith("what settles ") for item in collect_next(result))
    funnel = build_funnel([result])
    assert funnel.candidates == 1 and funnel.ready == 0


def test_fallback_without_the_record_names_every_leaf():
    result = screener().screen(record_of(*candidate_resources()))
    fallback = Resolver(definition(), AS_OF).fallback(result)
    assert all((c.resolve is not None) == (c.result == "unknown") for c in fallback.criteria)


def test_the_report_lists_the_codes_of_every_concept_set_a_resolve_names():
    result = resolved()
    report = ScreeningReport.build("NCT06849401", AS_OF, [result], definition())
    data = report.to_json_dict()
    named = {
        n
        for c in data["patients"][0]["criteria"]
        for need in (c.get("resolve") or {}).get("needs", [])
        for n in need["concepts"]
    }
    assert named and named <= set(data["concepts"])
    assert {"system": "http://loinc.org", "code": "777-3"}.items() <= data["concepts"]["platelets"]["codes"][
        0
    ].items()
    assert {c["id"]: c["title"] for c in data["criteria"]}["inclusion-8"] == "Heart function (LVEF >= 50%)"


# --- the funnel ---------------------------------------------------------------------------------

IDS = [
    ("inclusion-1", "inclusion"),
    ("inclusion-2", "inclusion"),
    ("exclusion-1", "exclusion"),
    ("exclusion-2", "exclusion"),
]
NEED = Resolve(
    text="x", settles="all", needs=[Need(kind="observation", label="x", decidedBy="data", text="x")]
)
JUDGE = Resolve(
    text="y", settles="all", needs=[Need(kind="judgement", label="y", decidedBy="investigator", text="y")]
)


@st.composite
def patients(draw) -> list[PatientResult]:
    out = []
    for n in range(draw(st.integers(0, 25))):
        criteria = []
        for cid, ctype in IDS:
            result = draw(st.sampled_from(["met", "not-met", "unknown"]))
            resolve = draw(st.sampled_from([NEED, JUDGE])) if result == "unknown" else None
            criteria.append(CriterionResult(id=cid, type=ctype, result=result, reason="r", resolve=resolve))
        excluded = any(rules_out(c) for c in criteria)
        out.append(
            PatientResult(
                patient=f"Patient/{n}", status="not-eligible" if excluded else "candidate", criteria=criteria
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(patients(), st.sampled_from([cid for cid, _ in IDS]))
def test_funnel_totals_add_up_and_dropping_a_criterion_never_loses_a_candidate(population, dropped):
    funnel = build_funnel(population)
    assert funnel.screened == len(population)
    assert funnel.candidates == sum(p.status == "candidate" for p in population)
    assert sum(s.removed for s in funnel.steps) + funnel.candidates == funnel.screened
    assert funnel.steps[-1].remaining == funnel.candidates if funnel.steps else True
    assert funnel.ready + funnel.blocked_by_unknowns == funnel.candidates
    without_it = build_funnel(population, dropped=[dropped])
    assert without_it.candidates >= funnel.candidates
    gained = next(c.only_this for c in funnel.criteria if c.id == dropped) if funnel.criteria else 0
    assert without_it.candidates - funnel.candidates == gained  # the what-if is exact


def test_sample_funnel_adds_up_and_what_ifs_are_counted():
    from tests.support.sample_report import REPORT

    funnel = REPORT.summary.funnel
    assert funnel.screened == 26 and funnel.candidates == 11
    assert sum(s.removed for s in funnel.steps) == 15
    for p in REPORT.patients:
        for c in p.criteria:
            assert (c.resolve is not None) == (c.result == "unknown")


# --- words for people ---------------------------------------------------------------------------


def test_numbers_units_and_dates_for_people():
    assert prose("AST 36 U/L = 0.414134 x ULN (40 U/L)") == "AST 36 U/L = 0.41 x ULN (40 U/L)"
    assert (
        prose("Karnofsky/Lansky 80 {score} on 2026-11-20 (> 60 {score})")
        == "Karnofsky/Lansky 80 on 2026-11-20 (> 60)"
    )
    assert prose("platelets 8 10*9/L on 2026-11-21T08:30:00Z") == "platelets 8 x10^9/L on 2026-11-21"
    assert prose("creatinine 45 umol/L = 0.509054 mg/dL") == "creatinine 45 µmol/L = 0.51 mg/dL"
    assert prose("version 1.2 and 0.48 mg/dL") == "version 1.2 and 0.48 mg/dL"  # short values stay
    stale = "most recent platelets is 10 days old (needs one within 7 days)"
    assert (
        prose(stale, AS_OF) == "most recent platelets dated 2026-11-13 (needs one dated 2026-11-16 or later)"
    )
    assert [number(v) for v in (0.414134, 12.345, 1234.5, 80.0, -0.001)] == [
        "0.41",
        "12.3",
        "1234",
        "80",
        "0",
    ]
    assert threshold(">", 60, "{score}", None) == "> 60"
    assert threshold(">=", 95, "%", None) == ">= 95%"
    assert threshold("<=", 3, None, "uln") == "<= 3 x ULN"
    assert threshold("<", 10, "10*9/L", None) == "< 10 x10^9/L"


def test_every_criterion_has_a_short_title():
    assert all(c.title and len(c.title) <= 80 for c in definition().criteria)


def test_synthetic_hospital_every_unknown_resolved_and_funnel_adds_up(tmp_path):
    from adapter.screening.run import screen_files
    from bench import synth

    synth.write_ndjson(2000, tmp_path / "hospital")
    report = screen_files(tmp_path / "hospital", definition(), AS_OF, all_patients=True)
    population = screen_files(tmp_path / "hospital", definition(), AS_OF).summary
    assert population.funnel is not None and population.outside_population is not None
    assert population.funnel.screened + population.outside_population == 2000
    unknown = [c for p in report.patients for c in p.criteria if c.result == "unknown"]
    assert unknown and all(c.resolve is not None and c.resolve.needs for c in unknown)
    funnel = report.summary.funnel
    assert funnel.screened == 2000 == sum(s.removed for s in funnel.steps) + funnel.candidates
    assert funnel.ready + funnel.blocked_by_unknowns == funnel.candidates == report.summary.candidates
    named = {n for c in unknown for need in c.resolve.needs for n in need.concepts}
    assert named <= set(report.concepts or {})
