"""One root error class with exit codes, and one settings object for the environment."""

from __future__ import annotations

import pytest

from adapter.cli import CliError, main
from adapter.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    AdapterError,
    ConfigError,
    DefinitionError,
    InputError,
    ServerError,
    UsageError,
    as_adapter_error,
)
from adapter.fhir.auth import CredentialError
from adapter.fhir.client import FhirError, FhirHttpError
from adapter.service.checks import InputError as PushedInputError
from adapter.service.sources import SourceConfigError
from adapter.settings import Settings
from adapter.sources.files import SourceError
from mappings.criteria import CriteriaDefinitionError
from mappings.study import StudyDefinitionError


def test_existing_errors_are_adapter_errors_with_their_exit_codes() -> None:
    assert issubclass(SourceError, InputError) and issubclass(SourceError, ValueError)
    assert issubclass(PushedInputError, InputError)
    assert issubclass(FhirError, ServerError)
    assert issubclass(CredentialError, ConfigError) and issubclass(SourceConfigError, ConfigError)
    for kind in (DefinitionError, InputError, ServerError, ConfigError):
        assert kind("x").exit_code == EXIT_FAILED
    assert UsageError("x").exit_code == EXIT_USAGE
    assert CliError("x").code == EXIT_FAILED and CliError("x", EXIT_USAGE).exit_code == EXIT_USAGE
    http = FhirHttpError(400, "POST", "http://h/fhir?name=secret")
    assert str(http) == "HTTP 400 from POST /fhir" and http.exit_code == EXIT_FAILED


def test_definition_errors_from_mappings_are_wrapped() -> None:
    for exc in (CriteriaDefinitionError("bad criteria"), StudyDefinitionError("bad study")):
        wrapped = as_adapter_error(exc)
        assert isinstance(wrapped, DefinitionError) and str(wrapped) == str(exc)
    assert as_adapter_error(KeyError("x")) is None
    error = AdapterError("mine")
    assert as_adapter_error(error) is error


def test_main_prints_one_line_and_exits_with_the_class_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["screen", "--source", "/no/such/file.json"])
    assert exited.value.code == EXIT_FAILED
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "trial-adapter: error: /no/such/file.json: no such file or directory"
    )
    with pytest.raises(SystemExit) as exited:
        main(["screen", "--sample", "--workers", "0"])
    assert exited.value.code == EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "trial-adapter: error: --workers must be at least 1"
    )


def test_settings_read_every_variable_the_adapter_uses() -> None:
    env = {
        "SERVICE_API_KEYS": "k1:push, ,k2:admin",
        "SERVICE_AUTHORITATIVE_SYSTEMS": "urn:a",
        "MLLP_FACILITIES": "LAB1:lab",
        "WORKER_NOTIFY_TOKEN": "",
        "TRIAL_ADAPTER_LOG_FILE": "/tmp/x.jsonl",
        "TRIAL_ADAPTER_CRASH_AT": "p",
        "SMART_CLIENT_ID": "c",
        "HOME": "/root",
    }
    settings = Settings.from_env(env)
    assert settings.service_api_keys == ("k1:push", "k2:admin")
    assert settings.service_authoritative_systems == "urn:a"
    assert settings.mllp_facilities == ("LAB1:lab",)
    assert settings.worker_notify_token is None  # empty: a fresh secret per run
    assert (settings.log_file, settings.crash_at) == ("/tmp/x.jsonl", "p")
    assert dict(settings.smart) == {"SMART_CLIENT_ID": "c"}
    assert "k1" not in repr(settings)  # secrets never shown
    assert Settings.from_env({}) == Settings()
