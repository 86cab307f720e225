"""A study is data (issue 14 item 4): ``--study ID|PATH`` for every command, one loader, the population
and the wording read from the study folder. The B-ALL fixture screens with its own words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import build_parser, main
from mappings.criteria import parse_criteria
from mappings.kinds.diagnosis import phrases
from mappings.study_folder import StudyChoiceError, installed_studies, load_study_folder
from tests.support.ball import FIXTURE, write_bundle, write_export

NCT_FOLDER = Path(__file__).resolve().parents[2] / "mappings" / "studies" / "NCT06849401"
AS_OF = "2026-11-23"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def diagnosis(report: dict[str, Any], patient: str) -> dict[str, Any]:
    found = next(p for p in report["patients"] if p["patient"] == f"Patient/{patient}")
    return next(c for c in found["criteria"] if c["id"] == "inclusion-2")


# --- the loader ---------------------------------------------------------------------------------


def test_a_study_is_found_by_id_by_path_or_as_the_only_one_installed(tmp_path: Path) -> None:
    assert installed_studies() == ["NCT06849401"]
    assert load_study_folder().nct_id == "NCT06849401"
    assert load_study_folder("NCT06849401").path == NCT_FOLDER
    by_path = load_study_folder(str(FIXTURE))
    assert (by_path.nct_id, by_path.criteria.study, by_path.criteria.folder) == (
        "NCT00000000",
        "NCT00000000",
        FIXTURE,
    )
    root = tmp_path / "studies"
    shutil.copytree(NCT_FOLDER, root / "NCT06849401")
    shutil.copytree(FIXTURE, root / "cd19-ball-test")
    assert load_study_folder("cd19-ball-test", root).nct_id == "NCT00000000"
    with pytest.raises(
        StudyChoiceError, match=r"several studies are installed \(NCT06849401, cd19-ball-test\)"
    ):
        load_study_folder(None, root)


def test_a_folder_that_is_not_a_study_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "map", "--study", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert code == 1 and err.strip().endswith("not a study folder (no study.json)")
    code, _, err = run(capsys, "--study", "NCT99999999", "map", "--out", str(tmp_path / "out"))
    assert (
        code == 2 and "no study 'NCT99999999'" in err and "known studies: NCT06849401" in err
    )  # a wrong option
    assert not (tmp_path / "out").exists()
    # criteria and record of two different studies: refused, not mixed
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(NCT_FOLDER / "study.json", mixed)
    shutil.copy(FIXTURE / "criteria.yaml", mixed)
    code, _, err = run(capsys, "map", "--study", str(mixed), "--out", str(tmp_path / "out"))
    assert code == 1 and "criteria.yaml is for NCT00000000 but study.json is NCT06849401" in err


def test_several_installed_and_none_named_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "studies"
    shutil.copytree(NCT_FOLDER, root / "NCT06849401")
    shutil.copytree(FIXTURE, root / "cd19-ball-test")
    monkeypatch.setenv("TRIAL_ADAPTER_STUDIES", str(root))
    code, _, err = run(capsys, "screen", "--sample", "--as-of", AS_OF, "--quiet")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "trial-adapter: error: several studies are installed (NCT06849401, cd19-ball-test): "
        "choose one with --study"
    )
    code, out, _ = run(capsys, "screen", "--study", "cd19-ball-test", "--sample", "--as-of", AS_OF, "--quiet")
    assert code == 0 and json.loads(out)["study"] == "NCT00000000"


def test_the_subcommand_study_wins_and_only_worker_and_serve_take_several(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    assert parser.parse_args(["--study", "A", "map", "--out", "x"]).study == ["A"]
    assert parser.parse_args(["--study", "A", "map", "--study", "B", "--out", "x"]).study == ["B"]
    assert parser.parse_args(["map", "--out", "x"]).study is None
    args = parser.parse_args(["worker", "--study", "A", "--study", "B", "--fhir-url", "http://x"])
    assert args.study == ["A", "B"]
    for command in (["publish", "--fhir-url", "http://x"], ["serve", "--fhir-url", "http://x"]):
        assert parser.parse_args([*command, "--study", str(FIXTURE)]).study == [str(FIXTURE)]
    code, _, err = run(capsys, "screen", "--study", "NCT06849401", "--study", str(FIXTURE), "--sample")
    assert code == 2 and "screen works on one study; --study was given 2 times" in err


# --- the population and the wording are the study's ------------------------------------------------


def test_the_b_all_fixture_screens_with_its_own_population_and_wording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_export(tmp_path / "export")
    code, out, err = run(capsys, "screen", "--study", str(FIXTURE), "--source", str(export), "--as-of", AS_OF)
    assert code == 0, err
    report = json.loads(out)
    assert report["study"] == "NCT00000000"
    # The population: coded B-ALL, B-ALL in words only (the fixture's population.text), coded T-ALL
    # (the other lineage: screened and said so), B-LBL in words (population.text only: no diagnosis
    # wording names it, so the criterion is not met); asthma alone is outside it.
    listed = sorted(p["patient"].removeprefix("Patient/") for p in report["patients"])
    assert listed == ["b-coded", "b-lbl", "b-words", "t-coded"]
    assert report["summary"]["outsidePopulation"] == 1
    assert "1 outside the ALL population (not listed)" in err
    coded = diagnosis(report, "b-coded")
    assert coded["result"] == "met"
    assert coded["reason"].startswith("B-lineage ALL recorded")
    assert "relapsed/refractory disease coded" in coded["reason"]
    words = diagnosis(report, "b-words")
    assert words["result"] == "unknown"
    assert 'ALL named in text only ("B-ALL, second relapse")' in words["reason"]
    assert diagnosis(report, "b-lbl")["result"] == "not-met"
    other = diagnosis(report, "t-coded")
    assert other["result"] == "not-met"
    assert other["reason"].startswith("ALL recorded with T lineage, no B-lineage record")
    # The same patients in a Bundle (everyone listed): the same reasons.
    code, out, _ = run(
        capsys, "--study", str(FIXTURE), "screen", "--source", str(write_bundle(tmp_path / "b.json")),
        "--as-of", AS_OF, "--quiet",
    )  # fmt: skip
    bundle = json.loads(out)
    assert diagnosis(bundle, "b-coded") == coded
    assert diagnosis(bundle, "asthma")["reason"] == "no record of acute lymphoblastic leukaemia"


def test_the_t_all_study_reads_the_same_records_the_other_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "screen", "--source", str(write_export(tmp_path / "e")), "--as-of", AS_OF, "--quiet"
    )
    report = json.loads(out)
    assert code == 0
    assert diagnosis(report, "t-coded")["reason"].startswith("T-lineage ALL recorded")
    assert diagnosis(report, "b-coded")["reason"].startswith(
        "ALL recorded with B lineage, no T-lineage record"
    )


def _definition(population: dict[str, Any] | None, wording: dict[str, Any] | None) -> Any:
    clause: dict[str, Any] = {
        "kind": "diagnosis", "lineage": "x_all", "unknown_lineage": "all", "status": ["relapsed"],
    }  # fmt: skip
    if wording is not None:
        clause["wording"] = wording
    data: dict[str, Any] = {
        "study": "NCT00000001", "version": 1, "manual_review_reason": "review", "systems": {},
        "concepts": {
            "x_all": {"display": "X-lineage leukaemia", "codes": [["urn:x", "1"]]},
            "all": {"display": "Leukaemia", "codes": [["urn:x", "2"]]},
            "relapsed": {"display": "Relapse", "codes": [["urn:x", "3"]]},
        },
        "criteria": [
            {"id": "inclusion-1", "type": "inclusion", "text": "t", "computable": "full", "rule": clause}
        ],
    }  # fmt: skip
    if population is not None:
        data["population"] = population
    return parse_criteria(data)


def test_wording_left_out_comes_from_the_concept_sets_and_a_population_names_known_sets() -> None:
    plain = _definition(None, None)
    say = phrases(plain.diagnosis_clause(), plain.concepts)
    assert (say.lineage_adjective, say.disease_name, say.status_missing) == (
        "X-lineage leukaemia",
        "the disease",
        "no Relapse code",
    )
    assert [c.name for c in plain.population_concepts()] == ["x_all", "all", "relapsed"]
    assert plain.population.text_search == ()
    chosen = _definition({"concepts": ["x_all"], "text": [r"\bXLL\b"]}, {"disease": "XLL"})
    assert [c.name for c in chosen.population_concepts()] == ["x_all"]
    assert phrases(chosen.diagnosis_clause(), chosen.concepts).disease_name == "XLL"
    with pytest.raises(ValueError, match="population: unknown concept set 'nope'"):
        _definition({"concepts": ["nope"]}, None)
    with pytest.raises(ValueError, match="not a regular expression"):
        _definition({"text": ["("]}, None)


def test_spark_options_need_an_export_not_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "screen", "--fhir-url", "http://127.0.0.1:9/fhir", "--engine", "spark")
    assert code == 2 and "--engine spark screens a Bulk Data NDJSON export" in err
    code, _, err = run(
        capsys, "screen", "--fhir-url", "http://127.0.0.1:9/fhir", "--spark-master", "local[1]"
    )
    assert code == 2 and "not a server" in err
