"""The ``trial-adapter`` command line: ``main`` builds the parser from each command group's module
(``study_commands``: map, publish, load-sample; ``screen``; ``worker``; ``serve``; ``report``), options shared in ``options``, what commands share in ``common``."""

from .common import (
    PROG,
    CliError,
    _criteria,
    definition,
    definitions,
    sample_bundle_path,
    study_folders,
    write_output,
)
from .main import DESCRIPTION, build_parser, main
from .study_commands import SAMPLE_MRN_SYSTEM

__all__ = [
    "DESCRIPTION",
    "PROG",
    "SAMPLE_MRN_SYSTEM",
    "CliError",
    "_criteria",
    "build_parser",
    "definition",
    "definitions",
    "main",
    "sample_bundle_path",
    "study_folders",
    "write_output",
]
