"""Hostile and broken input to the command line: patient files, criteria and study files; and security.

Every bad input ends with one line ``trial-adapter: error: ...`` on stderr, exit code 1 (2 for wrong
usage), no traceback and no report file. Input that is valid FHIR but odd (unknown units, future
dates, huge but finite numbers, a 50 MB string, 100,000 entries) is screened: what cannot be judged is
``unknown``, never an error and never a crash.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import shutil
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from adapter.cli import build_parser, main
from adapter.fhir.client import NO_RETRY, FhirClient, FhirConnectionError
from adapter.fhir.search import escape
from adapter.service.forward import plan_forward
from adapter.service.sources import Source
from adapter.sources.server import ServerSource
from mappings import study as study_module
from mappings.criteria import CriteriaDefinitionError, load_criteria, parse_criteria
from mappings.study import StudyDefinitionError, load_study
from tests.support.clinical import CD7_LOCAL, candidate_resources, definition, obs, patient
from tests.support.hostile import (
    BAD,
    CD7,
    PATIENT,
    SECRETS,
    assert_one_line_error,
    bad_texts,
    texts_of,
    write_bundle,
    write_ndjson,
)

STUDY = Path(study_module.STUDIES_ROOT) / "NCT06849401"
AS_OF = "2026-11-23"
FIFTY_MB = 50 * 1024 * 1024


# --- helpers ------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def screen(capsys: pytest.CaptureFixture[str], source: Path, output: Path) -> tuple[int, str]:
    code, _, err = run_cli(
        capsys, "screen", "--source", str(source), "--as-of", AS_OF, "--output", str(output), "--quiet"
    )
    return code, err


def report(output: Path) -> dict[str, Any]:
    return json.loads(output.read_text(encoding="utf-8"))


def criterion(result: dict[str, Any], criterion_id: str, patient_ref: str = "Patient/p1") -> dict[str, Any]:
    found = next(p for p in result["patients"] if p["patient"] == patient_ref)
    return next(c for c in found["criteria"] if c["id"] == criterion_id)


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_broken_bundle_file_is_one_clear_error_and_no_report(case, tmp_path, capsys):
    output = tmp_path / "report.json"
    code, err = screen(capsys, write_bundle(tmp_path / "in.json", bad_texts(case)), output)
    assert_one_line_error(code, err, case.bundle_error)
    assert not output.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.json"]  # no temp file left


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_broken_ndjson_export_is_one_clear_error_naming_file_and_line(case, tmp_path, capsys):
    output = tmp_path / "report.json"
    folder = write_ndjson(tmp_path / "export", bad_texts(case))
    code, err = screen(capsys, folder, output)
    last = assert_one_line_error(code, err, case.ndjson_error or case.bundle_error)
    assert re.search(r"\.ndjson:\d+: ", last), last
    assert not output.exists()


def test_the_good_corpus_base_screens_in_both_forms(tmp_path, capsys):
    texts = texts_of(candidate_resources())
    for source in (write_bundle(tmp_path / "in.json", texts), write_ndjson(tmp_path / "export", texts)):
        output = tmp_path / f"{source.name}.report.json"
        code, err = screen(capsys, source, output)
        assert code == 0, err
        assert report(output)["patients"][0]["status"] == "candidate"


def test_a_file_that_is_not_a_bundle_is_one_clear_error(tmp_path, capsys):
    for content, fragment in [
        (json.dumps(patient()), "expected a Bundle, got Patient"),
        ("[1, 2]", "not a FHIR resource (no resourceType)"),
        ('{"resourceType": "Bundle", "entry": {"resource": {}}}', "Bundle.entry must be a list"),
        ("", "invalid JSON"),
    ]:
        path = tmp_path / "in.json"
        path.write_text(content)
        code, err = screen(capsys, path, tmp_path / "out.json")
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "out.json").exists()


def test_duplicate_full_urls_in_a_bundle_are_an_error(tmp_path, capsys):
    texts = texts_of(candidate_resources())
    full_urls = [f"urn:uuid:00000000-0000-4000-8000-{i:012d}" for i in range(len(texts))]
    full_urls[3] = full_urls[2]
    code, err = screen(capsys, write_bundle(tmp_path / "in.json", texts, full_urls), tmp_path / "out.json")
    assert_one_line_error(
        code, err, "entry 3: duplicate fullUrl urn:uuid:00000000-0000-4000-8000-000000000002"
    )


def test_a_missing_source_or_an_export_without_ndjson_is_one_clear_error(tmp_path, capsys):
    code, err = screen(capsys, tmp_path / "nowhere.json", tmp_path / "out.json")
    assert_one_line_error(code, err, "no such file or directory")
    (tmp_path / "empty").mkdir()
    code, err = screen(capsys, tmp_path / "empty", tmp_path / "out.json")
    assert_one_line_error(code, err, "no .ndjson files")


# --- odd but valid: screened, what cannot be judged is unknown -----------------------------------


def _both_forms(tmp_path: Path, resources: list[dict[str, Any]]) -> Iterator[Path]:
    texts = texts_of(resources)
    yield write_bundle(tmp_path / "in.json", texts)
    yield write_ndjson(tmp_path / "export", texts)


def _screened(capsys, tmp_path: Path, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for source in _both_forms(tmp_path, resources):
        output = tmp_path / f"{source.name}.report.json"
        code, err = screen(capsys, source, output)
        assert code == 0, err
        results.append(report(output))
    # An export also counts the patients outside the ALL population (a Bundle lists everyone).
    assert results[1]["summary"].pop("outsidePopulation") == 0
    assert results[0] == results[1]  # a Bundle and an export of the same data screen the same
    return results


def _with_cd7(**changes: Any) -> list[dict[str, Any]]:
    resources = candidate_resources()
    resources[CD7] = {**resources[CD7], **changes}
    return resources


@pytest.mark.parametrize(
    ("unit", "reason"),
    [("furlongs", "unit 'furlongs' not convertible to '%'"), ("kg", "unit 'kg' not convertible to '%'")],
)
def test_an_unknown_or_unconvertible_unit_is_unknown_not_an_error(unit, reason, tmp_path, capsys):
    quantity = {"value": 93.5, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    for result in _screened(capsys, tmp_path, _with_cd7(valueQuantity=quantity)):
        found = criterion(result, "inclusion-5")
        assert found["result"] == "unknown" and reason in found["reason"]


def test_future_dates_are_not_errors_and_decide_nothing(tmp_path, capsys):
    resources = candidate_resources()
    resources[PATIENT] = {**resources[PATIENT], "birthDate": "2099-01-01"}
    resources[CD7] = {**resources[CD7], "effectiveDateTime": "2027-01-01"}
    for result in _screened(capsys, tmp_path, resources):
        assert criterion(result, "inclusion-1")["result"] == "unknown"
        assert "birth date after" in criterion(result, "inclusion-1")["reason"]
        assert criterion(result, "inclusion-5")["result"] == "unknown"  # a future result is ignored


@pytest.mark.parametrize("value", [1e308, -1e308, 5e-324])
def test_huge_but_finite_numbers_are_screened_without_a_crash(value, tmp_path, capsys):
    quantity = {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    resources = _with_cd7(valueQuantity=quantity)
    resources.append(obs(("http://loinc.org", "1975-2"), value, "mg/dL", ago=2, uln=1.2))  # x 17.1 -> inf
    for result in _screened(capsys, tmp_path, resources):
        assert criterion(result, "inclusion-5")["result"] in ("met", "not-met")
        assert {c["result"] for c in result["patients"][0]["criteria"]} <= {"met", "not-met", "unknown"}


def test_a_reference_to_a_patient_not_in_the_file_is_ignored(tmp_path, capsys):
    for result in _screened(capsys, tmp_path, _with_cd7(subject={"reference": "Patient/nobody"})):
        assert [p["patient"] for p in result["patients"]] == ["Patient/p1"]
        assert criterion(result, "inclusion-5")["result"] == "unknown"  # its CD7 result went nowhere


def test_a_50_mb_string_is_screened(tmp_path, capsys):
    for result in _screened(capsys, tmp_path, _with_cd7(note=[{"text": "x" * FIFTY_MB}])):
        assert result["patients"][0]["status"] == "candidate"


def _many_entries(count: int) -> list[dict[str, Any]]:
    resources = candidate_resources()
    template = obs(CD7_LOCAL, 90, "%", ago=400)  # old: outside every window
    return resources + [{**template, "id": f"many-{i}"} for i in range(count - len(resources))]


def test_a_bundle_and_an_export_of_100000_entries_are_screened(tmp_path, capsys):
    result = _screened(capsys, tmp_path, _many_entries(100_000))[0]
    assert result["summary"]["screened"] == 1 and result["patients"][0]["status"] == "candidate"


# --- criteria and study files ---------------------------------------------------------------------


GOOD_CRITERIA = (STUDY / "criteria.yaml").read_text(encoding="utf-8")
GOOD_STUDY = (STUDY / "study.json").read_text(encoding="utf-8")


def _criteria_data() -> dict[str, Any]:
    return yaml.safe_load(GOOD_CRITERIA)


def _edited(edit: Callable[[dict[str, Any]], None]) -> str:
    data = _criteria_data()
    edit(data)
    return yaml.safe_dump(data, allow_unicode=True)


def _first_concept(data: dict[str, Any]) -> str:
    return next(iter(data["concepts"]))


def _deep_rule() -> str:
    data = _criteria_data()
    data["criteria"][0]["rule"] = "DEEP"
    return yaml.safe_dump(data).replace("DEEP", "{all_of: [" * 1000 + "{kind: alive}" + "]}" * 1000)


BAD_CRITERIA = [
    ("malformed-yaml", "study: [unclosed\n", "not valid YAML"),
    ("tab-indent", "study: x\n\tversion: 1\n", "not valid YAML"),
    # Cut just before a criterion's rule: valid YAML, a criterion without its rule.
    (
        "truncated",
        GOOD_CRITERIA[: GOOD_CRITERIA.index("\n    rule:", len(GOOD_CRITERIA) // 2)],
        "Field required",
    ),
    ("non-utf8", b"\xff\xfe" + GOOD_CRITERIA.encode(), "cannot read criteria file"),
    ("empty", "", "expected a mapping at the top level"),
    ("a-list", "- 1\n- 2\n", "expected a mapping at the top level"),
    ("version-text", _edited(lambda d: d.update(version="one")), "version: Input should be a valid integer"),
    ("criteria-mapping", _edited(lambda d: d.update(criteria={"a": 1})), "criteria: Input should be a valid"),
    ("criteria-missing", _edited(lambda d: d.pop("criteria")), "criteria: Field required"),
    ("criteria-empty", _edited(lambda d: d.update(criteria=[])), "criteria: Tuple should have at least 1"),
    (
        "numbering-gap",
        _edited(lambda d: d["criteria"].pop(1)),
        "inclusion criteria must be numbered inclusion-1..inclusion-12 in order",
    ),
    (
        "numbering-duplicate",
        _edited(lambda d: d["criteria"][1].update(id="inclusion-1")),
        "criterion ids must be unique",
    ),
    (
        "unknown-concept-set",
        _edited(lambda d: d["criteria"][2].update(rule={"kind": "condition", "concepts": ["no_such_set"]})),
        "inclusion-3: unknown concept set 'no_such_set'",
    ),
    ("concepts-a-list", _edited(lambda d: d.update(concepts=[1, 2])), "concepts: expected a mapping"),
    (
        "concept-a-string",
        _edited(lambda d: d["concepts"].update({_first_concept(d): "text"})),
        "expected a mapping (display, codes",
    ),
    (
        "codes-a-string",
        _edited(lambda d: d["concepts"][_first_concept(d)].update(codes="abc")),
        "codes: expected a list",
    ),
    (
        "range-too-short",
        _edited(lambda d: d["concepts"][_first_concept(d)].update(ranges=[["a"]])),
        "ranges: expected a list of 3-item lists",
    ),
    ("systems-a-list", _edited(lambda d: d.update(systems=["a"])), "systems: expected a mapping"),
    (
        "any-of-not-a-list",
        _edited(lambda d: d["criteria"][0].update(rule={"any_of": 5})),
        "criteria.0.rule",
    ),
    ("threshold-nan", GOOD_CRITERIA.replace("value: 1.6", "value: .nan"), "Input should be a finite number"),
    ("threshold-inf", GOOD_CRITERIA.replace("value: 1.6", "value: .inf"), "Input should be a finite number"),
    ("threshold-text", GOOD_CRITERIA.replace("value: 1.6", "value: high"), "should be a valid number"),
    ("nesting-1000", "a: " + "[" * 1000 + "]" * 1000 + "\n", "Field required"),
    ("rule-nesting-1000", _deep_rule(), "rules nested too deeply"),
    ("string-50mb", "study: '" + "x" * FIFTY_MB + "'\n", "Field required"),
]


@pytest.mark.parametrize(
    ("content", "fragment"), [c[1:] for c in BAD_CRITERIA], ids=[c[0] for c in BAD_CRITERIA]
)
def test_a_broken_criteria_file_is_one_line_criteria_definition_error(content, fragment, tmp_path):
    path = tmp_path / "criteria.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CriteriaDefinitionError) as raised:
        load_criteria(path)
    message = str(raised.value)
    assert fragment in message and "\n" not in message and message.startswith(str(path)), message[:500]


@pytest.mark.parametrize("data", [None, 42, "text", [], {"criteria": "x"}, {"concepts": 5, "criteria": []}])
def test_parse_criteria_rejects_any_shape_with_one_line(data):
    with pytest.raises(CriteriaDefinitionError) as raised:
        parse_criteria(data, "test")
    assert "\n" not in str(raised.value)


def test_criteria_with_100000_codes_load(tmp_path):
    data = _criteria_data()
    name = _first_concept(data)
    data["concepts"][name]["codes"] += [["http://example.org/cs", f"c{i}"] for i in range(100_000)]
    path = tmp_path / "criteria.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    assert len(load_criteria(path).concepts[name].codes) > 100_000


def _study(edit: Callable[[str], str]) -> str:
    return edit(GOOD_STUDY)


BAD_STUDIES = [
    ("malformed-json", "{", "not valid JSON"),
    ("truncated", GOOD_STUDY[: len(GOOD_STUDY) // 2], "not valid JSON"),
    ("non-utf8", b"\xff" + GOOD_STUDY.encode(), "cannot read study file"),
    ("a-list", "[]", "expected a JSON object at the top level"),
    ("missing-protocol", "{}", "protocolSection: Field required"),
    ("count-text", _study(lambda s: s.replace('"count": 9', '"count": "nine"')), "enrollmentInfo.count"),
    ("count-nan", _study(lambda s: s.replace('"count": 9', '"count": NaN')), "NaN is not a JSON number"),
    ("count-1e400", _study(lambda s: s.replace('"count": 9', '"count": 1e400')), "finite number"),
    ("count-5000-digits", _study(lambda s: s.replace('"count": 9', '"count": 1' + "0" * 5000)), "digits"),
    ("dose-infinity", _study(lambda s: s.replace('"value": 12,', '"value": Infinity,')), "Infinity"),
    ("bad-nct", _study(lambda s: s.replace('"nctId": "NCT06849401"', '"nctId": "NCT0684"')), "nctId"),
    ("nesting-100000", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("content", "fragment"), [c[1:] for c in BAD_STUDIES], ids=[c[0] for c in BAD_STUDIES]
)
def test_a_broken_study_file_is_one_line_study_definition_error(content, fragment, tmp_path):
    path = tmp_path / "study.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StudyDefinitionError) as raised:
        load_study(path)
    message = str(raised.value)
    assert fragment in message and "\n" not in message, message[:500]


def test_a_study_with_a_50_mb_string_and_100000_locations_loads(tmp_path):
    data = json.loads(GOOD_STUDY)
    data["junk"] = "x" * FIFTY_MB
    data["protocolSection"]["contactsLocationsModule"]["locations"] = [{"facility": "f"}] * 100_000
    path = tmp_path / "study.json"
    path.write_text(json.dumps(data))
    assert load_study(path).nct_id == "NCT06849401"


@pytest.fixture
def broken_studies(tmp_path, monkeypatch) -> Path:
    """A studies root with the real study and copies whose criteria or study file is broken."""
    root = tmp_path / "studies"
    for name, broken, content in [
        ("NCT00000001", "criteria.yaml", "study: [unclosed\n"),
        ("NCT00000002", "criteria.yaml", _edited(lambda d: d["criteria"].pop(1))),
        ("NCT00000003", "study.json", '{"protocolSection": NaN}'),
        ("NCT00000004", "study.json", "[" * 100_000),
    ]:
        shutil.copytree(STUDY, root / name)
        (root / name / broken).write_text(content)
    monkeypatch.setattr(study_module, "STUDIES_ROOT", root)
    return root


@pytest.mark.parametrize(
    ("study", "command", "fragment"),
    [
        ("NCT00000001", "map", "not valid YAML"),
        ("NCT00000002", "map", "must be numbered"),
        ("NCT00000003", "map", "NaN is not a JSON number"),
        ("NCT00000004", "map", "nested too deeply"),
        ("NCT00000001", "screen", "not valid YAML"),
        ("NCT00000002", "screen", "must be numbered"),
    ],
)
def test_the_cli_with_a_broken_study_folder_is_one_line_and_writes_nothing(
    broken_studies, study, command, fragment, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = {
        "map": ["--study", study, "map", "--out", str(out)],
        "screen": ["--study", study, "screen", "--sample", "--as-of", AS_OF, "--output", str(out / "r.json")],
    }[command]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, fragment)
    assert not out.exists()


# --- security -----------------------------------------------------------------------------------


def _secret_values() -> list[str]:
    values = []
    for value in SECRETS.values():
        values += [part.split(":")[0] for part in value.split(",")]
    return values


@pytest.fixture
def secrets_in_env(monkeypatch) -> list[str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return _secret_values()


def _commands() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", [None, *_commands()])
def test_help_never_shows_a_secret_from_the_environment(command, secrets_in_env, capsys):
    code, out, err = run_cli(capsys, *([command] if command else []), "--help")
    assert code == 0 and "usage:" in out
    for secret in secrets_in_env:
        assert secret not in out + err


def test_serve_refuses_to_start_without_api_keys(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SERVICE_API_KEYS", raising=False)
    code, _, err = run_cli(
        capsys, "serve", "--fhir-url", "http://127.0.0.1:9/fhir", "--inbox", str(tmp_path / "inbox.sqlite")
    )
    assert_one_line_error(code, err, "no API keys configured", expected_code=2)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "inbox.sqlite").exists()


def test_a_rejected_api_key_is_never_echoed(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SERVICE_API_KEYS", "short-secret:push")
    code, _, err = run_cli(capsys, "serve", "--fhir-url", "http://127.0.0.1:9/fhir")
    assert_one_line_error(code, err, "at least 16 characters")
    assert "short-secret" not in err
    keys = tmp_path / "keys"
    keys.write_text("file-secret-0123456789 superuser\n")
    monkeypatch.delenv("SERVICE_API_KEYS")
    code, _, err = run_cli(
        capsys, "serve", "--fhir-url", "http://127.0.0.1:9/fhir", "--api-keys-file", str(keys)
    )
    assert_one_line_error(code, err, "role of push or admin")
    assert "file-secret" not in err


def test_connection_errors_never_show_the_token(secrets_in_env, capsys, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("file-token-0099887766554433\n")
    argv = [
        "publish",
        "--fhir-url",
        "http://127.0.0.1:9/fhir",
        "--timeout",
        "1",
        "--token-file",
        str(token_file),
    ]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "cannot reach 127.0.0.1:9")
    for secret in [*secrets_in_env, "file-token-0099887766554433"]:
        assert secret not in out + err


class _EchoingRefusal(BaseHTTPRequestHandler):
    """A server that refuses with 401 and echoes the credentials it got in its OperationOutcome."""

    def do_GET(self) -> None:
        text = f"invalid credentials: {self.headers.get('Authorization')}"
        body = json.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "diagnostics": text}],
            }
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingRefusal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


def test_a_server_echoing_the_token_does_not_put_it_on_stderr(echoing_server, secrets_in_env, capsys):
    code, out, err = run_cli(capsys, "screen", "--fhir-url", echoing_server, "--as-of", AS_OF, "--quiet")
    assert_one_line_error(code, err, "401")
    assert SECRETS["FHIR_TOKEN"] not in out + err


# TLS: a local server with a self-signed certificate.


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _EmptySearches(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "total": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path) -> Iterator[str]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptySearches)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


async def test_outbound_tls_verification_is_on_by_default(tls_server):
    async with FhirClient(tls_server, retry=NO_RETRY) as client:
        assert client._http._transport._pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
        with pytest.raises(
            FhirConnectionError, match=r"TLS certificate verification failed for 127\.0\.0\.1:\d+"
        ):
            await client.get_json("metadata")
    async with FhirClient(tls_server, retry=NO_RETRY, verify=False) as client:
        assert client._http._transport._pool._ssl_context.verify_mode == ssl.CERT_NONE
        assert (await client.get_json("metadata"))["resourceType"] == "Bundle"


def test_the_cli_refuses_a_self_signed_server_unless_insecure(tls_server, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["screen", "--fhir-url", tls_server, "--as-of", AS_OF, "--output", str(out), "--quiet"]
    code, _, err = run_cli(capsys, *argv, "--timeout", "5")
    assert_one_line_error(code, err, "TLS certificate verification failed for 127.0.0.1")
    assert not out.exists()
    code, _, err = run_cli(capsys, *argv, "--insecure")
    assert code == 0, err
    assert report(out)["summary"]["screened"] == 0


async def test_a_certificate_failure_is_named_and_not_retried(tls_server):
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    async with FhirClient(tls_server, sleep=no_sleep) as client:
        with pytest.raises(FhirConnectionError) as raised:
            await client.get_json("metadata")
    assert "certificate" in str(raised.value).lower()
    assert waits == []


# Search parameter values: data never changes a query.

HOSTILE_IDS = ["a,b", "c|d", "e$f", "g\\h", "i\\,j", "k,l|m$n\\o"]


def _split_escaped(value: str) -> list[str]:
    """A FHIR search value split on unescaped commas, each part unescaped (R4 3.1.1.5.7)."""
    parts, current, chars = [], "", iter(value)
    for char in chars:
        if char == "\\":
            current += next(chars, "")
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _params(search: str) -> list[tuple[str, str]]:
    """What a server reads from one batch entry's URL (built by search.query, sent as it is)."""
    return parse_qsl(search.split("?", 1)[1], keep_blank_values=True)


def test_batch_searches_keep_each_hostile_patient_id_one_value():
    source = ServerSource(None, definition())  # type: ignore[arg-type]  # only builds strings
    requests = source._batch_requests(HOSTILE_IDS)
    assert requests[0].startswith("Patient?_id=a%5C,b,c%5C|d,e%5C$f,g%5C%5Ch,")  # FHIR escapes, URL-encoded
    for search in requests:
        params = _params(search)
        name, value = params[0]
        expected = HOSTILE_IDS if name == "_id" else [f"Patient/{pid}" for pid in HOSTILE_IDS]
        assert _split_escaped(value) == expected, search
        assert [n for n, _ in params].count(name) == 1
    assert escape("a,b|c$d\\e") == "a\\,b\\|c\\$d\\\\e"


def test_an_ampersand_in_a_patient_id_stays_one_value():
    source = ServerSource(None, definition())  # type: ignore[arg-type]
    params = _params(source._batch_requests(["x&_id=y"])[0])
    assert _split_escaped(dict(params)["_id"]) == ["x&_id=y"]


def test_forwarded_conditional_updates_keep_a_hostile_identifier_one_value():
    mrn = "12,34|56$78\\90&x=1"
    resource = {**patient(), "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}]}
    plan = plan_forward(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]},
        Source("hospital", frozenset({"urn:oid:1.2.3"})),
        "item",
        "2026-11-23T00:00:00Z",
    )
    url = plan.chunks[0].bundle["entry"][0]["request"]["url"]
    params = parse_qsl(url.split("?", 1)[1])
    assert len(params) == 1 and params[0][0] == "identifier"
    system_code = params[0][1]
    assert system_code == "urn:oid:1.2.3|" + escape(mrn)
