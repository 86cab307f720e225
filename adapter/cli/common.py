"""What every command shares: its one-line errors, output, FHIR client, and the study it works on."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapter.errors import EXIT_FAILED, AdapterError, UsageError
from adapter.fhir.auth import bearer_from
from adapter.settings import current as environment
from mappings.criteria import CriteriaDefinition
from mappings.study_folder import StudyChoiceError, StudyFolder, load_study_folder
from mappings.terminology.conceptmap import load_concept_maps

if TYPE_CHECKING:
    from adapter.fhir.client import FhirClient

PROG = "trial-adapter"


class CliError(AdapterError):
    """A problem the CLI itself finds (an option, a file it writes); ``code``: the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message, code)

    @property
    def code(self) -> int:
        return self.exit_code


def as_of_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def sample_bundle_path() -> Path:
    return Path(str(resources.files("adapter.samples").joinpath("nct06849401-sample-bundle.json")))


def write_output(text: str, output: Path | None) -> None:
    """Write to stdout, or atomically to a file (a crash never leaves half a report)."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.resolve()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None


# --- the study ----------------------------------------------------------------------------------


def study_refs(args: argparse.Namespace) -> list[str]:
    """The ``--study`` values: the subcommand's when given, else the global option's (may be empty)."""
    refs = getattr(args, "study", None)
    if isinstance(refs, str):
        return [refs]
    return list(refs or ())


def study_folders(refs: Sequence[str | Path] | str | None) -> list[StudyFolder]:
    """Each named study loaded (ID under the installed studies, or a PATH); none named: the only one
    installed. The same study twice is a usage error (it would be screened and flagged twice)."""
    if refs is None or isinstance(refs, str | Path):
        refs = [refs] if refs else []
    root = environment().studies_root
    try:
        folders = [load_study_folder(ref, root) for ref in refs] or [load_study_folder(None, root)]
    except StudyChoiceError as exc:
        raise UsageError(str(exc)) from None
    ids = [f.nct_id for f in folders]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UsageError(f"the same study given twice: {', '.join(twice)}")
    return folders


def one_study(args: argparse.Namespace) -> StudyFolder:
    refs = study_refs(args)
    if len(refs) > 1:
        raise UsageError(f"{args.command} works on one study; --study was given {len(refs)} times")
    return study_folders(refs)[0]


def with_maps(definition: CriteriaDefinition, concept_maps: list[Path] | None) -> CriteriaDefinition:
    """The criteria with a site's ConceptMaps (``--concept-map``) attached."""
    return definition.with_concept_maps(load_concept_maps(concept_maps)) if concept_maps else definition


def definitions(args: argparse.Namespace) -> list[CriteriaDefinition]:
    """Every study the command serves (worker, serve), ConceptMaps applied."""
    maps = getattr(args, "concept_map", None)
    return [with_maps(f.criteria, maps) for f in study_folders(study_refs(args))]


def definition(args: argparse.Namespace) -> CriteriaDefinition:
    """The one study a command works on, ConceptMaps applied."""
    return with_maps(one_study(args).criteria, getattr(args, "concept_map", None))


def _criteria(
    study: Sequence[str] | str | None, concept_maps: list[Path] | None = None
) -> CriteriaDefinition:
    """One study's criteria (the first named), for the commands and tools that take a raw value."""
    return with_maps(study_folders(study)[0].criteria, concept_maps)


# --- a FHIR server ------------------------------------------------------------------------------


def auth_of(args: argparse.Namespace) -> Any:
    """SMART Backend Services when asked for (settings from SMART_* variables), else a bearer token."""
    if getattr(args, "smart", False):
        from adapter.fhir.smart_env import smart_auth_from_env

        return smart_auth_from_env(fhir_base_url=args.fhir_url)
    return bearer_from(args.token_env, args.token_file)


def client_of(args: argparse.Namespace) -> FhirClient:
    from adapter.fhir.client import FhirClient  # httpx, fhirpy, aiohttp: not for a run over files

    return FhirClient(
        args.fhir_url,
        auth=auth_of(args),
        timeout=args.timeout,
        url_aliases=args.url_alias or [],
        verify=not args.insecure,
    )


def progress_of(enabled: bool) -> Callable[[int, int], None] | None:
    if not enabled:
        return None

    def show(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            end = "\n" if done == total else ""
            sys.stderr.write(f"\rscreened {done}/{total} patients{end}")
            sys.stderr.flush()

    return show
