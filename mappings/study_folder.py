"""A study folder: ``study.json`` (``mappings.study``) and ``criteria.yaml`` (``mappings.criteria``).

Every command loads its study through ``load_study_folder``, from a reference the user gives:

- an ID, the name of a folder under the installed studies (``mappings/studies/``, or the folder a
  deployment names, ``TRIAL_ADAPTER_STUDIES``);
- a PATH, any folder holding both files (``./studies/my-trial``, a test fixture);
- nothing: the only installed study; with several installed, the caller must choose (``StudyChoiceError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mappings import study as study_module
from mappings.criteria import CriteriaDefinition, load_criteria
from mappings.study import Study, StudyDefinitionError, load_study

STUDY_FILE = "study.json"
CRITERIA_FILE = "criteria.yaml"


class StudyChoiceError(StudyDefinitionError):
    """No study was named and the choice is not obvious (none or several installed), or the name names
    no study: a wrong option, not a broken definition."""


@dataclass(frozen=True)
class StudyFolder:
    path: Path
    study: Study
    criteria: CriteriaDefinition

    @property
    def nct_id(self) -> str:
        return self.study.nct_id


def studies_root(root: Path | str | None = None) -> Path:
    """The folder of installed studies: ``root`` (a deployment's setting) else the package's."""
    return Path(root) if root else study_module.STUDIES_ROOT


def installed_studies(root: Path | str | None = None) -> list[str]:
    """The names of the installed study folders (those holding a study.json), sorted."""
    base = studies_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / STUDY_FILE).is_file())


def study_path(ref: str | Path | None = None, root: Path | str | None = None) -> Path:
    """The folder a reference names (see the module docstring); a one-line error when there is none."""
    base = studies_root(root)
    if ref is None or str(ref) == "":
        names = installed_studies(base)
        if len(names) == 1:
            return base / names[0]
        if not names:
            raise StudyChoiceError(f"no study installed in {base}: name a study folder with --study PATH")
        raise StudyChoiceError(f"several studies are installed ({', '.join(names)}): choose one with --study")
    text = str(ref)
    if isinstance(ref, str) and study_module.is_folder_name(text) and (base / text).is_dir():
        return base / text
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if isinstance(ref, str) and study_module.is_folder_name(text):
        known = ", ".join(installed_studies(base)) or "none"
        raise StudyChoiceError(f"no study {text!r} in {base} and no such folder; known studies: {known}")
    raise StudyChoiceError(f"{path}: no such study folder")


def load_study_folder(ref: str | Path | None = None, root: Path | str | None = None) -> StudyFolder:
    """The study a reference names, both files read and checked against each other."""
    path = study_path(ref, root)
    for name in (STUDY_FILE, CRITERIA_FILE):
        if not (path / name).is_file():
            raise StudyDefinitionError(f"{path}: not a study folder (no {name})")
    study = load_study(path / STUDY_FILE)
    criteria = load_criteria(path / CRITERIA_FILE)
    if criteria.study != study.nct_id:
        raise StudyDefinitionError(
            f"{path}: criteria.yaml is for {criteria.study} but study.json is {study.nct_id}"
        )
    return StudyFolder(path.resolve(), study, criteria.with_folder(path.resolve()))
