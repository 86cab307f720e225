"""Checks of the synthetic hospital (not part of the main suite: `pytest bench/test_synth.py`)."""

from __future__ import annotations

import importlib
import random
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bench import synth
from mappings.criteria import load_criteria

CRITERIA = Path(__file__).resolve().parents[1] / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
R4B_MODULES = {
    "Patient": "patient",
    "Condition": "condition",
    "Observation": "observation",
    "Encounter": "encounter",
    "Procedure": "procedure",
    "MedicationRequest": "medicationrequest",
    "Immunization": "immunization",
}


def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{R4B_MODULES[resource_type]}")
    return getattr(module, resource_type)


def test_same_seed_same_data() -> None:
    a = list(synth.generate(300, synth.Options(seed=3)))
    b = list(synth.generate(300, synth.Options(seed=3)))
    c = list(synth.generate(300, synth.Options(seed=4)))
    assert a == b
    assert a != c


def test_all_population_is_fixed_whatever_the_size() -> None:
    for n in (200, 2000):
        kinds = Counter(synth.all_patient_ids(n).values())
        assert kinds == {"t": 40, "b": 20}


def test_every_patient_has_hospital_noise() -> None:
    per_patient = Counter(
        r["subject"]["reference"] for r in synth.generate(200) if r["resourceType"] == "Observation"
    )
    assert len(per_patient) == 200
    assert min(per_patient.values()) >= 20


def test_codes_come_from_the_criteria() -> None:
    definition = load_criteria(CRITERIA)
    population = definition.population_concepts()
    ids = synth.all_patient_ids(500)
    with_all = set()
    for r in synth.generate(500):
        if r["resourceType"] == "Condition" and any(s.matching_coding(r["code"]) for s in population):
            with_all.add(r["subject"]["reference"].removeprefix("Patient/"))
    assert with_all == set(ids)  # every ALL patient is found by the population codes, nobody else


@pytest.mark.parametrize("seed", [7, 11])
def test_sample_of_resources_is_valid_fhir(seed: int) -> None:
    resources = list(synth.generate(400, synth.Options(seed=seed, as_of=date(2026, 11, 23))))
    rng = random.Random(seed)
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    assert set(by_type) == set(R4B_MODULES)
    all_ids = set(synth.all_patient_ids(400, synth.Options(seed=seed)))
    leukaemia = [r for r in resources if r.get("id", "").split("-")[0] in all_ids]
    sample = leukaemia + [x for rs in by_type.values() for x in rng.sample(rs, min(len(rs), 150))]
    for r in sample:
        _model(r["resourceType"]).model_validate(r)
