"""The docker/ files can't be built here (no Docker engine), so check what can be checked."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapter.cli import build_parser

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def test_build_contexts_and_dockerfiles_exist():
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_adapter_commands_in_compose_are_valid_cli_invocations():
    parser = build_parser()
    adapter_services = [s for s in compose()["services"].values() if s.get("image") == "trial-adapter:local"]
    assert adapter_services
    for service in adapter_services:
        parser.parse_args(service["command"])  # raises SystemExit on an unknown option


def test_dependencies_name_existing_services_and_hapi_is_healthchecked():
    services = compose()["services"]
    for service in services.values():
        for dependency in service.get("depends_on", {}):
            assert dependency in services
    assert "HEALTHCHECK" in (DOCKER / "hapi" / "Dockerfile").read_text(encoding="utf-8")


def test_adapter_image_installs_from_the_lock_and_runs_unprivileged():
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert "-c constraints.txt" in text
    assert "USER adapter" in text
    assert 'ENTRYPOINT ["trial-adapter"]' in text
