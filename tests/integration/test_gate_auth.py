"""Authentication: every kind of credential, good and bad, against a real Orthanc."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import ADMIN_PASSWORD, JWT_SECRET, World

ME = "/neuronova/me"


def test_health_needs_no_credentials(world: World) -> None:
    answer = requests.get(world.base + "/neuronova/health", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert JWT_SECRET not in answer.text and ADMIN_PASSWORD not in answer.text


def test_valid_token_identifies_the_caller(world: World) -> None:
    answer = world.get(ME, world.token("dr.house", "doctor", name="HOUSE^GREGORY"))
    assert answer.status_code == 200
    me = answer.json()
    assert (me["subject"], me["role"], me["authenticated_by"]) == ("dr.house", "doctor", "token")
    assert me["studies"] == [world.a.study_uid]


def test_token_in_query_parameter_for_get(world: World) -> None:
    token = world.token("dr.house", "doctor", name="HOUSE^GREGORY")
    assert requests.get(f"{world.base}{ME}?token={token}", timeout=10).status_code == 200
    # Not for writes: a link must not be able to change anything.
    answer = requests.post(f"{world.base}/neuronova/shares?token={token}", json={"study": world.a.study_uid},
                           timeout=10)
    assert answer.status_code == 403


def _none_token(world: World) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    claims = {"sub": "mallory", "realm_access": {"roles": ["admin"]}, "exp": int(time.time()) + 600,
              "iss": "https://idp.test/realms/neuronova", "aud": "neuronova"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return (header + b"." + payload + b".").decode()


def _confused_token(world: World) -> str:
    """HS256 signed with the identity provider's RSA *public* key as the HMAC secret (the classic
    key-confusion attack); made by hand because PyJWT refuses to do it."""
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    claims = {"sub": "mallory", "realm_access": {"roles": ["admin"]}, "exp": int(time.time()) + 600,
              "iss": "https://idp.test/realms/neuronova", "aud": "neuronova"}
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    signature = hmac.new(world.keys.rsa_public_pem, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_bad_tokens_are_denied(world: World) -> None:
    now = int(time.time())
    bad = {
        "expired": world.token("x", "admin", ttl=-120),
        "not yet valid": world.token("x", "admin", nbf=now + 3600),
        "bad signature": world.token("x", "admin", key="another-secret-0123456789abcdefghijklmnop"),
        "alg none": _none_token(world),
        "HS/RS confusion": _confused_token(world),
        "wrong issuer": world.token("x", "admin", iss="https://evil.test"),
        "wrong audience": world.token("x", "admin", aud="somebody-else"),
        "no exp": jwt.encode({"sub": "x", "realm_access": {"roles": ["admin"]}, "iss": "https://idp.test/realms/neuronova",
                              "aud": "neuronova"}, JWT_SECRET, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    for label, token in bad.items():
        for path in (ME, "/dicom-web/studies", "/system", f"/dicom-web/studies/{world.a.study_uid}/metadata"):
            answer = world.get(path, token)
            assert answer.status_code == 403, f"{label} on {path}: {answer.status_code}"
            assert answer.content == b""


def test_rs256_token_from_the_identity_provider_key(world: World) -> None:
    token = world.token("radiology-admin", "admin", key=world.keys.rsa_private, algorithm="RS256")
    assert world.get("/system", token).status_code == 200
    # The same key may not sign HS256 (only RS/PS/ES are allowed for a public key).
    assert world.get(ME, world.token("x", "admin", key="x" * 40)).status_code == 403


def test_no_credentials_are_denied_everywhere(world: World) -> None:
    for path in (ME, "/dicom-web/studies", "/system", "/app/explorer.html", "/wado", "/studies",
                 "/dicom-web-internal/studies", "/neuronova/audit"):
        assert requests.get(world.base + path, timeout=10).status_code == 403, path


def test_admin_basic_auth(world: World) -> None:
    assert world.admin_get("/system").status_code == 200
    assert requests.get(world.base + "/system", auth=("admin", "wrong"), timeout=10).status_code == 403
    assert requests.get(world.base + "/system", auth=("root", ADMIN_PASSWORD), timeout=10).status_code == 403


def test_admin_login_cookie_opens_explorer(world: World) -> None:
    session = requests.Session()
    page = session.get(world.base + "/neuronova/login", timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    wrong = session.post(world.base + "/neuronova/login", data={"username": "admin", "password": "nope"}, timeout=10)
    assert wrong.status_code == 401 and "neuronova_session" not in session.cookies
    answer = session.post(world.base + "/neuronova/login", data={"username": "admin", "password": ADMIN_PASSWORD},
                          timeout=10)
    assert answer.status_code == 200
    cookie = answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"):
        assert attribute in cookie
    assert session.get(world.base + "/app/explorer.html", timeout=10).status_code == 200
    assert session.get(world.base + "/studies", timeout=10).status_code == 200
    me = session.get(world.base + ME, timeout=10).json()
    assert (me["role"], me["authenticated_by"]) == ("admin", "session")
    session.post(world.base + "/neuronova/logout", headers={"Origin": world.base}, timeout=10)  # the page's button
    assert session.get(world.base + "/app/explorer.html", timeout=10).status_code == 403
    # A forged or tampered cookie opens nothing.
    forged = requests.get(world.base + "/app/explorer.html", cookies={"neuronova_session": cookie.split(";")[0].split(
        "=", 1)[1][:-3] + "abc"}, timeout=10)
    assert forged.status_code == 403


def test_session_cookie_is_not_a_bearer_token(world: World) -> None:
    session = requests.Session()
    session.post(world.base + "/neuronova/login", data={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10)
    cookie = session.cookies["neuronova_session"]
    assert world.get("/system", cookie).status_code == 403


def test_unknown_role_sees_nothing(world: World) -> None:
    token = world.token("someone", "janitor")
    assert world.get(ME, token).json()["studies"] == []
    assert world.get(f"/dicom-web/studies/{world.a.study_uid}/metadata", token).status_code == 403


def test_jwks_keys_rotation_and_rate_limit(world: World) -> None:
    jwks = world.jwks
    token = world.token("idp-user", "admin", key=jwks.keys["kid-1"], algorithm="RS256", headers={"kid": "kid-1"})
    assert world.get("/system", token).status_code == 200
    # the provider rotates: a new kid appears and is fetched on first sight
    time.sleep(2.1)
    jwks.add_key("kid-2")
    token2 = world.token("idp-user2", "admin", key=jwks.keys["kid-2"], algorithm="RS256", headers={"kid": "kid-2"})
    assert world.get("/system", token2).status_code == 200
    # a flood of unknown kids does not hammer the provider (one fetch per 2 s at most)
    time.sleep(2.1)
    before = jwks.fetches
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for n in range(20):
        forged = world.token(f"x{n}", "admin", key=stranger, algorithm="RS256",
                             headers={"kid": f"unknown-{n}"})
        assert world.get("/system", forged).status_code == 403
    assert jwks.fetches - before <= 2
    # an RS256 token whose kid is known but whose signature is not the provider's
    forged = world.token("x", "admin", key=stranger, algorithm="RS256", headers={"kid": "kid-1"})
    assert world.get("/system", forged).status_code == 403
