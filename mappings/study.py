"""The study definition: a ClinicalTrials.gov API v2 study record plus the adapter's annotations.

Each study lives in its own folder (installed under ``mappings/studies/<ID>/``, or anywhere), holding
``study.json`` (this model) and ``criteria.yaml`` (``mappings.criteria``), loaded together by
``mappings.study_folder``. Mapping a second study means adding a folder, not code.

Only the parts of the v2 shape that the mapping reads are modelled; every object allows extra keys, so a
full v2 record (``derivedSection``, ``documentSection``, ...) loads unchanged. ``adapterAnnotations`` holds
structure that v2 keeps as free text (dose levels are prose in the arm description).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_STUDY = "NCT06849401"  # the study shipped with the package (documentation, tests)
STUDIES_ROOT = Path(__file__).resolve().parent / "studies"

_NCT = re.compile(r"^NCT[0-9]{8}$")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StudyDefinitionError(ValueError):
    """The study file cannot be used; the message is one line and says where and why."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class _Open(BaseModel):
    """v2 objects carry many more fields than we read: keep them, ignore them."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _Closed(BaseModel):
    """The adapter's own annotations: a typo must fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- protocolSection (ClinicalTrials.gov API v2) -------------------------------------------------


class OrgStudyIdInfo(_Open):
    id: str


class Organization(_Open):
    fullName: str | None = None
    class_: str | None = Field(default=None, alias="class")


class IdentificationModule(_Open):
    nctId: str
    orgStudyIdInfo: OrgStudyIdInfo | None = None
    organization: Organization | None = None
    briefTitle: str
    officialTitle: str | None = None

    @field_validator("nctId")
    @classmethod
    def _nct(cls, value: str) -> str:
        if not _NCT.match(value):
            raise ValueError("must be 'NCT' followed by 8 digits")
        return value


class StatusModule(_Open):
    overallStatus: str


class Sponsor(_Open):
    name: str
    class_: str | None = Field(default=None, alias="class")


class SponsorCollaboratorsModule(_Open):
    leadSponsor: Sponsor


class DescriptionModule(_Open):
    briefSummary: str | None = None
    detailedDescription: str | None = None


class ConditionsModule(_Open):
    conditions: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


class DesignInfo(_Open):
    allocation: str | None = None
    interventionModel: str | None = None
    primaryPurpose: str | None = None


class EnrollmentInfo(_Open):
    count: int = Field(ge=0)
    type: str | None = None


class DesignModule(_Open):
    studyType: str
    phases: tuple[str, ...] = ()
    designInfo: DesignInfo | None = None
    enrollmentInfo: EnrollmentInfo | None = None


class ArmGroup(_Open):
    label: str
    type: str | None = None
    description: str | None = None
    interventionNames: tuple[str, ...] = ()


class Intervention(_Open):
    type: str | None = None
    name: str
    description: str | None = None
    armGroupLabels: tuple[str, ...] = ()


class ArmsInterventionsModule(_Open):
    armGroups: tuple[ArmGroup, ...] = ()
    interventions: tuple[Intervention, ...] = ()


class EligibilityModule(_Open):
    eligibilityCriteria: str
    healthyVolunteers: bool | None = None
    sex: str | None = None
    minimumAge: str | None = None
    maximumAge: str | None = None


class Contact(_Open):
    name: str
    role: str | None = None
    phone: str | None = None
    phoneExt: str | None = None
    email: str | None = None


class ContactsLocationsModule(_Open):
    centralContacts: tuple[Contact, ...] = ()
    locations: tuple[dict[str, Any], ...] = ()


class ProtocolSection(_Open):
    identificationModule: IdentificationModule
    statusModule: StatusModule
    sponsorCollaboratorsModule: SponsorCollaboratorsModule
    descriptionModule: DescriptionModule = DescriptionModule()
    conditionsModule: ConditionsModule = ConditionsModule()
    designModule: DesignModule
    armsInterventionsModule: ArmsInterventionsModule = ArmsInterventionsModule()
    eligibilityModule: EligibilityModule
    contactsLocationsModule: ContactsLocationsModule = ContactsLocationsModule()


# --- adapterAnnotations -------------------------------------------------------------------------


#: UCUM duration units accepted for the follow-up, with their words.
DURATION_UNITS = {"a": "years", "mo": "months", "wk": "weeks", "d": "days", "h": "hours"}


class DoseLevel(_Closed):
    label: str
    value: float = Field(gt=0)
    unit: str = Field(description="human-readable unit, e.g. 'CAR-NK cells/kg'")
    ucum: str = Field(description="UCUM code, e.g. '{cells}/kg'")


class FollowUp(_Closed):
    value: float = Field(gt=0)
    unit: str = Field(description="UCUM duration unit: a, mo, wk, d")
    after: str = Field(description="what the follow-up period follows, e.g. 'infusion'")

    @field_validator("unit")
    @classmethod
    def _duration_unit(cls, value: str) -> str:
        if value not in DURATION_UNITS:
            raise ValueError(f"must be one of {', '.join(DURATION_UNITS)}")
        return value


class AdapterAnnotations(_Closed):
    source: str | None = None
    registryUrl: str | None = None
    doseLevels: tuple[DoseLevel, ...] = ()
    doseEscalation: str | None = None
    dosesPerSubject: int | None = Field(default=None, gt=0)
    followUp: FollowUp | None = None


class Study(_Open):
    protocolSection: ProtocolSection
    adapterAnnotations: AdapterAnnotations = AdapterAnnotations()

    # Shortcuts for the parts the mapping reads most.
    @property
    def nct_id(self) -> str:
        return self.protocolSection.identificationModule.nctId

    @property
    def org_study_id(self) -> str | None:
        info = self.protocolSection.identificationModule.orgStudyIdInfo
        return info.id if info else None

    @property
    def title(self) -> str:
        return self.protocolSection.identificationModule.briefTitle

    @property
    def registry_url(self) -> str:
        return self.adapterAnnotations.registryUrl or f"https://clinicaltrials.gov/study/{self.nct_id}"

    def registry_criteria(self) -> dict[str, str]:
        """The numbered criteria of the registry text as ``{"inclusion-1": text, ...}``.

        Empty when the text does not follow the usual "Inclusion Criteria: / 1. ..." layout.
        """
        return parse_eligibility_text(self.protocolSection.eligibilityModule.eligibilityCriteria)


_SECTION = re.compile(r"^\s*(inclusion|exclusion)\s+criteria\s*:?\s*$", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(\d+)[.)]\s+(.*\S)\s*$")


def parse_eligibility_text(text: str) -> dict[str, str]:
    """Split v2 ``eligibilityCriteria`` into numbered items per section (one item per line)."""
    items: dict[str, str] = {}
    section: str | None = None
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            continue
        item = _ITEM.match(line)
        if section and item:
            items[f"{section}-{int(item.group(1))}"] = item.group(2)
    return items


# --- locating and loading -----------------------------------------------------------------------


def is_folder_name(text: str) -> bool:
    """A study ID: one folder name (no path separators, no leading dot)."""
    return _FOLDER.match(text) is not None


def study_dir(nct: str | None = None, root: Path | None = None) -> Path:
    """The folder of an installed study (``study.json`` + ``criteria.yaml``) by name, by default the
    only one installed. ``mappings.study_folder`` also takes a path and loads both files."""
    base = root or STUDIES_ROOT
    known = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if nct is None:
        if len(known) != 1:
            raise StudyDefinitionError(f"name a study: installed are {', '.join(known) or 'none'}")
        return base / known[0]
    if not is_folder_name(nct):
        raise StudyDefinitionError(
            f"invalid study name {nct!r}: expected a folder name such as {DEFAULT_STUDY}"
        )
    folder = base / nct
    if not folder.is_dir():
        raise StudyDefinitionError(f"no study folder {folder}; known studies: {', '.join(known) or 'none'}")
    return folder


def parse_study(data: Any, source: str = "<study>") -> Study:
    if not isinstance(data, dict):
        raise StudyDefinitionError(f"{source}: expected a JSON object at the top level")
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StudyDefinitionError(
            f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))"
        ) from None


def load_study(path: Path | str) -> Study:
    """Read and validate a v2-shaped study file; any problem is a one-line ``StudyDefinitionError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyDefinitionError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StudyDefinitionError(f"{path}: cannot read study file: {reason}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise StudyDefinitionError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise StudyDefinitionError(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        raise StudyDefinitionError(f"{path}: not valid JSON: {exc}") from None
    return parse_study(data, str(path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
