"""The registry is the one list of criterion kinds, and each kind module holds its kind whole."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import pytest
import yaml

from mappings.clinical import resource_types
from mappings.criteria import CriteriaDefinitionError, load_criteria, parse_criteria
from mappings.kinds import registry
from mappings.kinds.base import Clause, Kind

REPO = Path(__file__).resolve().parents[2]
CRITERIA = REPO / "mappings" / "studies" / "NCT06849401" / "criteria.yaml"
KIND_MODULES = sorted(p.stem for p in (REPO / "mappings" / "kinds").glob("*.py"))
NOT_KINDS = {"__init__", "base", "publish", "registry"}


def test_every_kind_module_is_registered_and_provides_its_parts() -> None:
    registered = {kind.name: kind for kind in registry.KINDS}
    assert len(registered) == len(registry.KINDS), "kind names are unique"
    modules = [m for m in KIND_MODULES if m not in NOT_KINDS]
    for name in modules:
        module = importlib.import_module(f"mappings.kinds.{name}")
        kinds = [v for v in vars(module).values() if isinstance(v, Kind)]
        assert kinds, f"mappings/kinds/{name}.py defines no Kind"
        for kind in kinds:
            assert registered.get(kind.name) is kind, f"{kind.name} is not in registry.KINDS"
            assert issubclass(kind.schema, Clause)
            # The schema's discriminator is the kind's name.
            assert typing.get_args(kind.schema.model_fields["kind"].annotation) == (kind.name,)
            assert callable(kind.evaluate) and callable(kind.reads)
            assert kind.combination or callable(kind.characteristic)
    assert {k.name for k in registry.KINDS} == {
        kind.name
        for name in modules
        for kind in vars(importlib.import_module(f"mappings.kinds.{name}")).values()
        if isinstance(kind, Kind)
    }


def test_every_kind_the_criteria_use_resolves() -> None:
    raw = yaml.safe_load(CRITERIA.read_text(encoding="utf-8"))
    definition = load_criteria(CRITERIA)
    used = {leaf.kind for c in definition.criteria for leaf in c.leaves()}
    assert used == definition.leaf_kinds()
    assert used <= {k.name for k in registry.KINDS if not k.combination}
    for criterion in definition.criteria:
        for leaf in criterion.leaves():
            kind = registry.kind_of(leaf)
            assert isinstance(leaf, kind.schema)
            reads = kind.reads(leaf)
            assert set(reads.resource_types) <= set(resource_types.READ_TYPES)
            assert kind.characteristic is not None
            code, value = kind.characteristic(leaf, definition)
            assert code and len(value) == 1 and next(iter(value)).startswith("value")
    assert len(raw["criteria"]) == len(definition.criteria)


def test_the_schema_names_exactly_the_registered_kinds() -> None:
    data = yaml.safe_load(CRITERIA.read_text(encoding="utf-8"))
    data["criteria"][0]["rule"] = {"kind": "no-such-kind"}
    with pytest.raises(CriteriaDefinitionError) as raised:
        parse_criteria(data)
    message = str(raised.value)
    for kind in registry.KINDS:
        assert f"'{kind.name}'" in message


def test_combinations_are_the_yaml_keys_that_nest() -> None:
    assert registry.COMBINATIONS == ("all_of", "any_of")


def test_one_table_of_resource_types() -> None:
    assert resource_types.CLINICAL_TYPES == (
        "Condition", "Observation", "Procedure", "MedicationRequest", "MedicationStatement", "Immunization",
    )  # fmt: skip
    assert resource_types.SUBJECT_ELEMENT["Immunization"] == "patient"
    assert {"Patient", "Immunization", "Medication"} == resource_types.ALWAYS_READ
    assert set(resource_types.READ_TYPES) <= resource_types.ACCEPTED_TYPES
    # What the ingestion service accepts: the types read, and what engines commonly send with them.
    assert {
        "Patient", "Condition", "Observation", "Procedure", "MedicationRequest", "MedicationStatement",
        "Medication", "Immunization", "Encounter", "DiagnosticReport", "Specimen", "AllergyIntolerance",
        "Practitioner", "PractitionerRole", "Organization", "Location",
    } == resource_types.ACCEPTED_TYPES  # fmt: skip
    # What the service accepts but never reads, a hospital export's NDJSON lines skip unparsed.
    assert resource_types.ACCOMPANYING_TYPES <= resource_types.NEVER_READ
    assert not set(resource_types.READ_TYPES) & resource_types.NEVER_READ
