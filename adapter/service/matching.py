"""The trial-matching protocols that matching apps already speak, answered from the same screening as $screen.

* MITRE's clinical-trial-matching-service (github.com/mcode/clinical-trial-matching-service,
  src/server.ts, as the clinical-trial-matching-app calls it in src/pages/api/clinical-trial-search.ts):
  ``POST /match/getClinicalTrial`` with ``Content-Type: application/json`` and the patient's Bundle as
  the body (since April 2021; the older ``{"patientData": <Bundle or JSON text>}`` envelope is accepted
  too). Search parameters travel as a ``Parameters`` resource inside that Bundle (zipCode, travelRadius,
  phase, recruitmentStatus). 200: a ``searchset`` Bundle of ResearchStudy entries with ``search.mode =
  match`` and ``search.score`` in 0..1; an error is ``{"error": "..."}`` with a 4xx/5xx status, as there.
  ``GET /match`` answers the protocol's hello line.
* ``ResearchStudy/$match``, the CodeX trial-matching draft IG's operation (github.com/standardhealth/
  fsh-pct, OperationDefinition ClinicalTrialMatchService): a Parameters resource in, with the patient
  Bundle as ``trialMatchClinicalData``; ``trialMatchOutput`` (the same searchset) out, plus ours:
  one ``result`` per screened study with its status, score and per-criterion results.

Every served study is screened: the searchset holds one entry per study the patient is a candidate for
(inside the filters), best score first; ``$match`` has one ``result`` per served study.

Score (``search.score``): 1.0 a candidate with no data left to collect; a candidate with data still
to collect ranks below the matching app's "High-likelihood" threshold (0.75): 0.74 x the share of the
data-decidable criteria that are settled, never under 0.01 (the app reads < 0.01 as "No match", and an
unknown is never an exclusion). Criteria only people decide (investigator judgement, consent) are open
for every patient and do not lower the score. A not-eligible patient gets no entry (total 0): a study
listed as a match with score 0 would be shown to patients; $match still reports it, with score 0 and
the deciding criteria, under ``result``.
"""

from __future__ import annotations

import copy
from datetime import date
from functools import lru_cache
from typing import Any

from adapter.fhir.transaction import full_url
from adapter.screening.funnel import needs_data
from adapter.screening.results import CriterionResult, PatientResult
from mappings.criteria import CriteriaDefinition
from mappings.resources import build_study_resources
from mappings.study import Study, load_study

from .checks import InputError, parse_json
from .intake import screen_bundle, worker_definitions, worker_study_file
from .meta import MATCH_DEFINITION, criterion_parts
from .sources import BASE

MITRE_PREFIX = "/match"
MITRE_PATH = f"{MITRE_PREFIX}/getClinicalTrial"
MITRE_HELLO = "Hello from the Clinical Trial Matching Service"
MATCH_PATH = "/fhir/ResearchStudy/$match"
MATCH_ID = "ResearchStudy-match"
MATCH_URL = MATCH_DEFINITION
CODEX_MATCH = (
    "http://mcodeinitiative.org/codex/us/patient.clinical.trial.matching/"
    "OperationDefinition/ClinicalTrialMatchService"
)
SCREENING_EXTENSION = f"{BASE}/StructureDefinition/eligibility-screening"
NO_ID = "(no id)"  # how the engine (screening/engine.py) names evidence that has no id
SEARCH_PARAMETERS = ("zipCode", "travelRadius", "phase", "recruitmentStatus")
HIGH = 0.75  # the matching app's "High-likelihood match" threshold (src/components/Results/utils.ts)
CORS_PATHS = (MITRE_PREFIX, MITRE_PATH, MATCH_PATH, f"/fhir/OperationDefinition/{MATCH_ID}", "/fhir/metadata")


# --- score and entries ----------------------------------------------------------------------------


def score(result: PatientResult) -> float:
    """0..1, see the module docstring: 1.0 nothing to collect, < 0.75 data to collect, 0 not eligible."""
    if result.status != "candidate":
        return 0.0
    open_data = sum(1 for c in result.criteria if needs_data(c))
    if open_data == 0:
        return 1.0
    people_only = sum(1 for c in result.criteria if c.result == "unknown" and not needs_data(c))
    decidable = len(result.criteria) - people_only
    return max(0.01, round((HIGH - 0.01) * (decidable - open_data) / decidable, 2))


def _evidence(ref: str) -> str:
    """What a result rests on, as the request named it (``Condition/abc``). A string, not a Reference:
    the resources are the caller's, not in this searchset, so a relative reference could not resolve."""
    kind, _, rest = ref.partition("/")
    return f"{kind} without an id in the request" if rest == NO_ID else ref


def _criterion_extension(c: CriterionResult) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "id", "valueString": c.id},
        {"url": "type", "valueCode": c.type},
        {"url": "result", "valueCode": c.result},
        {"url": "reason", "valueString": c.reason},
    ]
    parts += [{"url": "evidence", "valueString": _evidence(ref)} for ref in c.evidence]
    if c.resolve is not None:
        parts.append({"url": "toSettle", "valueString": c.resolve.text})
    return {"url": "criterion", "extension": parts}


def screening_extension(result: PatientResult, as_of: date) -> dict[str, Any]:
    """Why: the status, the day screened for and every criterion's result, on the searchset entry."""
    return {
        "url": SCREENING_EXTENSION,
        "extension": [
            {"url": "status", "valueCode": result.status},
            {"url": "asOf", "valueDate": as_of.isoformat()},
            *(_criterion_extension(c) for c in result.criteria),
        ],
    }


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


def outside_filters(study: dict[str, Any], filters: dict[str, str]) -> str | None:
    """Which requested filter the study is outside of (phase, recruitmentStatus), if any.

    zipCode and travelRadius are accepted and not applied: the study's sites carry no coordinates, and
    the matching app measures distance itself."""
    phase = filters.get("phase")
    if phase:
        names = {c.get("code", "") for c in study.get("phase", {}).get("coding", [])}
        names.add(study.get("phase", {}).get("text", ""))
        if _norm(phase) not in {_norm(n) for n in names if n}:
            return "phase"
    status = filters.get("recruitmentStatus")
    if status and _norm(status) != _norm(study.get("status", "")):
        return "recruitmentStatus"
    return None


def searchset(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


Screened = list[tuple[CriteriaDefinition, PatientResult]]


def study_entries(screened: Screened, as_of: date, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The searchset entries for one patient: each study they are a candidate for inside the filters,
    best score first (served order among equals)."""
    entries = []
    for definition, result in screened:
        if result.status != "candidate":
            continue
        study = app_study(definition)
        if outside_filters(study, filters):
            continue
        entries.append(
            {
                "extension": [screening_extension(result, as_of)],
                "fullUrl": full_url(study),
                "resource": study,
                "search": {"mode": "match", "score": score(result)},
            }
        )
    return sorted(entries, key=lambda e: -e["search"]["score"])


# --- the study as the matching app reads it -------------------------------------------------------


@lru_cache(maxsize=8)
def _built(study_id: str) -> tuple[Study, dict[str, Any], dict[str, Any]]:
    """By study id (a definition is not hashable): this worker serves each study id once."""
    [definition] = [d for d in worker_definitions() if d.study == study_id]
    folder = definition.folder  # the folder it was loaded from (--study PATH), else installed or configured
    study = load_study(folder / "study.json" if folder else worker_study_file(study_id))
    built = build_study_resources(study, definition)
    return study, built.research_study, built.organization


def app_study(definition: CriteriaDefinition) -> dict[str, Any]:
    """Our published ResearchStudy, with what the app reads from a result in the shape it reads it:
    the sponsor, the eligibility text and the interventions per arm as contained resources, and the
    study type as "Study Type: ..." text (the app keeps only active interventional studies)."""
    study, research_study, organization = _built(definition.study)
    proto = study.protocolSection
    out = copy.deepcopy(research_study)
    out.pop("meta", None)  # reshaped: it no longer claims our published profile
    contained: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "sponsor", "name": organization["name"]},
        {"resourceType": "Group", "id": "eligibility", "type": "person", "actual": False},
    ]
    out["sponsor"] = {"reference": "#sponsor", "display": organization["name"]}
    out["enrollment"] = [
        {"reference": "#eligibility", "display": proto.eligibilityModule.eligibilityCriteria}
    ]
    protocol: list[dict[str, str]] = []
    for index, intervention in enumerate(proto.armsInterventionsModule.interventions):
        for label in intervention.armGroupLabels or ("",):
            plan: dict[str, Any] = {
                "resourceType": "PlanDefinition",
                "id": f"plan-{index}-{len(protocol)}",
                "status": "unknown",
                "title": intervention.name,
            }
            if intervention.type:
                plan["type"] = {"text": intervention.type.replace("_", " ").title()}
            if label:
                plan["subjectCodeableConcept"] = {"text": label}
            contained.append(plan)
            protocol.append({"reference": f"#{plan['id']}"})
    out["protocol"] = protocol
    study_type = proto.designModule.studyType.replace("_", " ").title()
    out["category"] = [*out.get("category", []), {"text": f"Study Type: {study_type}"}]
    out["contained"] = contained
    return out


# --- the two protocols (run in the CpuPool) -------------------------------------------------------


def _search_parameters(resource: dict[str, Any], filters: dict[str, str]) -> None:
    for parameter in resource.get("parameter") or []:
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name in SEARCH_PARAMETERS:
            value = parameter.get("valueString", parameter.get("valueDecimal"))
            if value is not None:
                filters[name] = str(value)


def mitre_search(body: bytes, max_entries: int, as_of: date) -> dict[str, Any]:
    """POST /match/getClinicalTrial: the patient Bundle (or the legacy envelope) -> a searchset."""
    data = parse_json(body)
    if isinstance(data, dict) and "resourceType" not in data and "patientData" in data:
        data = data["patientData"]
        if isinstance(data, str):  # the envelope once allowed the Bundle as JSON text
            data = parse_json(data.encode("utf-8"))
    if (
        not isinstance(data, dict)
        or data.get("resourceType") != "Bundle"
        or not isinstance(data.get("entry"), list)
    ):
        raise InputError(400, "structure", "Invalid patientBundle")
    filters: dict[str, str] = {}
    entries = []
    for entry in data["entry"]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
            _search_parameters(resource, filters)  # the protocol's search parameters, not patient data
        else:
            entries.append(entry)
    screened = screen_bundle({**data, "entry": entries}, max_entries, as_of, "getClinicalTrial")
    return searchset(study_entries(screened, as_of, filters))


def _match_input(data: Any) -> tuple[dict[str, Any], dict[str, str], date | None]:
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise InputError(400, "structure", "$match expects a Parameters resource")
    if not isinstance(data.get("parameter", []), list):
        raise InputError(400, "structure", "Parameters.parameter must be a list", "Parameters.parameter")
    bundle: dict[str, Any] | None = None
    filters: dict[str, str] = {}
    as_of: date | None = None
    for index, parameter in enumerate(data.get("parameter") or []):
        where = f"Parameters.parameter[{index}]"
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "trialMatchClinicalData":
            if bundle is not None:
                raise InputError(400, "invalid", "trialMatchClinicalData is given twice", where)
            bundle = parameter.get("resource")
        elif name in SEARCH_PARAMETERS:
            value = parameter.get("valueString")
            if not isinstance(value, str):
                raise InputError(400, "invalid", f"{name} needs a valueString", where)
            filters[name] = value
        elif name == "asOf":
            try:
                as_of = date.fromisoformat(str(parameter.get("valueDate")))
            except ValueError:
                raise InputError(400, "invalid", "asOf needs a valueDate, YYYY-MM-DD", where) from None
        else:
            raise InputError(400, "not-supported", f"unknown parameter {str(name)[:100]!r}", where)
    if not isinstance(bundle, dict):
        raise InputError(400, "required", "trialMatchClinicalData (the patient's Bundle) is required")
    return bundle, filters, as_of


def match_operation(body: bytes, max_entries: int, today: date) -> dict[str, Any]:
    """ResearchStudy/$match: Parameters in, Parameters out (trialMatchOutput + one result per study)."""
    bundle, filters, as_of = _match_input(parse_json(body))
    as_of = as_of or today
    screened = screen_bundle(bundle, max_entries, as_of, "$match")
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "trialMatchOutput", "resource": searchset(study_entries(screened, as_of, filters))},
            *({"name": "result", "part": _result_parts(d, r, as_of, filters)} for d, r in screened),
        ],
    }


def _result_parts(
    definition: CriteriaDefinition, result: PatientResult, as_of: date, filters: dict[str, str]
) -> list[dict[str, Any]]:
    study = app_study(definition)
    parts: list[dict[str, Any]] = [
        {"name": "study", "valueReference": {"reference": f"ResearchStudy/{study['id']}"}},
        {"name": "status", "valueCode": result.status},
        {"name": "score", "valueDecimal": score(result)},
        {"name": "asOf", "valueDate": as_of.isoformat()},
    ]
    outside = outside_filters(study, filters)
    if outside:
        parts.append({"name": "outsideFilter", "valueString": outside})
    parts += [{"name": "criterion", "part": criterion_parts(c)} for c in result.criteria]
    return parts
