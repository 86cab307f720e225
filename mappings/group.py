"""The eligibility Group's characteristics and narrative: one characteristic per leaf clause, each
written by its kind (``mappings.kinds``); ``mappings.resources`` builds the Group around them."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from mappings.criteria import CriteriaDefinition, Criterion
from mappings.kinds.publish import BASE
from mappings.kinds.registry import kind_of
from mappings.study import Study, StudyDefinitionError

EXT_ELIGIBILITY_CRITERION = f"{BASE}/StructureDefinition/eligibility-criterion"


def characteristics(criteria: CriteriaDefinition) -> list[dict[str, Any]]:
    return [ch for c in criteria.criteria for ch in _characteristics(c, criteria)]


def _characteristics(criterion: Criterion, criteria: CriteriaDefinition) -> Iterator[dict[str, Any]]:
    """One characteristic per leaf clause of the criterion's rule.

    Computable leaves carry their codes; manual leaves (the whole of a non-computable criterion, or the
    judgement part of a partial one) carry trial-adapter-local#manual-review = true, so the Group never
    presents a partial criterion as settled by its computable part alone. The extension's `computable`
    is the criterion's: true only when the whole criterion is computable from FHIR data.
    """
    leaves = criterion.leaves()
    several = len(leaves) > 1
    for leaf in leaves:
        publish = kind_of(leaf).characteristic
        if publish is None:  # pragma: no cover - leaves are never combinations
            raise StudyDefinitionError(f"no FHIR mapping for clause kind {leaf.kind!r}")
        code, value = publish(leaf, criteria)
        parts = [
            {"url": "id", "valueString": criterion.id},
            {"url": "text", "valueString": criterion.text},
            {"url": "computable", "valueBoolean": criterion.computable == "full"},
        ]
        if several:
            parts.append({"url": "clause", "valueString": leaf.label or leaf.kind})
        yield {
            "extension": [{"url": EXT_ELIGIBILITY_CRITERION, "extension": parts}],
            "code": code,
            **value,
            "exclude": criterion.type == "exclusion",
        }


def group_narrative(study: Study, criteria: CriteriaDefinition) -> dict[str, Any]:
    rows = "".join(
        f"<tr><td>{html.escape(c.id, quote=False)}</td><td>{html.escape(c.text, quote=False)}</td>"
        f"<td>{'yes' if c.computable == 'full' else c.computable}</td></tr>"
        for c in criteria.criteria
    )
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml">'
        f"<p>Eligibility criteria of {html.escape(study.nct_id, quote=False)} ({len(criteria.criteria)} criteria)</p>"
        "<table><thead><tr><th>Criterion</th><th>Text</th><th>Computable</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )
    return {"status": "generated", "div": div}
