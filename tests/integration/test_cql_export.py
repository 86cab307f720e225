"""The exported CQL library, run by the reference CQL engine, agrees with our engine (issue 17 item 5).

Every criterion the library expresses is evaluated by info.cqframework's translator and engine
(tools/cql-runner) for every patient of the bundled sample population, and must give the same answer as
our screening: true = met, false = not met, null = unknown.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from adapter.samples.sample_population import AS_OF, SAMPLE_PATH
from adapter.screening.run import screen_files
from mappings.cql import cql_library
from mappings.criteria import load_criteria
from mappings.study import study_dir
from tests.support.java_tools import run_cql

TRI = {True: "met", False: "not-met", None: "unknown"}


@pytest.fixture(scope="module")
def criteria():
    return load_criteria(study_dir(None) / "criteria.yaml")


@pytest.fixture(scope="module")
def engine_answers(criteria, tmp_path_factory) -> dict[str, dict[str, bool | None]]:
    export = cql_library(criteria)
    library = tmp_path_factory.mktemp("cql") / f"{export.name}.cql"
    library.write_text(export.text, encoding="utf-8")
    return run_cql(library, SAMPLE_PATH, AS_OF)


def test_every_expressed_criterion_agrees_for_every_sample_patient(criteria, engine_answers):
    export = cql_library(criteria)
    ours = {
        p.patient.removeprefix("Patient/"): p for p in screen_files(SAMPLE_PATH, criteria, AS_OF).patients
    }
    assert set(engine_answers) == set(ours)  # the engine saw every sample patient
    disagreements = []
    for patient, answers in engine_answers.items():
        assert set(answers) == set(export.expressed)
        results = {c.id: c.result for c in ours[patient].criteria}
        for criterion_id, value in answers.items():
            if TRI[value] != results[criterion_id]:
                disagreements.append((patient, criterion_id, TRI[value], results[criterion_id]))
    assert disagreements == []
    # The comparison covers all three answers, not only agreement on 'unknown'.
    seen = {TRI[v] for answers in engine_answers.values() for v in answers.values()}
    assert seen == {"met", "not-met", "unknown"}


def test_library_expresses_the_computable_core(criteria):
    export = cql_library(criteria)
    assert {"inclusion-1", "inclusion-5", "inclusion-7", "exclusion-4", "exclusion-13"} <= set(
        export.expressed
    )
    # Judgement-only criteria are never claimed as computable.
    for criterion in criteria.criteria:
        if criterion.computable == "none":
            assert criterion.id in export.inexpressible
    assert set(export.expressed).isdisjoint(export.inexpressible)
    assert len(export.expressed) + len(export.inexpressible) == len(criteria.criteria)


def test_as_of_is_a_parameter_so_other_engines_can_set_it(criteria):
    text = cql_library(criteria).text
    assert 'parameter "AsOf" Date default Today()' in text
    assert f"library {criteria.study}Eligibility version '{criteria.version}.0.0'" in text
    # No terminology server needed: codes are literal.
    assert "\nvalueset " not in text and "\ncodesystem " not in text


def test_birth_dates_at_the_edges_agree(criteria, tmp_path: Path):
    # Partial birth dates are ranges: 2008 is 17 or 18 on 2026-11-23 (met); 2007 and 2007-11 are 18 or 19
    # (unknown); no birth date or one after the as-of date is unknown; 2008-11-24 turned 18 the next day.
    births = {
        "p2008": "2008",
        "p2007": "2007",
        "p2007-11": "2007-11",
        "pnone": None,
        "p2030": "2030-01-01",
        "p19": "2007-11-23",
        "p18": "2007-11-24",
        "p1": "2025-11-24",
    }
    entries = [
        {
            "fullUrl": f"urn:uuid:{n}",
            "resource": {"resourceType": "Patient", "id": pid} | ({"birthDate": born} if born else {}),
        }
        for n, (pid, born) in enumerate(births.items())
    ]
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    library = tmp_path / "L.cql"
    library.write_text(cql_library(criteria).text, encoding="utf-8")
    as_of = date(2026, 11, 23)
    answers = {p: TRI[a["inclusion-1"]] for p, a in run_cql(library, bundle, as_of).items()}
    ours = {
        p.patient.removeprefix("Patient/"): next(c.result for c in p.criteria if c.id == "inclusion-1")
        for p in screen_files(bundle, criteria, as_of).patients
    }
    assert answers == ours
    assert ours == {
        "p2008": "met",
        "p2007": "unknown",
        "p2007-11": "unknown",
        "pnone": "unknown",
        "p2030": "unknown",
        "p19": "not-met",
        "p18": "met",
        "p1": "not-met",
    }


def test_immunization_clauses_agree(criteria, tmp_path: Path):
    # exclusion-17's vaccination part alone (its surgery part has text signals the CQL leaves out).
    exclusion_17 = criteria.criterion("exclusion-17")
    vaccination = exclusion_17.rule.clauses[0]
    changed = criteria.model_copy(
        update={
            "criteria": tuple(
                c.model_copy(update={"rule": vaccination}) if c.id == "exclusion-17" else c
                for c in criteria.criteria
            )
        }
    )
    export = cql_library(changed)
    assert "exclusion-17" in export.expressed

    def shot(pid: str, when: str | None, status: str = "completed") -> dict:
        resource = {"resourceType": "Immunization", "id": f"i-{pid}", "status": status}
        resource |= {"patient": {"reference": f"Patient/{pid}"}, "vaccineCode": {"text": "vaccine"}}
        return resource | ({"occurrenceDateTime": when} if when else {"occurrenceString": "last spring"})

    patients = {"recent": "2026-11-01", "old": "2026-09-01", "undated": None, "future": "2026-12-01"}
    entries = []
    for n, (pid, when) in enumerate(patients.items()):
        entries.append({"fullUrl": f"urn:uuid:p{n}", "resource": {"resourceType": "Patient", "id": pid}})
        entries.append({"fullUrl": f"urn:uuid:i{n}", "resource": shot(pid, when)})
    entries.append({"fullUrl": "urn:uuid:x", "resource": {"resourceType": "Patient", "id": "none"}})
    entries.append({"fullUrl": "urn:uuid:y", "resource": {"resourceType": "Patient", "id": "refused"}})
    entries.append({"fullUrl": "urn:uuid:z", "resource": shot("refused", "2026-11-01", "not-done")})
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    library = tmp_path / "L.cql"
    library.write_text(export.text, encoding="utf-8")
    as_of = date(2026, 11, 23)
    answers = {p: TRI[a["exclusion-17"]] for p, a in run_cql(library, bundle, as_of).items()}
    ours = {
        p.patient.removeprefix("Patient/"): next(c.result for c in p.criteria if c.id == "exclusion-17")
        for p in screen_files(bundle, changed, as_of).patients
    }
    assert answers == ours
    assert ours == {
        "recent": "met",
        "old": "not-met",
        "undated": "unknown",
        "future": "not-met",
        "none": "not-met",
        "refused": "not-met",
    }
