"""Verification of bearer JWTs from the identity provider (and scripts/mint-token).

Each configured key has its own algorithm allow-list, so ``alg: none`` and HS/RS key
confusion (an RSA public key used as an HMAC secret) can never verify a token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..errors import ConfigError
from .settings import KeySpec, Settings

FetchJson = Callable[[str], Mapping[str, Any]]


class TokenError(Exception):
    """The token is not acceptable; ``str(exc)`` is the audit reason (never the token)."""


def fetch_json_with_requests(url: str) -> Mapping[str, Any]:
    import requests  # imported here: only JWKS sources need it

    response = requests.get(url, timeout=(3.05, 5))
    response.raise_for_status()
    payload = response.json()
    if not isinstance(payload, Mapping):
        raise ValueError("JWKS document is not a JSON object")
    return payload


class JwksSource:
    """Keys of a JWKS URL: cached, refreshed when an unknown ``kid`` arrives, rate-limited."""

    def __init__(self, spec: KeySpec, fetch: FetchJson, min_refresh_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._fetch = fetch
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._last_fetch = float("-inf")
        self._lock = threading.Lock()
        self.last_error = ""

    def _refresh(self) -> None:
        self._last_fetch = self._clock()
        try:
            document = self._fetch(self.spec.url)
            keys: dict[str, Any] = {}
            for jwk in jwt.PyJWKSet.from_dict(dict(document)).keys:
                if jwk.public_key_use in (None, "sig"):
                    keys[jwk.key_id or ""] = jwk.key
            self._keys = keys
            self.last_error = ""
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old keys
            self.last_error = f"JWKS fetch from {self.spec.url} failed: {type(exc).__name__}"

    def key(self, kid: str) -> Any | None:
        with self._lock:
            if kid not in self._keys and self._clock() - self._last_fetch >= self._min_refresh:
                self._refresh()
            if kid in self._keys:
                return self._keys[kid]
            if not kid and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            return None


class TokenVerifier:
    def __init__(self, settings: Settings, fetch: FetchJson = fetch_json_with_requests) -> None:
        self._settings = settings
        self._static: list[tuple[KeySpec, Any]] = []
        self._jwks: list[JwksSource] = []
        for spec in settings.keys:
            if spec.kind == "secret":
                self._static.append((spec, spec.secret.encode()))
            elif spec.kind == "pem":
                try:
                    self._static.append((spec, load_pem_public_key(spec.pem.encode())))
                except ValueError as exc:
                    raise ConfigError(f"cannot load a PEM public key: {exc}") from exc
            else:
                self._jwks.append(JwksSource(spec, fetch, settings.jwks_min_refresh_seconds))

    @property
    def jwks_sources(self) -> list[JwksSource]:
        return self._jwks

    def _candidates(self, alg: str, kid: str) -> list[Any]:
        keys = [key for spec, key in self._static if alg in spec.algorithms and (not spec.kid or spec.kid == kid)]
        for source in self._jwks:
            if alg in source.spec.algorithms:
                key = source.key(kid)
                if key is not None:
                    keys.append(key)
        return keys

    def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims or raise :class:`TokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenError("unsigned token (alg none)")
        kid = header.get("kid") or ""
        if not isinstance(kid, str):
            raise TokenError("malformed kid")
        keys = self._candidates(alg, kid)
        if not keys:
            raise TokenError(f"no configured key accepts alg {alg}")
        s = self._settings
        options: jwt.types.Options = {"require": ["exp"], "verify_aud": bool(s.audience)}
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=[alg], options=options, leeway=s.leeway_seconds,
                    issuer=s.issuer or None, audience=s.audience or None,
                )
                return claims
            except jwt.InvalidSignatureError:
                continue  # another key may match (rotation)
            except jwt.ExpiredSignatureError as exc:
                raise TokenError("token expired") from exc
            except jwt.ImmatureSignatureError as exc:
                raise TokenError("token not yet valid") from exc
            except jwt.InvalidIssuerError as exc:
                raise TokenError("wrong issuer") from exc
            except jwt.InvalidAudienceError as exc:
                raise TokenError("wrong audience") from exc
            except jwt.MissingRequiredClaimError as exc:
                raise TokenError(f"missing claim {exc.claim}") from exc
            except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError) as exc:
                raise TokenError("key/algorithm mismatch") from exc
            except jwt.PyJWTError as exc:
                raise TokenError(f"invalid token ({type(exc).__name__})") from exc
        raise TokenError("bad signature")


class PluginSigner:
    """Tokens the plugin signs itself: session cookies and share links.

    Each purpose gets its own key derived from the signing secret, so a session cookie can
    never be replayed as a share link or the other way round.
    """

    ISSUER = "neuronova"

    def __init__(self, secret: str) -> None:
        import hashlib
        import hmac

        self._keys = {
            purpose: hmac.new(secret.encode(), f"neuronova-{purpose}".encode(), hashlib.sha256).digest()
            for purpose in ("session", "share")
        }

    def mint(self, purpose: str, claims: Mapping[str, Any], ttl_seconds: int) -> str:
        now = int(time.time())
        payload = {**claims, "iss": self.ISSUER, "typ": purpose, "iat": now, "exp": now + ttl_seconds}
        return jwt.encode(payload, self._keys[purpose], algorithm="HS256", headers={"kid": f"neuronova-{purpose}"})

    @staticmethod
    def purpose_of(token: str) -> str:
        """``session``/``share`` for tokens this plugin signed, "" for others (unverified look)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.PyJWTError:
            return ""
        if kid in ("neuronova-session", "neuronova-share"):
            return str(kid).removeprefix("neuronova-")
        return ""

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._keys[purpose], algorithms=["HS256"], issuer=self.ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(f"{purpose} expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid {purpose} ({type(exc).__name__})") from exc
        if claims.get("typ") != purpose:
            raise TokenError(f"not a {purpose} token")
        return claims
