import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from neuronova.errors import ConfigError
from neuronova.gate import settings as gate_settings
from neuronova.gate.tokens import JwksSource, PluginSigner, TokenError, TokenVerifier
from tests.support.clock import ManualClock

SECRET = "unit-test-secret-0123456789abcdefghijkl"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def settings(**gate: Any) -> gate_settings.Settings:
    raw: dict[str, Any] = {
        "Keys": [{"Kind": "secret", "Secret": SECRET, "Algorithms": ["HS256"]},
                 {"Kind": "pem", "Pem": PEM, "Algorithms": ["RS256"]}],
        "SigningSecret": "s" * 40, "Issuer": "https://idp", "Audience": "nn", **gate,
    }
    return gate_settings.parse(raw)


def token(key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    base = {"sub": "u", "exp": int(time.time()) + 60, "iss": "https://idp", "aud": "nn"}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm=alg)


def test_good_tokens_verify() -> None:
    verifier = TokenVerifier(settings())
    assert verifier.verify(token())["sub"] == "u"
    assert verifier.verify(token(RSA_KEY, "RS256"))["sub"] == "u"


@pytest.mark.parametrize(("bad", "reason"), [
    (lambda: token(exp=int(time.time()) - 120), "expired"),
    (lambda: token(nbf=int(time.time()) + 120), "not yet valid"),
    (lambda: token(iss="https://other"), "issuer"),
    (lambda: token(aud="other"), "audience"),
    (lambda: token(exp=None), "missing claim"),
    (lambda: token("another-secret-0123456789abcdefghijkl"), "bad signature"),
    (lambda: token(RSA_KEY, "RS384"), "no configured key"),
    (lambda: jwt.encode({"sub": "u"}, None, algorithm="none"), "alg none"),
    (lambda: "x.y.z", "malformed"),
])
def test_bad_tokens_raise(bad: Any, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        TokenVerifier(settings()).verify(bad())


def test_leeway_accepts_slightly_expired() -> None:
    verifier = TokenVerifier(settings(LeewaySeconds=60))
    assert verifier.verify(token(exp=int(time.time()) - 10))["sub"] == "u"


@pytest.mark.parametrize("keys", [
    [{"Kind": "secret", "Secret": SECRET, "Algorithms": ["RS256"]}],
    [{"Kind": "pem", "Pem": PEM, "Algorithms": ["HS256"]}],
    [{"Kind": "secret", "Secret": SECRET, "Algorithms": ["none"]}],
    [{"Kind": "secret", "Secret": "short", "Algorithms": ["HS256"]}],
    [{"Kind": "pem", "Pem": "not a key", "Algorithms": ["RS256"]}],
    [{"Kind": "magic", "Secret": SECRET, "Algorithms": ["HS256"]}],
])
def test_key_confusion_is_a_configuration_error(keys: list[dict[str, Any]]) -> None:
    with pytest.raises(ConfigError):
        gate_settings.parse({"Keys": keys, "SigningSecret": "s" * 40})


def test_unset_keys_are_skipped_and_nothing_configured_is_an_error() -> None:
    parsed = gate_settings.parse({"Keys": [{"Kind": "jwks", "Url": "", "Algorithms": ["RS256"]}],
                                  "SigningSecret": "s" * 40, "AdminUsers": {"admin": "scrypt$1$2$3$4$5"}})
    assert parsed.keys == ()
    with pytest.raises(ConfigError):
        gate_settings.parse({"Keys": [], "SigningSecret": "s" * 40, "AdminUsers": {"admin": ""}})
    with pytest.raises(ConfigError, match="password hash"):
        gate_settings.parse({"SigningSecret": "s" * 40, "AdminUsers": {"admin": "plaintext"}})



def test_jwks_refreshes_on_unknown_kid_and_is_rate_limited() -> None:
    fetched: list[str] = []
    documents = [{"keys": [{**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "a"}]}]

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return documents[-1]

    clock = ManualClock()
    spec = gate_settings.KeySpec("jwks", frozenset({"RS256"}), url="https://idp/certs")
    source = JwksSource(spec, fetch, 30.0, clock)
    assert source.key("a") is not None and len(fetched) == 1
    assert source.key("a") is not None and len(fetched) == 1  # cached
    assert source.key("b") is None and len(fetched) == 1  # unknown, but refreshed too recently
    clock.now += 31
    assert source.key("b") is None and len(fetched) == 2
    assert source.key("b") is None and len(fetched) == 2


def test_jwks_failure_keeps_old_keys() -> None:
    calls = {"n": 0}

    def fetch(url: str) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("provider down")
        return {"keys": [{**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "a"}]}

    clock = ManualClock()
    source = JwksSource(gate_settings.KeySpec("jwks", frozenset({"RS256"}), url="https://idp"), fetch, 1.0, clock)
    assert source.key("a") is not None
    clock.now += 5
    assert source.key("zzz") is None and "failed" in source.last_error
    assert source.key("a") is not None


def test_plugin_signed_tokens_are_purpose_bound() -> None:
    signer = PluginSigner("x" * 40)
    session = signer.mint("session", {"sub": "admin"}, 60)
    share = signer.mint("share", {"sub": "share:1", "study": "1.2"}, 60)
    assert PluginSigner.purpose_of(session) == "session" and PluginSigner.purpose_of(share) == "share"
    assert signer.verify("session", session)["sub"] == "admin"
    with pytest.raises(TokenError):
        signer.verify("share", session)
    with pytest.raises(TokenError):
        PluginSigner("y" * 40).verify("share", share)
