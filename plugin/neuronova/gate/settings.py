"""Configuration of the gate: the ``NeuroNova.Gate`` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import option, string_list
from ..errors import ConfigError
from .origin import normalize_origin
from .proxies import Network, parse_networks
from .throttle import DEFAULT_THROTTLE, ThrottleSettings
from .throttle import parse as parse_throttle

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
RELATIONS = ("ordering", "reading")
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class KeySpec:
    """One source of token-verification keys."""

    kind: str  # "secret" | "pem" | "jwks"
    algorithms: frozenset[str]
    secret: str = ""
    pem: str = ""
    url: str = ""
    kid: str = ""


@dataclass(frozen=True)
class AttributeMatch:
    """A study attribute that, when equal to a token claim, grants ``relation`` on the study."""

    attribute: str  # DICOM keyword, e.g. ReferringPhysicianName
    claim: str  # claim path, e.g. name
    relation: str


@dataclass(frozen=True)
class Settings:
    keys: tuple[KeySpec, ...]
    issuer: str
    audience: str
    leeway_seconds: int
    roles_claim: str
    subject_claim: str
    name_claim: str
    patient_id_claim: str
    token_query_parameter: bool
    admin_users: Mapping[str, str]  # user -> password hash (see passwords.py)
    signing_secret: str
    session_ttl_seconds: int
    share_default_ttl_seconds: int
    share_max_ttl_seconds: int
    attribute_matches: tuple[AttributeMatch, ...]
    stow_roles: frozenset[str]
    viewer_url: str
    jwks_min_refresh_seconds: float
    token_cache_size: int
    study_cache_seconds: float
    throttle: ThrottleSettings = DEFAULT_THROTTLE  # Gate.Throttle (throttle.py)
    # Origins (scheme://host[:port]) of the public URL, accepted on cookie-authenticated
    # writes besides the origin the request itself names (gate/origin.py).
    public_origins: frozenset[str] = frozenset()
    trusted_proxies: tuple[Network, ...] = ()  # proxies whose X-Forwarded-For is believed


def _is_unset(raw: Mapping[str, Any]) -> bool:
    """A key whose material is empty, e.g. from an unset ${VAR}: skipped, not an error."""
    return not any(option(raw, name, str, "") for name in ("Secret", "Pem", "Path", "Url"))


def _key(raw: Any, index: int) -> KeySpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Gate.Keys[{index}] must be an object")
    kind = option(raw, "Kind", str, "")
    algorithms = frozenset(string_list(raw, "Algorithms", ()))
    if not algorithms:
        raise ConfigError(f"Gate.Keys[{index}].Algorithms must list at least one algorithm")
    if "none" in {a.lower() for a in algorithms}:
        raise ConfigError(f'Gate.Keys[{index}]: algorithm "none" is never accepted')
    if kind == "secret":
        if not algorithms <= HMAC_ALGORITHMS:
            raise ConfigError(f"Gate.Keys[{index}]: a shared secret only takes {sorted(HMAC_ALGORITHMS)}")
        secret = option(raw, "Secret", str, "")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"Gate.Keys[{index}].Secret must have at least {MIN_SECRET_LENGTH} characters")
        return KeySpec(kind, algorithms, secret=secret, kid=option(raw, "Kid", str, ""))
    if not algorithms <= ASYMMETRIC_ALGORITHMS:
        raise ConfigError(f"Gate.Keys[{index}]: a public key only takes {sorted(ASYMMETRIC_ALGORITHMS)}")
    if kind == "pem":
        pem = option(raw, "Pem", str, "")
        path = option(raw, "Path", str, "")
        if path and not pem:
            try:
                with open(path, encoding="ascii") as handle:
                    pem = handle.read()
            except OSError as exc:
                raise ConfigError(f"Gate.Keys[{index}]: cannot read {path}: {exc.strerror}") from exc
        if "-----BEGIN" not in pem:
            raise ConfigError(f"Gate.Keys[{index}] needs a PEM public key (Pem or Path)")
        return KeySpec(kind, algorithms, pem=pem, kid=option(raw, "Kid", str, ""))
    if kind == "jwks":
        url = option(raw, "Url", str, "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"Gate.Keys[{index}].Url must be an http(s) URL")
        return KeySpec(kind, algorithms, url=url)
    raise ConfigError(f'Gate.Keys[{index}].Kind must be "secret", "pem" or "jwks", not {kind!r}')


def _attribute_match(raw: Any, index: int) -> AttributeMatch:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Gate.StudyAttributeMatches[{index}] must be an object")
    match = AttributeMatch(
        attribute=option(raw, "Attribute", str, ""),
        claim=option(raw, "Claim", str, ""),
        relation=option(raw, "Relation", str, "ordering"),
    )
    if not match.attribute or not match.claim:
        raise ConfigError(f"Gate.StudyAttributeMatches[{index}] needs Attribute and Claim")
    if match.relation not in RELATIONS:
        raise ConfigError(f"Gate.StudyAttributeMatches[{index}].Relation must be one of {RELATIONS}")
    return match


def _public_origins(raw: Mapping[str, Any]) -> frozenset[str]:
    origins = set()
    for url in string_list(raw, "PublicOrigins", ()):
        origin = normalize_origin(url)
        if not origin:
            raise ConfigError(f"Gate.PublicOrigins: {url!r} is not an http(s) URL")
        origins.add(origin)
    return frozenset(origins)


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"Gate.{key} must be an object")
    return value


def parse(raw: Mapping[str, Any]) -> Settings:
    keys_raw = raw.get("Keys", [])
    if not isinstance(keys_raw, list):
        raise ConfigError("Gate.Keys must be a list")
    keys = tuple(_key(k, i) for i, k in enumerate(keys_raw) if not (isinstance(k, Mapping) and _is_unset(k)))
    users_raw = raw.get("AdminUsers", {})
    if not isinstance(users_raw, Mapping) or not all(isinstance(v, str) for v in users_raw.values()):
        raise ConfigError("Gate.AdminUsers must map user names to password hashes")
    admin_users = {user: hashed for user, hashed in users_raw.items() if hashed}
    for user, hashed in admin_users.items():
        if not hashed.startswith("scrypt$"):
            raise ConfigError(f"Gate.AdminUsers[{user}] must be a password hash made by scripts/hash-password")
    matches_raw = raw.get("StudyAttributeMatches", [])
    if not isinstance(matches_raw, list):
        raise ConfigError("Gate.StudyAttributeMatches must be a list")
    signing_secret = option(raw, "SigningSecret", str, "")
    if len(signing_secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"Gate.SigningSecret must have at least {MIN_SECRET_LENGTH} characters")
    if not keys and not admin_users:
        raise ConfigError("Gate needs at least one token key or one admin user")
    settings = Settings(
        keys=keys,
        issuer=option(raw, "Issuer", str, ""),
        audience=option(raw, "Audience", str, ""),
        leeway_seconds=option(raw, "LeewaySeconds", int, 30),
        roles_claim=option(raw, "RolesClaim", str, "realm_access.roles"),
        subject_claim=option(raw, "SubjectClaim", str, "sub"),
        name_claim=option(raw, "NameClaim", str, "name"),
        patient_id_claim=option(raw, "PatientIdClaim", str, "patient_id"),
        token_query_parameter=option(raw, "TokenQueryParameter", bool, True),
        admin_users=admin_users,
        signing_secret=signing_secret,
        session_ttl_seconds=option(raw, "SessionTtlSeconds", int, 8 * 3600),
        share_default_ttl_seconds=option(raw, "ShareDefaultTtlSeconds", int, 24 * 3600),
        share_max_ttl_seconds=option(raw, "ShareMaxTtlSeconds", int, 7 * 24 * 3600),
        attribute_matches=tuple(_attribute_match(m, i) for i, m in enumerate(matches_raw)),
        stow_roles=frozenset(string_list(raw, "StowRoles", ("admin", "radiologist"))),
        viewer_url=option(raw, "ViewerUrl", str, "/ohif/viewer?StudyInstanceUIDs={study}&token={token}"),
        jwks_min_refresh_seconds=option(raw, "JwksMinRefreshSeconds", float, 30.0),
        token_cache_size=option(raw, "TokenCacheSize", int, 10000),
        study_cache_seconds=option(raw, "StudyCacheSeconds", float, 30.0),
        throttle=parse_throttle(_mapping(raw, "Throttle")),
        public_origins=_public_origins(raw),
        trusted_proxies=parse_networks(string_list(raw, "TrustedProxies", ())),
    )
    if settings.leeway_seconds < 0 or settings.leeway_seconds > 300:
        raise ConfigError("Gate.LeewaySeconds must be between 0 and 300")
    if settings.token_cache_size < 1:
        raise ConfigError("Gate.TokenCacheSize must be positive")
    return settings
