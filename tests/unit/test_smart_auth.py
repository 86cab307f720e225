"""SMART Backend Services auth: real keys, a respx token endpoint, and the FhirClient using it."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from adapter.fhir.auth import CredentialError
from adapter.fhir.client import FhirClient, FhirError, RetryPolicy
from adapter.fhir.smart import ASSERTION_TYPE, SmartBackendAuth
from adapter.fhir.smart_env import smart_auth_from_env
from adapter.fhir.smart_keys import SmartAuthError, SmartConfigError

FHIR_BASE = "https://fhir.example.test/r4"
TOKEN_URL = "https://auth.example.test/oauth2/token"
DISCOVERY_URL = f"{FHIR_BASE}/.well-known/smart-configuration"
CLIENT_ID = "trial-adapter-backend"
KID = "key-2026-01"
TOKEN = "at-5f1d0c6a2b7e4f3c9d8e"


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_body(pem_bytes: bytes) -> list[str]:
    """The base64 lines of a PEM key: none of them may leak anywhere."""
    return [line for line in pem_bytes.decode().splitlines() if line and not line.startswith("-----")]


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self):
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def token_reply(token: str = TOKEN, expires_in: int | None = 300, token_type: str = "bearer", **extra):
    body = {"access_token": token, "token_type": token_type, "scope": "system/*.read", **extra}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return httpx.Response(200, json=body)


def form_of(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def decode(assertion: str, public_key, algorithm: str) -> dict:
    return jwt.decode(
        assertion,
        public_key,
        algorithms=[algorithm],
        audience=TOKEN_URL,
        issuer=CLIENT_ID,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )


def make_auth(key, sleeps=None, **kwargs) -> SmartBackendAuth:
    kwargs.setdefault("key_id", KID)
    kwargs.setdefault("retry", RetryPolicy(attempts=3, base=0.5, max_wait=30, total=600))
    return SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(key), sleep=sleeps or Sleeps(), **kwargs)


# --- the assertion and the token request -------------------------------------------------------------


@respx.mock
async def test_token_request_form_and_rs384_assertion_verified_with_the_public_key(rsa_key):
    route = respx.post(TOKEN_URL).mock(return_value=token_reply())
    async with make_auth(rsa_key, scope="system/Patient.rs system/Observation.rs") as auth:
        assert auth.algorithm == "RS384"  # detected from the key
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
        auth.invalidate()
        await auth.headers()

    assert route.call_count == 2
    request = route.calls[0].request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = form_of(request)
    assert set(form) == {"grant_type", "scope", "client_assertion_type", "client_assertion"}
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Patient.rs system/Observation.rs"
    assert (
        form["client_assertion_type"]
        == ASSERTION_TYPE
        == ("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    )

    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": "RS384", "typ": "JWT", "kid": KID}
    claims = decode(assertion, rsa_key.public_key(), "RS384")
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["jti"]

    second = decode(form_of(route.calls[1].request)["client_assertion"], rsa_key.public_key(), "RS384")
    assert second["jti"] != claims["jti"]


@respx.mock
async def test_es384_with_an_ec_p384_key(ec_key):
    route = respx.post(TOKEN_URL).mock(return_value=token_reply())
    async with make_auth(ec_key) as auth:
        assert auth.algorithm == "ES384"
        await auth.headers()
    assertion = form_of(route.calls.last.request)["client_assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == "ES384"
    claims = decode(assertion, ec_key.public_key(), "ES384")
    assert claims["sub"] == CLIENT_ID
    with pytest.raises(jwt.InvalidSignatureError):  # really signed by this key, not just any key
        decode(assertion, ec.generate_private_key(ec.SECP384R1()).public_key(), "ES384")


async def test_explicit_matching_algorithm_and_no_kid(rsa_key):
    auth = make_auth(rsa_key, algorithm="RS384", key_id=None)
    assertion = auth.client_assertion()
    assert jwt.get_unverified_header(assertion) == {"alg": "RS384", "typ": "JWT"}
    await auth.aclose()


async def test_lifetime_is_capped_at_five_minutes(ec_key):
    auth = make_auth(ec_key, lifetime=3600)
    claims = decode(auth.client_assertion(), ec_key.public_key(), "ES384")
    assert claims["exp"] - claims["iat"] == 300
    short = make_auth(ec_key, lifetime=120)
    claims = decode(short.client_assertion(), ec_key.public_key(), "ES384")
    assert claims["exp"] - claims["iat"] == 120
    await auth.aclose()
    await short.aclose()


def _encrypted_rsa_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )


@pytest.mark.parametrize(
    ("make_pem", "algorithm", "expected"),
    [
        (lambda k: pem(k["rsa"]), "ES384", "an RSA key signs with RS384, not ES384"),
        (lambda k: pem(k["ec"]), "RS384", "an EC P-384 key signs with ES384, not RS384"),
        (lambda k: pem(k["rsa"]), "HS256", "unsupported signing algorithm 'HS256'"),
        (lambda k: pem(k["rsa"]), "RS256", "unsupported signing algorithm 'RS256'"),
        (
            lambda k: pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            None,
            "1024-bit RSA key; at least 2048 bits",
        ),
        (
            lambda k: pem(ec.generate_private_key(ec.SECP256R1())),
            None,
            "EC key on secp256r1; ES384 needs P-384",
        ),
        (lambda k: pem(ed25519.Ed25519PrivateKey.generate()), None, "unsupported SMART private key type"),
        (
            lambda k: b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
            None,
            "not a readable",
        ),
        (lambda k: _encrypted_rsa_pem(k["rsa"]), None, "is encrypted"),
    ],
    ids=[
        "rsa-as-es384",
        "ec-as-rs384",
        "hs256",
        "rs256",
        "rsa-1024",
        "ec-p256",
        "ed25519",
        "garbage",
        "encrypted",
    ],
)
def test_unsuitable_keys_and_algorithms_are_refused_clearly(rsa_key, ec_key, make_pem, algorithm, expected):
    key_pem = make_pem({"rsa": rsa_key, "ec": ec_key})
    with pytest.raises(SmartConfigError) as caught:
        SmartBackendAuth(TOKEN_URL, CLIENT_ID, key_pem, key_id=KID, algorithm=algorithm)
    message = str(caught.value)
    assert expected in message
    assert isinstance(caught.value, FhirError) and isinstance(caught.value, CredentialError)
    for line in key_body(key_pem):
        assert line not in message and line not in repr(caught.value)
    # no chained parser exception to print either
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


# --- caching and refresh -----------------------------------------------------------------------------


@respx.mock
async def test_token_is_cached(rsa_key):
    route = respx.post(TOKEN_URL).mock(return_value=token_reply())
    async with make_auth(rsa_key) as auth:
        first = await auth.headers()
        second = await auth.headers()
    assert first == second == {"Authorization": f"Bearer {TOKEN}"}
    assert route.call_count == 1


@respx.mock
async def test_token_is_refreshed_refresh_margin_before_expiry(rsa_key):
    clock = Clock()
    start = clock.now
    route = respx.post(TOKEN_URL).mock(side_effect=[token_reply("first"), token_reply("second")])
    async with make_auth(rsa_key, clock=clock, refresh_margin=60) as auth:
        assert await auth.headers() == {"Authorization": "Bearer first"}
        clock.now = start + 239  # 61 s left: still cached
        assert await auth.headers() == {"Authorization": "Bearer first"}
        assert route.call_count == 1
        clock.now = start + 241  # 59 s left: refreshed
        assert await auth.headers() == {"Authorization": "Bearer second"}
        assert route.call_count == 2


@respx.mock
async def test_an_expired_token_is_never_used_even_without_a_margin(rsa_key):
    clock = Clock()
    start = clock.now
    route = respx.post(TOKEN_URL).mock(side_effect=[token_reply("first"), token_reply("second")])
    async with make_auth(rsa_key, clock=clock, refresh_margin=0) as auth:
        await auth.headers()
        clock.now = start + 299.5
        assert await auth.headers() == {"Authorization": "Bearer first"}
        clock.now = start + 300
        assert await auth.headers() == {"Authorization": "Bearer second"}
    assert route.call_count == 2


@respx.mock
async def test_missing_expires_in_means_300_seconds_and_short_tokens_refresh_half_way(rsa_key):
    clock = Clock()
    start = clock.now
    route = respx.post(TOKEN_URL).mock(
        side_effect=[token_reply("a", expires_in=None), token_reply("b", expires_in=60), token_reply("c")]
    )
    async with make_auth(rsa_key, clock=clock, refresh_margin=60) as auth:
        await auth.headers()
        clock.now = start + 239
        assert await auth.headers() == {"Authorization": "Bearer a"}
        clock.now = start + 241
        assert await auth.headers() == {"Authorization": "Bearer b"}  # a 60 s token...
        clock.now = start + 241 + 29
        assert await auth.headers() == {"Authorization": "Bearer b"}  # ...is kept for 30 s
        clock.now = start + 241 + 31
        assert await auth.headers() == {"Authorization": "Bearer c"}
    assert route.call_count == 3


@respx.mock
async def test_concurrent_callers_share_one_token_request(rsa_key):
    async def slow_token(request):
        await asyncio.sleep(0.05)
        return token_reply()

    route = respx.post(TOKEN_URL).mock(side_effect=slow_token)
    async with make_auth(rsa_key) as auth:
        results = await asyncio.gather(*(auth.headers() for _ in range(20)))
    assert route.call_count == 1
    assert all(result == {"Authorization": f"Bearer {TOKEN}"} for result in results)


@respx.mock
async def test_concurrent_callers_share_a_failed_refresh_then_a_later_call_tries_again(rsa_key):
    async def refused(request):
        await asyncio.sleep(0.02)
        return httpx.Response(401, json={"error": "invalid_client", "error_description": "unknown key"})

    route = respx.post(TOKEN_URL).mock(side_effect=refused)
    async with make_auth(rsa_key) as auth:
        results = await asyncio.gather(*(auth.headers() for _ in range(10)), return_exceptions=True)
        assert route.call_count == 1
        assert all(isinstance(r, SmartAuthError) and "unknown key" in str(r) for r in results)
        route.mock(side_effect=None, return_value=token_reply())
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
        assert route.call_count == 2


# --- discovery -----------------------------------------------------------------------------------------


def smart_configuration(**overrides):
    config = {
        "token_endpoint": TOKEN_URL,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


@respx.mock
async def test_token_endpoint_is_discovered_from_the_smart_configuration(ec_key):
    discovery = respx.get(DISCOVERY_URL).mock(return_value=httpx.Response(200, json=smart_configuration()))
    token = respx.post(TOKEN_URL).mock(return_value=token_reply())
    auth = await SmartBackendAuth.from_fhir_server(FHIR_BASE + "/", CLIENT_ID, pem(ec_key), key_id=KID)
    async with auth:
        assert auth.token_url == TOKEN_URL
        assert discovery.call_count == 1
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
    claims = decode(form_of(token.calls.last.request)["client_assertion"], ec_key.public_key(), "ES384")
    assert claims["aud"] == TOKEN_URL
    assert discovery.call_count == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (httpx.Response(404, text="not found"), "no SMART configuration at fhir.example.test/r4/.well-known"),
        (httpx.Response(200, json=smart_configuration(token_endpoint=None)), "has no token_endpoint"),
        (
            httpx.Response(
                200, json=smart_configuration(token_endpoint_auth_methods_supported=["client_secret_basic"])
            ),
            "does not offer private_key_jwt",
        ),
        (
            httpx.Response(
                200, json=smart_configuration(token_endpoint_auth_signing_alg_values_supported=["RS384"])
            ),
            "does not accept ES384",
        ),
        (
            httpx.Response(200, json=smart_configuration(token_endpoint="ftp://x/token")),
            "absolute http(s) URL",
        ),
        (httpx.Response(200, text="<html/>"), "is not a JSON object"),
    ],
    ids=["404", "no-endpoint", "no-private-key-jwt", "alg-not-accepted", "bad-url", "not-json"],
)
@respx.mock
async def test_discovery_failures_are_clear(ec_key, reply, expected):
    respx.get(DISCOVERY_URL).mock(return_value=reply)
    with pytest.raises(SmartAuthError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        await SmartBackendAuth.from_fhir_server(FHIR_BASE, CLIENT_ID, pem(ec_key), key_id=KID)


# --- errors and retries ----------------------------------------------------------------------------------


@respx.mock
async def test_oauth_error_is_reported_without_the_assertion(rsa_key, sleeps):
    route = respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            401,
            json={
                "error": "invalid_client",
                "error_description": "No registered key matches kid key-2026-01",
            },
        )
    )
    async with make_auth(rsa_key, sleeps) as auth:
        with pytest.raises(SmartAuthError) as caught:
            await auth.headers()
    error = caught.value
    assertion = form_of(route.calls.last.request)["client_assertion"]
    assert str(error) == (
        "SMART token request to auth.example.test/oauth2/token failed: HTTP 401 invalid_client: "
        "No registered key matches kid key-2026-01"
    )
    assert (error.status, error.error) == (401, "invalid_client")
    assert isinstance(error, FhirError)
    assert assertion not in str(error) and assertion not in repr(error)
    assert route.call_count == 1 and sleeps.calls == []  # a 401 is not retried


@respx.mock
async def test_an_error_description_echoing_the_assertion_is_redacted(rsa_key):
    async def echo(request):
        assertion = form_of(request)["client_assertion"]
        return httpx.Response(
            400, json={"error": "invalid_grant", "error_description": f"bad jwt {assertion}"}
        )

    route = respx.post(TOKEN_URL).mock(side_effect=echo)
    async with make_auth(rsa_key) as auth:
        with pytest.raises(SmartAuthError) as caught:
            await auth.headers()
    assertion = form_of(route.calls.last.request)["client_assertion"]
    assert "bad jwt [redacted]" in str(caught.value)
    assert assertion not in str(caught.value) and assertion not in repr(caught.value)
    assert assertion not in (caught.value.error_description or "")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (httpx.Response(500, text="stack trace with secrets"), "failed: HTTP 500"),
        (httpx.Response(400, text="<html>bad</html>"), "failed: HTTP 400"),
    ],
)
@respx.mock
async def test_other_failures_report_the_status_only(rsa_key, sleeps, reply, expected):
    route = respx.post(TOKEN_URL).mock(return_value=reply)
    async with make_auth(rsa_key, sleeps) as auth:
        with pytest.raises(SmartAuthError) as caught:
            await auth.headers()
    assert str(caught.value).endswith(expected)
    assert "secrets" not in str(caught.value) and "html" not in str(caught.value)
    assert route.call_count == 1


@respx.mock
async def test_503_then_200_is_retried_with_a_fresh_assertion(rsa_key, sleeps):
    route = respx.post(TOKEN_URL).mock(side_effect=[httpx.Response(503), token_reply()])
    async with make_auth(rsa_key, sleeps) as auth:
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert route.call_count == 2
    assert sleeps.calls == [0.5]
    jtis = [
        decode(form_of(call.request)["client_assertion"], rsa_key.public_key(), "RS384")["jti"]
        for call in route.calls
    ]
    assert jtis[0] != jtis[1]  # servers may refuse a jti they have seen


@respx.mock
async def test_429_honours_retry_after(rsa_key, sleeps):
    route = respx.post(TOKEN_URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), token_reply()]
    )
    async with make_auth(rsa_key, sleeps) as auth:
        await auth.headers()
    assert route.call_count == 2 and sleeps.calls == [7.0]


@respx.mock
async def test_retries_are_bounded(rsa_key, sleeps):
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(503, headers={"Retry-After": "120"}))
    async with make_auth(rsa_key, sleeps) as auth:
        with pytest.raises(SmartAuthError, match="HTTP 503") as caught:
            await auth.headers()
    assert route.call_count == 3
    assert sleeps.calls == [30.0, 30.0]  # Retry-After capped at the policy's max_wait
    assert caught.value.status == 503


@respx.mock
async def test_connection_errors_are_retried_then_reported_as_one_line(rsa_key, sleeps):
    route = respx.post(TOKEN_URL).mock(side_effect=[httpx.ConnectError("refused"), token_reply()])
    async with make_auth(rsa_key, sleeps) as auth:
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert route.call_count == 2

    route.mock(side_effect=httpx.ConnectError("refused"))
    async with make_auth(rsa_key, sleeps) as auth:
        with pytest.raises(SmartAuthError) as caught:
            await auth.headers()
    assert str(caught.value) == "SMART token request to auth.example.test/oauth2/token failed: ConnectError"
    assert isinstance(caught.value, FhirError)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"access_token": TOKEN, "token_type": "mac", "expires_in": 300}, "type mac, not bearer"),
        ({"access_token": TOKEN, "expires_in": 300}, "type none, not bearer"),
        ({"token_type": "bearer", "expires_in": 300}, "without an access_token"),
        ({"access_token": TOKEN, "token_type": "bearer", "expires_in": 0}, "invalid expires_in"),
        ({"access_token": TOKEN, "token_type": "bearer", "expires_in": "soon"}, "invalid expires_in"),
        ([TOKEN], "without a JSON object"),
    ],
    ids=["mac", "no-type", "no-token", "zero-expiry", "text-expiry", "not-an-object"],
)
@respx.mock
async def test_unusable_token_responses_are_refused(rsa_key, body, expected):
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=body))
    async with make_auth(rsa_key) as auth:
        with pytest.raises(SmartAuthError, match=expected) as caught:
            await auth.headers()
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)


@respx.mock
async def test_token_type_is_case_insensitive_and_numeric_string_expiry_is_accepted(rsa_key):
    respx.post(TOKEN_URL).mock(return_value=token_reply(token_type="Bearer", expires_in="3600"))
    async with make_auth(rsa_key) as auth:
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}


# --- secrets ------------------------------------------------------------------------------------------------


@respx.mock
async def test_private_key_and_token_never_appear_in_repr_or_str(rsa_key, caplog):
    caplog.set_level("DEBUG")
    key_pem = pem(rsa_key)
    route = respx.post(TOKEN_URL).mock(return_value=token_reply())
    auth = SmartBackendAuth(TOKEN_URL, CLIENT_ID, key_pem, key_id=KID)
    await auth.headers()
    assertion = form_of(route.calls.last.request)["client_assertion"]
    shown = [repr(auth), str(auth), f"{auth}", caplog.text]
    for text in shown:
        assert TOKEN not in text and assertion not in text
        for line in key_body(key_pem):
            assert line not in text
    assert repr(auth) == (
        f"SmartBackendAuth(client_id='{CLIENT_ID}', token_url='{TOKEN_URL}', algorithm='RS384', "
        f"key_id='{KID}', scope='system/*.read')"
    )
    await auth.aclose()


# --- the environment factory -----------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path, ec_key):
    path = tmp_path / "smart-key.pem"
    path.write_bytes(pem(ec_key))
    return path


@respx.mock
async def test_from_env_reads_the_key_from_a_file(key_file, ec_key):
    env = {
        "SMART_CLIENT_ID": CLIENT_ID,
        "SMART_TOKEN_URL": TOKEN_URL,
        "SMART_PRIVATE_KEY_FILE": str(key_file),
        "SMART_KEY_ID": KID,
        "SMART_SCOPE": "system/Patient.rs",
    }
    route = respx.post(TOKEN_URL).mock(return_value=token_reply())
    async with smart_auth_from_env(env=env) as auth:
        assert (auth.client_id, auth.token_url, auth.key_id, auth.scope, auth.algorithm) == (
            CLIENT_ID,
            TOKEN_URL,
            KID,
            "system/Patient.rs",
            "ES384",
        )
        await auth.headers()
    assert form_of(route.calls.last.request)["scope"] == "system/Patient.rs"


async def test_from_env_arguments_win_over_the_environment(key_file, monkeypatch):
    monkeypatch.setenv("SMART_CLIENT_ID", "from-env")
    monkeypatch.setenv("SMART_TOKEN_URL", "https://other.example.test/token")
    monkeypatch.setenv("SMART_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.delenv("SMART_SCOPE", raising=False)
    monkeypatch.delenv("SMART_KEY_ID", raising=False)
    auth = smart_auth_from_env(client_id=CLIENT_ID, token_url=TOKEN_URL, key_id=KID)
    assert (auth.client_id, auth.token_url, auth.scope) == (CLIENT_ID, TOKEN_URL, "system/*.read")
    await auth.aclose()


@respx.mock
async def test_from_env_without_a_token_url_discovers_it_on_first_use(key_file):
    discovery = respx.get(DISCOVERY_URL).mock(return_value=httpx.Response(200, json=smart_configuration()))
    respx.post(TOKEN_URL).mock(return_value=token_reply())
    env = {"SMART_CLIENT_ID": CLIENT_ID, "SMART_PRIVATE_KEY_FILE": str(key_file)}
    async with smart_auth_from_env(env=env, fhir_base_url=FHIR_BASE, key_id=KID) as auth:
        assert auth.token_url is None and discovery.call_count == 0
        assert await auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
        assert auth.token_url == TOKEN_URL and discovery.call_count == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SMART_TOKEN_URL": TOKEN_URL, "SMART_PRIVATE_KEY_FILE": "KEY"},
            "client id is required (set SMART_CLIENT_ID)",
        ),
        ({"SMART_CLIENT_ID": CLIENT_ID, "SMART_PRIVATE_KEY_FILE": "KEY"}, "token URL is required"),
        ({"SMART_CLIENT_ID": CLIENT_ID, "SMART_TOKEN_URL": TOKEN_URL}, "private key file is required"),
        (
            {
                "SMART_CLIENT_ID": CLIENT_ID,
                "SMART_TOKEN_URL": TOKEN_URL,
                "SMART_PRIVATE_KEY_FILE": "/no/such/key.pem",
            },
            "cannot read the SMART private key file /no/such/key.pem",
        ),
        (
            {"SMART_CLIENT_ID": CLIENT_ID, "SMART_TOKEN_URL": "token", "SMART_PRIVATE_KEY_FILE": "KEY"},
            "must be an absolute http(s) URL",
        ),
    ],
    ids=["no-client", "no-url", "no-key", "unreadable-key", "relative-url"],
)
def test_from_env_configuration_errors(key_file, env, expected):
    env = {name: str(key_file) if value == "KEY" else value for name, value in env.items()}
    with pytest.raises(CredentialError) as caught:  # what the CLI already reports as one line
        smart_auth_from_env(env=env)
    assert expected in str(caught.value)
    assert isinstance(caught.value, SmartConfigError)


# --- lifecycle and the FHIR client ----------------------------------------------------------------------


async def test_aclose_closes_only_an_owned_http_client(rsa_key):
    owned = make_auth(rsa_key)
    await owned.aclose()
    assert owned._http.is_closed
    shared = httpx.AsyncClient()
    borrowed = make_auth(rsa_key, http=shared)
    await borrowed.aclose()
    assert not shared.is_closed
    await shared.aclose()


@respx.mock
async def test_fhir_client_sends_the_smart_bearer_token(rsa_key):
    token = respx.post(TOKEN_URL).mock(return_value=token_reply())
    patient = respx.get(f"{FHIR_BASE}/Patient/p1").mock(
        return_value=httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
    )
    search = respx.get(f"{FHIR_BASE}/Observation", params={"subject": "Patient/p1"}).mock(
        return_value=httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    )
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        assert (await client.get_json("Patient/p1"))["id"] == "p1"
        assert await client.resources("Observation").search(subject="Patient/p1").fetch() == []
        assert (await client.get_json("Patient/p1"))["id"] == "p1"
    assert token.call_count == 1
    calls = [*patient.calls, *search.calls]
    assert len(calls) == 3
    assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in calls)


@respx.mock
async def test_fhir_client_reports_a_token_failure_as_one_fhir_error_line(rsa_key):
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(401, json={"error": "invalid_client"}))
    patient = respx.get(f"{FHIR_BASE}/Patient/p1").mock(return_value=httpx.Response(200, json={}))
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        with pytest.raises(FhirError) as caught:
            await client.get_json("Patient/p1")
    assert (
        str(caught.value)
        == "SMART token request to auth.example.test/oauth2/token failed: HTTP 401 invalid_client"
    )
    assert "\n" not in str(caught.value)
    assert patient.call_count == 0


def _bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


@respx.mock
async def test_a_rejected_token_is_replaced_once_and_the_request_sent_again(rsa_key):
    token = respx.post(TOKEN_URL).mock(side_effect=[token_reply("revoked-1"), token_reply("fresh-2")])
    patient = respx.get(f"{FHIR_BASE}/Patient/p1").mock(
        side_effect=lambda request: (
            httpx.Response(401)
            if _bearer(request) == "revoked-1"
            else httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
        )
    )
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        assert (await client.get_json("Patient/p1"))["id"] == "p1"
    assert token.call_count == 2
    assert [_bearer(call.request) for call in patient.calls] == ["revoked-1", "fresh-2"]


@respx.mock
async def test_a_post_rejected_with_401_is_sent_again_with_a_fresh_token(rsa_key):
    respx.post(TOKEN_URL).mock(side_effect=[token_reply("revoked-1"), token_reply("fresh-2")])
    route = respx.post(FHIR_BASE).mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={"resourceType": "Bundle"})]
    )
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        await client.request("POST", "", json_body={"resourceType": "Bundle", "type": "transaction"})
    assert [_bearer(call.request) for call in route.calls] == ["revoked-1", "fresh-2"]


@respx.mock
async def test_a_token_refused_again_is_one_clear_error_after_one_refresh(rsa_key):
    from adapter.fhir.client import FhirUnauthorized

    token = respx.post(TOKEN_URL).mock(side_effect=[token_reply("a"), token_reply("b"), token_reply("c")])
    patient = respx.get(f"{FHIR_BASE}/Patient/p1").mock(return_value=httpx.Response(401))
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        with pytest.raises(FhirUnauthorized) as caught:
            await client.get_json("Patient/p1")
    assert "401" in str(caught.value) and "\n" not in str(caught.value)
    assert (token.call_count, patient.call_count) == (2, 2)


@respx.mock
async def test_requests_in_flight_that_all_get_401_share_one_fresh_token(rsa_key):
    token = respx.post(TOKEN_URL).mock(side_effect=[token_reply("old"), token_reply("new"), token_reply("x")])
    respx.get(url__startswith=f"{FHIR_BASE}/Patient/").mock(
        side_effect=lambda request: (
            httpx.Response(401)
            if _bearer(request) == "old"
            else httpx.Response(200, json={"resourceType": "Patient"})
        )
    )
    async with make_auth(rsa_key) as auth, FhirClient(FHIR_BASE, auth=auth) as client:
        await auth.headers()  # everyone starts with the same (soon refused) token
        await asyncio.gather(*(client.get_json(f"Patient/p{n}") for n in range(6)))
    assert token.call_count == 2


@respx.mock
async def test_a_static_bearer_token_refused_is_not_retried():
    from adapter.fhir.auth import BearerToken
    from adapter.fhir.client import FhirUnauthorized

    patient = respx.get(f"{FHIR_BASE}/Patient/p1").mock(return_value=httpx.Response(401))
    async with FhirClient(FHIR_BASE, auth=BearerToken("static")) as client:
        with pytest.raises(FhirUnauthorized):
            await client.get_json("Patient/p1")
    assert patient.call_count == 1
