"""The gate: authenticates every HTTP request, authorizes it, audits the decision.

``allow_request`` is Orthanc's incoming-request filter. It runs on every HTTP thread for
every request, so the common path is dictionary look-ups: verified credentials are cached
until they expire, study facts and the UID hierarchy are cached in ``StudyDirectory``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Mapping

from ..audit import ALLOW, DENY, AuditEvent, AuditWriter
from ..caches import Cache
from ..host import Host
from ..store import Database
from .claims import claim_at, claim_text
from .grants import GrantIndex
from .identity import Identity, Method, pick_role
from .passwords import verify_password
from .policy import Decision, Policy, Visibility
from .routes import EVENT_SECURITY_ALERT, EVENT_USER_AUTHENTICATION, Scope, Target, classify
from .settings import Settings
from .shares import ShareRegistry
from .studies import StudyDirectory
from .tokens import FetchJson, PluginSigner, TokenError, TokenVerifier, fetch_json_with_requests

SESSION_COOKIE = "neuronova_session"
METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}
NEGATIVE_CACHE_SECONDS = 30.0


class AuthError(Exception):
    """Credentials were presented but are not acceptable (reason goes to the audit log)."""


def cookie_value(cookie_header: str, name: str) -> str:
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class Gate:
    def __init__(self, settings: Settings, host: Host, db: Database, audit: AuditWriter,
                 fetch: FetchJson = fetch_json_with_requests) -> None:
        self.settings = settings
        self._host = host
        self._audit = audit
        self.verifier = TokenVerifier(settings, fetch)
        self.signer = PluginSigner(settings.signing_secret)
        self.grants = GrantIndex(db)
        self.shares = ShareRegistry(db, self.signer)
        self.studies = StudyDirectory(
            host, [m.attribute for m in settings.attribute_matches], settings.study_cache_seconds
        )
        self.policy = Policy(settings, self.grants, self.studies)
        self._identities: Cache[str, Identity] = Cache(max_entries=settings.token_cache_size, ttl=3600.0,
                                                       clock=time.time)
        self._rejections: Cache[str, str] = Cache(max_entries=settings.token_cache_size, ttl=NEGATIVE_CACHE_SECONDS)
        self._visibility: Cache[tuple[object, ...], Visibility] = Cache(
            max_entries=settings.token_cache_size, ttl=settings.study_cache_seconds)

    # -- authentication -------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str], method: str) -> Identity | None:
        """The caller's identity, None when no credentials were presented, AuthError when bad."""
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and credentials.strip():
            return self._cached("bearer", credentials.strip(), self._from_bearer)
        if scheme == "basic" and credentials.strip():
            return self._cached("basic", credentials.strip(), self._from_basic)
        if authorization:
            raise AuthError("unsupported Authorization scheme")
        session = cookie_value(headers.get("cookie", ""), SESSION_COOKIE)
        if session:
            return self._cached("session", session, self._from_session)
        token = query.get("token", "")
        if token and self.settings.token_query_parameter and method == "GET":
            return self._cached("bearer", token, self._from_bearer)
        return None

    def _cached(self, kind: str, credential: str, verify: Callable[[str], Identity]) -> Identity:
        # Keyed by kind too: a session cookie replayed as a bearer token is a different entry.
        digest = hashlib.sha256(f"{kind} {credential}".encode()).hexdigest()  # no raw secrets as keys
        identity = self._identities.get(digest)
        if identity is not None:
            if identity.expires_at <= time.time():
                raise AuthError("credentials expired")
            if identity.share_id and self.shares.is_revoked(identity.share_id):
                raise AuthError("share link revoked")
            return identity
        rejected = self._rejections.get(digest)
        if rejected is not None:
            raise AuthError(rejected)
        try:
            identity = verify(credential)
        except (TokenError, AuthError) as exc:
            self._rejections.put(digest, str(exc))
            raise AuthError(str(exc)) from exc
        self._identities.put(digest, identity, max(0.0, identity.expires_at - time.time()))
        if identity.share_id and self.shares.is_revoked(identity.share_id):
            raise AuthError("share link revoked")
        return identity

    def _from_bearer(self, token: str) -> Identity:
        purpose = PluginSigner.purpose_of(token)
        if purpose == "share":
            claims = self.signer.verify("share", token)
            return Identity(
                subject=str(claims["sub"]), role="share", method=Method.SHARE, expires_at=float(claims["exp"]),
                share_study=str(claims.get("study", "")), share_id=str(claims.get("jti", "")),
            )
        if purpose == "session":
            raise TokenError("a session cookie is not a bearer token")
        claims = self.verifier.verify(token)
        s = self.settings
        subject = claim_text(claims, s.subject_claim)
        if not subject:
            raise TokenError(f"token has no {s.subject_claim} claim")
        return Identity(
            subject=subject, role=pick_role(claim_at(claims, s.roles_claim)), method=Method.TOKEN,
            expires_at=float(claims["exp"]) + s.leeway_seconds, name=claim_text(claims, s.name_claim),
            patient_id=claim_text(claims, s.patient_id_claim), claims=claims,
        )

    def _from_basic(self, key: str) -> Identity:
        try:
            decoded = base64.b64decode(key, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError("malformed basic credentials") from exc
        user, _, password = decoded.partition(":")
        hashed = self.settings.admin_users.get(user)
        # Same cost for unknown users, so timing does not reveal which users exist.
        if not verify_password(password, hashed or _DUMMY_HASH) or hashed is None:
            raise AuthError("wrong user name or password")
        return Identity(subject=user, role="admin", method=Method.BASIC, expires_at=time.time() + 300)

    def _from_session(self, cookie: str) -> Identity:
        claims = self.signer.verify("session", cookie)
        user = str(claims["sub"])
        if user not in self.settings.admin_users:
            raise TokenError("session user no longer exists")
        return Identity(subject=user, role="admin", method=Method.SESSION, expires_at=float(claims["exp"]))

    def check_password(self, user: str, password: str) -> bool:
        hashed = self.settings.admin_users.get(user)
        return verify_password(password, hashed or _DUMMY_HASH) and hashed is not None

    def mint_session(self, user: str) -> str:
        return self.signer.mint("session", {"sub": user}, self.settings.session_ttl_seconds)

    # -- authorization --------------------------------------------------------------------

    def resolve_study(self, target: Target) -> tuple[str, str]:
        """The study a study-scoped request really touches, checked against the hierarchy.

        Returns (study_uid, problem); a non-empty problem means deny.
        """
        study = target.study
        for level, uid in (("instance", target.instance), ("series", target.series)):
            if uid:
                actual = self.studies.study_of(level, uid)
                if actual is None:
                    return study, f"unknown {level}"
                if study and actual != study:
                    return study, f"{level} is not in the requested study"
                return actual, ""
        if not study:
            return "", "no study in request"
        return study, ""

    def decide(self, identity: Identity, target: Target, method: str) -> tuple[Decision, str]:
        """Decision for an authenticated request, and the study it concerns ("" if none)."""
        if target.scope is Scope.CLOSED:
            return Decision(False, "internal route"), ""
        if identity.is_admin:
            return Decision(True, "admin"), target.study
        if target.scope is Scope.ADMIN:
            return Decision(False, "admin-only route"), ""
        if target.scope is Scope.USER:
            return Decision(True, "user route"), ""
        if identity.role == "share" and method != "GET":
            return Decision(False, "share links are read-only"), ""
        if target.scope is Scope.SEARCH:
            if identity.role in ("share", "patient", "doctor", "radiologist"):
                return Decision(True, "filtered search"), ""
            return Decision(False, f"role {identity.role or 'none'} has no image access"), ""
        if target.scope is Scope.STOW:
            if identity.role in self.settings.stow_roles:
                return Decision(True, "stow role"), target.study
            return Decision(False, f"role {identity.role or 'none'} may not store"), target.study
        study, problem = self.resolve_study(target)
        if problem:
            return Decision(False, problem), study
        return self.policy.decide(identity, study), study

    def flush_audit(self) -> None:
        """Wait until queued audit events are written (so a query right after sees them)."""
        self._audit.flush()

    def visibility(self, identity: Identity) -> Visibility:
        """What a search may return; cached until grants or studies change (or 30 s pass)."""
        key = (identity.subject, identity.role, identity.name, identity.patient_id, identity.share_study,
               self.grants.version, self.studies.version)
        cached = self._visibility.get(key)
        if cached is None:
            cached = self.policy.visibility(identity)
            self._visibility.put(key, cached)
        return cached

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        """Orthanc's incoming HTTP request filter. Any exception means deny."""
        method = METHODS.get(method_code, "OTHER")
        identity: Identity | None = None
        target = Target(Scope.ADMIN, "unclassified", EVENT_SECURITY_ALERT)
        try:
            target = classify(uri, method, dict(query))
            if target.scope is Scope.PUBLIC:
                return True
            try:
                identity = self.authenticate(headers, query, method)
            except AuthError as exc:
                self._record(None, ip, method, target, uri, "", DENY, str(exc), EVENT_USER_AUTHENTICATION)
                return False
            if identity is None:
                self._record(None, ip, method, target, uri, target.study, DENY, "no credentials",
                             EVENT_USER_AUTHENTICATION)
                return False
            decision, study = self.decide(identity, target, method)
            if not decision.allowed or target.scope in (Scope.STUDY, Scope.SEARCH, Scope.STOW) or (
                target.scope is Scope.ADMIN and method != "GET"
            ):
                event = target.event if decision.allowed else EVENT_SECURITY_ALERT
                self._record(identity, ip, method, target, uri, study, ALLOW if decision.allowed else DENY,
                             decision.reason, event)
            return decision.allowed
        except Exception as exc:  # noqa: BLE001 - fail closed, and say why
            self._host.log_error(f"NeuroNova gate: denied {method} {uri} after an internal error: {exc!r}")
            try:
                self._record(identity, ip, method, target, uri, "", DENY, f"gate error: {type(exc).__name__}",
                             EVENT_SECURITY_ALERT)
            except Exception:  # noqa: BLE001, S110 - the denial stands even if the audit fails
                pass
            return False

    def record(self, identity: Identity | None, ip: str, method: str, route: str, uri: str, study: str,
               decision: str, reason: str, event: str) -> None:
        self._audit.record(AuditEvent(
            time=time.time(), user=identity.subject if identity else "", role=identity.role if identity else "",
            ip=ip, method=method, route=route, uri=uri[:2048], study_uid=study, decision=decision, reason=reason,
            event_type=event,
        ))

    def _record(self, identity: Identity | None, ip: str, method: str, target: Target, uri: str, study: str,
                decision: str, reason: str, event: str) -> None:
        self.record(identity, ip, method, target.route, uri, study, decision, reason, event)


# A real hash of a random password, so unknown users cost the same scrypt as known ones.
_DUMMY_HASH = "scrypt$32768$8$1$EaBqnWFmkVeuX1iR1EXbFw==$J3gdM0stCJMrwTd2X9dk41peVJeHNGjBNyZk6zQemcQ="
