"""A patient Group as the screening population (e.g. an mCODE cohort): its members instead of the
Condition search. A member that is not a Patient reference, or whose Patient the server does not
return, is reported as unreachable, never dropped silently."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from adapter.errors import UsageError
from adapter.fhir.client import FhirClient
from mappings.clinical.record import normalise_reference

log = logging.getLogger(__name__)

_GROUP = re.compile(r"^Group/(?P<id>[A-Za-z0-9\-.]{1,64})$")


@dataclass
class GroupPopulation:
    group: str
    patients: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # member references screening cannot read

    def method(self) -> str:
        text = f"members of {self.group} ({len(self.patients)} patients)"
        if self.unreachable:
            text += f"; {len(self.unreachable)} unreachable members: {', '.join(self.unreachable)}"
        return text


def group_reference(value: str) -> str:
    """``Group/<id>`` as given on the command line, checked."""
    if not _GROUP.match(value.strip()):
        raise UsageError(f"--population-group: expected Group/<id>, got {value!r}")
    return value.strip()


async def group_population(client: FhirClient, group: str) -> GroupPopulation:
    """The Group's Patient members (active ones: ``member.inactive`` true is left out and said so)."""
    group = group_reference(group)
    resource: Any = await client.get_json(group)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Group":
        raise UsageError(f"{group} is not a Group on this server")
    found = GroupPopulation(group)
    for member in resource.get("member") or ():
        entity = member.get("entity") if isinstance(member, dict) else None
        raw = entity.get("reference") if isinstance(entity, dict) else None
        ref = normalise_reference(raw) if isinstance(raw, str) else None
        if not ref or not ref.startswith("Patient/") or member.get("inactive") is True:
            found.unreachable.append(str(ref or raw or "(member without a reference)"))
            continue
        found.patients.append(ref.removeprefix("Patient/"))
    found.patients = sorted(set(found.patients))
    log.info(
        "group population",
        extra={"patients": len(found.patients), "unreachable": len(found.unreachable)},
    )
    return found


def not_returned(population: GroupPopulation, screened: set[str]) -> None:
    """Members whose Patient the server did not return join the unreachable ones."""
    for pid in population.patients:
        if pid not in screened:
            population.unreachable.append(f"Patient/{pid}")
