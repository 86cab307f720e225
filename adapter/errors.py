"""The adapter's errors: one root, a subclass per kind of problem, each with the CLI's exit code.

The CLI prints any of them as one line (``trial-adapter: error: <message>``) and exits with its code;
the service and the worker log them by type. The study definition's errors are raised below the adapter
(``mappings`` imports nothing from it), so they are wrapped here (``as_adapter_error``), not subclassed.

Exit codes: 0 success; 1 the command failed (a definition, the input, a source, the FHIR server);
2 wrong usage (an option, a study name, a combination that cannot work); 3 `screen` wrote its report but some patients
could not be screened (status ``error``); 130 interrupted.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SCREEN_ERRORS = 3  # `screen`: the report is written, but some patients could not be screened
EXIT_INTERRUPTED = 130


class AdapterError(Exception):
    """A problem the adapter explains in one line; ``exit_code`` is the CLI's (overridable per raise)."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code  # one raise may say more than its class


class DefinitionError(AdapterError):
    """The study's definition (study.json, criteria.yaml, terminology, ConceptMaps) is wrong."""


class InputError(AdapterError):
    """Patient data given to the adapter cannot be read or is not valid FHIR."""


class ServerError(AdapterError):
    """The FHIR server cannot be reached, refuses, or answers something unusable."""


class ConfigError(AdapterError):
    """A setting (credentials, API keys, sources) is missing or wrong."""


class UsageError(AdapterError):
    """The command line asks for something that cannot work."""

    exit_code: int = EXIT_USAGE


def as_adapter_error(exc: BaseException) -> AdapterError | None:
    """``exc`` as an AdapterError: itself, a wrapped definition error, or None (not one of ours)."""
    from mappings.criteria import CriteriaDefinitionError
    from mappings.study import StudyDefinitionError
    from mappings.terminology import TerminologyError

    if isinstance(exc, AdapterError):
        return exc
    if isinstance(exc, (CriteriaDefinitionError, StudyDefinitionError, TerminologyError)):
        return DefinitionError(str(exc))
    return None
