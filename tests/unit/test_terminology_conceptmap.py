"""Issue 12: a site's ConceptMaps translate local codes before matching; Observation components; the
fast path keeps every line that now matters; the population search uses the expansion."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from adapter.cli import main
from adapter.screening.engine import Screener
from adapter.screening.reads import ScreeningReads
from adapter.sources.server import chunks, population_tokens
from mappings.criteria import load_criteria
from mappings.terminology import TerminologyError
from mappings.terminology.conceptmap import load_concept_maps
from tests.support.clinical import (
    AS_OF,
    CRITERIA_PATH,
    LOINC,
    SCT,
    component,
    condition,
    obs,
    patient,
    record_of,
    result_of,
)

LOCAL_DX = "http://hospital.example/dx"
LOCAL_LAB = "http://hospital.example/lab"


def concept_map(elements: list[tuple[str, str, str, str, str]], cm_id: str = "site-dx") -> dict:
    """elements: (source system, local code, target system, target code, equivalence)."""
    groups: dict[tuple[str, str], list] = {}
    for source, code, target, target_code, equivalence in elements:
        groups.setdefault((source, target), []).append(
            {"code": code, "target": [{"code": target_code, "equivalence": equivalence}]}
        )
    return {
        "resourceType": "ConceptMap",
        "id": cm_id,
        "status": "active",
        "group": [{"source": s, "target": t, "element": e} for (s, t), e in groups.items()],
    }


@pytest.fixture
def site_map(tmp_path: Path) -> Path:
    path = tmp_path / "site-map.json"
    cm = concept_map(
        [
            (LOCAL_DX, "TALL", SCT, "277575008", "equivalent"),
            (LOCAL_DX, "ALLREL", SCT, "12301000132103", "wider"),  # source is a kind of the target
            (LOCAL_DX, "LEUK", SCT, "277575008", "narrower"),  # proves nothing
            (LOCAL_DX, "MAYBE", SCT, "67406007", "inexact"),  # proves nothing
            (LOCAL_LAB, "CD7PCT", LOINC, "35641-0", "equal"),
        ]
    )
    path.write_text(json.dumps(cm))
    return path


def screen_with(map_path: Path, *resources: dict, criterion: str) -> tuple[str, str]:
    definition = load_criteria(CRITERIA_PATH).with_concept_maps(load_concept_maps([map_path]))
    result = result_of(Screener(definition, AS_OF).screen(record_of(*resources)), criterion)
    return result.result, result.reason


def test_local_codes_translate_by_equivalence_and_say_through_which_map(site_map):
    t_all, relapse = condition((LOCAL_DX, "TALL")), condition((LOCAL_DX, "ALLREL"))
    result, reason = screen_with(site_map, t_all, relapse, criterion="inclusion-2")
    assert result == "met"
    assert "local code http://hospital.example/dx|TALL via ConceptMap/site-dx (equivalent)" in reason
    # without the map the local codes are nothing
    plain = result_of(Screener(load_criteria(CRITERIA_PATH), AS_OF).screen(record_of(t_all)), "inclusion-2")
    assert plain.result == "not-met"


def test_mappings_that_do_not_make_the_source_mean_the_target_prove_nothing(site_map):
    assert screen_with(site_map, condition((LOCAL_DX, "LEUK")), criterion="inclusion-2")[0] == "not-met"
    assert screen_with(site_map, condition((LOCAL_DX, "MAYBE")), criterion="exclusion-4")[0] == "not-met"


def test_local_observation_codes_and_components_are_read(site_map):
    local = obs((LOCAL_LAB, "CD7PCT"), 92, "%", ago=3)
    result, reason = screen_with(site_map, local, criterion="inclusion-5")
    assert (
        result == "met" and "local code http://hospital.example/lab|CD7PCT via ConceptMap/site-dx" in reason
    )
    panel = obs((LOINC, "0000-0"), ago=3, components=[component((LOCAL_LAB, "CD7PCT"), 80, "%")])
    assert screen_with(site_map, panel, criterion="inclusion-5")[0] == "not-met"  # > 80 is strict
    reads = ScreeningReads(load_criteria(CRITERIA_PATH).with_concept_maps(load_concept_maps([site_map])))
    line = (json.dumps(local, separators=(",", ":")) + "\n").encode()
    assert not reads.skippable_line(line)


def test_a_flow_panel_component_carrying_cd7_is_read():
    cd7 = (LOINC, "35641-0")
    panel = obs((LOINC, "0000-0"), ago=3, components=[component(cd7, 85, "%")])
    definition = load_criteria(CRITERIA_PATH)
    result = result_of(Screener(definition, AS_OF).screen(record_of(patient(), panel)), "inclusion-5")
    assert result.result == "met" and result.evidence == [f"Observation/{panel['id']}"]
    reads = ScreeningReads(definition)
    assert reads.reads(panel)
    assert not reads.skippable_line((json.dumps(panel) + "\n").encode())
    unrelated = obs((LOINC, "0000-0"), ago=3, components=[component((LOINC, "8480-6"), 120, "mm[Hg]")])
    assert not reads.reads(unrelated)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "cannot read ConceptMap"),
        (json.dumps({"resourceType": "Patient"}), "not a FHIR ConceptMap"),
        (
            json.dumps(concept_map([(LOCAL_DX, "X", SCT, "1", "sameish")])),
            "equivalence missing or not R4",
        ),
        (json.dumps({"resourceType": "ConceptMap", "group": [{"element": []}]}), "needs source and target"),
    ],
)
def test_a_bad_concept_map_is_a_one_line_error(tmp_path, capsys, content, fragment):
    path = tmp_path / "cm.json"
    path.write_text(content)
    with pytest.raises(TerminologyError, match=fragment):
        load_concept_maps([path])
    with pytest.raises(SystemExit) as exit_:
        main(["screen", "--sample", "--concept-map", str(path), "--quiet"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("trial-adapter: error:") and fragment in err and "\n" not in err


def test_screen_accepts_concept_maps(site_map, tmp_path, capsys):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": r}
            for r in (patient(), condition((LOCAL_DX, "TALL")), condition((LOCAL_DX, "ALLREL")))
        ],
    }
    source = tmp_path / "bundle.json"
    source.write_text(json.dumps(bundle))
    out = tmp_path / "out.json"
    code = main(["screen", "--source", str(source), "--concept-map", str(site_map), "--output", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    inclusion = next(c for c in report["patients"][0]["criteria"] if c["id"] == "inclusion-2")
    assert inclusion["result"] == "met" and "ConceptMap/site-dx" in inclusion["reason"]


def test_population_uses_the_expansion_and_local_codes_in_short_chunks(site_map):
    definition = load_criteria(CRITERIA_PATH).with_concept_maps(load_concept_maps([site_map]))
    tokens = population_tokens(definition)
    assert "http://hl7.org/fhir/sid/icd-10-cm|C91.0" in tokens  # the header itself
    assert "http://hl7.org/fhir/sid/icd-10-cm|C91.01" in tokens
    assert "http://hospital.example/dx|TALL" in tokens and "http://hospital.example/dx|ALLREL" in tokens
    assert "http://hospital.example/dx|LEUK" not in tokens  # narrower proves nothing
    parts = chunks([f"http://example.org/cs|{n:05d}" for n in range(400)], budget=1500)
    assert len(parts) > 1 and all(len(p) <= 1500 for p in parts)
    assert sum(len(p.split(",")) for p in parts) == 400


# --- summary.unmapped -----------------------------------------------------------------------------


def test_unmapped_lists_unrecognised_condition_codes_texts_and_measurement_observations(tmp_path):
    from adapter.screening.run import screen_files

    plt_local = obs((LOCAL_LAB, "PLT"), 50, "10*9/L", ago=1)
    plt_local["code"]["coding"][0]["display"] = "Platelet count"
    pulse = obs((LOCAL_LAB, "HR"), 80, "/min", ago=1)
    pulse["code"]["coding"][0]["display"] = "Heart rate"
    asthma_a = condition((SCT, "195967001"), id="c-asthma-a")
    asthma_b = condition((SCT, "195967001"), id="c-asthma-b")
    words = condition((LOCAL_DX, "x"), id="c-words")
    words["code"] = {"text": "Chronic cough"}
    t_all = condition((SCT, "277575008"), id="c-tall")
    resources = [patient(), asthma_a, asthma_b, words, t_all, plt_local, pulse]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    source = tmp_path / "b.json"
    source.write_text(json.dumps(bundle))
    report = screen_files(source, load_criteria(CRITERIA_PATH), AS_OF).to_json_dict()
    unmapped = report["summary"]["unmapped"]
    assert unmapped[0] == {
        "kind": "code",
        "system": SCT,
        "code": "195967001",
        "text": None,
        "resourceType": "Condition",
        "count": 2,
        "examples": ["Condition/c-asthma-a", "Condition/c-asthma-b"],
    }
    assert {"kind": "text", "system": None, "code": None, "text": "Chronic cough", "resourceType": "Condition", "count": 1,
            "examples": ["Condition/c-words"]} in unmapped  # fmt: skip
    observations = [u for u in unmapped if u["resourceType"] == "Observation"]
    assert [(u["code"], u["text"]) for u in observations] == [("PLT", "Platelet count")]
    assert not any(u.get("code") == "277575008" for u in unmapped)


# --- the population search on servers that cannot search by words ---------------------------------


def _bundle(*resources: dict, total: int | None = None) -> dict:
    out: dict = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if total is not None:
        out["total"] = total
    return out


@respx.mock
async def test_a_server_that_ignores_text_search_is_not_asked_by_words_and_the_output_says_so():
    from adapter.fhir.client import FhirClient
    from adapter.sources.server import ServerSource

    base = "https://fhir.example.test/fhir"
    coded = condition((SCT, "277575008"), subject="p-coded")
    worded = condition((LOCAL_DX, "x"), subject="p-words")
    worded["code"] = {"text": "Relapsed T-cell acute lymphoblastic leukaemia"}
    asthma = condition((LOCAL_DX, "y"), subject="p-asthma")
    asthma["code"] = {"text": "Asthma"}

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if "code:text" in params:  # a server that drops the modifier: everything matches
            return httpx.Response(200, json=_bundle(total=3))
        if params.get("code:missing") == "true":
            return httpx.Response(200, json=_bundle(worded, asthma))
        return httpx.Response(200, json=_bundle(coded))

    route = respx.get(f"{base}/Condition").mock(side_effect=answer)
    respx.post(base).mock(return_value=httpx.Response(405))  # no batch: the GET searches
    async with FhirClient(base) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == ["p-coded", "p-words"]
    text_searches = [c for c in route.calls if "code:text" in dict(c.request.url.params)]
    assert len(text_searches) == 1  # the probe only
    assert "no text search on this server" in source.population_method
    assert "Conditions with only text read for ALL wording" in source.population_method


@respx.mock
async def test_a_server_without_missing_search_says_text_only_conditions_are_not_found():
    from adapter.fhir.client import FhirClient
    from adapter.sources.server import ServerSource

    base = "https://fhir.example.test/fhir"

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        if "code:text" in params or "code:missing" in params:
            return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(200, json=_bundle())

    respx.get(f"{base}/Condition").mock(side_effect=answer)
    respx.post(base).mock(return_value=httpx.Response(501))  # no batch: the GET searches
    async with FhirClient(base) as client:
        source = ServerSource(client, load_criteria(CRITERIA_PATH))
        assert await source.population() == []
    assert "Conditions with only text are not found" in source.population_method
