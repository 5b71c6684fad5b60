"""The gate: authenticates every HTTP request, authorizes it, audits the decision.

``allow_request`` is Orthanc's incoming-request filter. It runs on every HTTP thread for
every request, so the common path is dictionary look-ups: verified credentials are cached
until they expire, study facts and the UID hierarchy are cached in ``StudyDirectory``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from ..audit import ALLOW, DENY, AuditEvent, AuditWriter
from ..caches import Cache
from ..host import Host
from ..store import Database
from .bodies import body_refusal
from .claims import claim_at, claim_text
from .grants import GrantIndex
from .identity import Identity, Method, pick_role
from .origin import same_origin_problem
from .passwords import verify_password
from .policy import Decision, Policy, Visibility
from .proxies import client_address
from .routes import (
    EVENT_APPLICATION_ACTIVITY,
    EVENT_SECURITY_ALERT,
    EVENT_USER_AUTHENTICATION,
    Scope,
    ScopeLookup,
    Target,
    classify,
)
from .sessions import SessionRegistry
from .settings import Settings
from .shares import ShareRegistry
from .studies import StudyDirectory
from .throttle import Busy, Throttle
from .tokens import FetchJson, PluginSigner, TokenError, TokenVerifier, fetch_json_with_requests

SESSION_COOKIE = "neuronova_session"
METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}
NEGATIVE_CACHE_SECONDS = 30.0
# What a request is until classified. A constant: the filter's first step, which built it, took
# ~10 µs inside Orthanc (where each Python step costs several times what it does in a loop).
_UNCLASSIFIED = Target(Scope.ADMIN, "unclassified", EVENT_SECURITY_ALERT)
# How long a request waits for another thread already verifying the same credential.
VERIFY_WAIT_SECONDS = 5.0


class AuthError(Exception):
    """Credentials were presented but are not acceptable (reason goes to the audit log)."""


class Throttled(AuthError):
    """Password checks for this address or user are locked out for ``retry_after`` seconds
    (or too many run at once): refused without computing a hash, audited as a security alert."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def cookie_value(cookie_header: str, name: str) -> str:
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class Gate:
    def __init__(self, settings: Settings, host: Host, db: Database, audit: AuditWriter,
                 fetch: FetchJson = fetch_json_with_requests, routes: ScopeLookup | None = None) -> None:
        self.settings = settings
        self._routes = routes  # the plugin's route table; without it /neuronova/ routes are ADMIN
        self.sessions = SessionRegistry(db)
        self._host = host
        self._audit = audit
        self.throttle = Throttle(settings.throttle)
        self.verifier = TokenVerifier(settings, fetch)
        self.signer = PluginSigner(settings.signing_secret)
        self.grants = GrantIndex(db)
        self.shares = ShareRegistry(db, self.signer, on_revoke=self._share_revoked)
        self.studies = StudyDirectory(
            host, [m.attribute for m in settings.attribute_matches], settings.study_cache_seconds
        )
        self.policy = Policy(settings, self.grants, self.studies)
        self._identities: Cache[str, Identity] = Cache(max_entries=settings.token_cache_size, ttl=3600.0,
                                                       clock=time.time)
        self._rejections: Cache[str, str] = Cache(max_entries=settings.token_cache_size, ttl=NEGATIVE_CACHE_SECONDS)
        self._verifying: dict[str, threading.Event] = {}
        self._verifying_lock = threading.Lock()
        self._visibility: Cache[tuple[object, ...], Visibility] = Cache(
            max_entries=settings.token_cache_size, ttl=settings.study_cache_seconds)
        # Studies hidden from non-admins until an admin resolves a patient collision
        # (collisions.py; the App plugs the guard's set in). Searches leave them out too.
        self.hidden_studies: Callable[[], frozenset[str]] = frozenset

    # -- authentication -------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str], method: str,
                     ip: str = "") -> Identity | None:
        """The caller's identity, None when no credentials were presented, AuthError when bad
        (:class:`Throttled` when password checks from ``ip`` or for the user are locked out)."""
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and credentials.strip():
            return self._cached("bearer", credentials.strip(), self._from_bearer)
        if scheme == "basic" and credentials.strip():
            return self._cached("basic", credentials.strip(), lambda key: self._from_basic(key, ip))
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
        known = self._known(digest)
        if known is not None:
            return known
        # One verification per credential at a time: clients that open several connections
        # with the same new credential (parallel uploads) wait for the first one's verdict
        # instead of each queueing for the single scrypt slot (and being refused as busy).
        with self._verifying_lock:
            other = self._verifying.get(digest)
            if other is None:
                mine = self._verifying[digest] = threading.Event()
        if other is not None:
            other.wait(VERIFY_WAIT_SECONDS)
            known = self._known(digest)
            if known is not None:
                return known
            return self._verify(digest, credential, verify)
        try:
            return self._verify(digest, credential, verify)
        finally:
            with self._verifying_lock:
                del self._verifying[digest]
            mine.set()

    def _known(self, digest: str) -> Identity | None:
        """The cached verdict on a credential: its identity, None when unknown, AuthError when
        it was rejected or its identity no longer holds."""
        identity = self._identities.get(digest)
        if identity is not None:
            if identity.expires_at <= time.time():
                raise AuthError("credentials expired")
            if identity.share_id and self.shares.is_revoked(identity.share_id):
                raise AuthError("share link revoked")
            if identity.session_id and self.sessions.is_revoked(identity.session_id):
                raise AuthError("session ended")
            return identity
        rejected = self._rejections.get(digest)
        if rejected is not None:
            raise AuthError(rejected)
        return None

    def _verify(self, digest: str, credential: str, verify: Callable[[str], Identity]) -> Identity:
        try:
            identity = verify(credential)
        except Throttled:
            raise  # not the credential's fault: never remembered as rejected
        except (TokenError, AuthError) as exc:
            self._rejections.put(digest, str(exc))
            raise AuthError(str(exc)) from exc
        self._identities.put(digest, identity, ttl=max(0.0, identity.expires_at - time.time()))
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

    def _from_basic(self, key: str, ip: str) -> Identity:
        try:
            decoded = base64.b64decode(key, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError("malformed basic credentials") from exc
        user, _, password = decoded.partition(":")
        if not self.check_password(user, password, ip):
            raise AuthError("wrong user name or password")
        return Identity(subject=user, role="admin", method=Method.BASIC, expires_at=time.time() + 300)

    def _from_session(self, cookie: str) -> Identity:
        claims = self.signer.verify("session", cookie)
        user = str(claims["sub"])
        if user not in self.settings.admin_users:
            raise TokenError("session user no longer exists")
        session_id = str(claims.get("jti", ""))
        # Once per node and cookie (the identity is cached after): the store says whether
        # the session is still open, whichever node opened or ended it.
        if not session_id or not self.sessions.is_live(session_id):
            raise TokenError("session ended")
        return Identity(subject=user, role="admin", method=Method.SESSION, expires_at=float(claims["exp"]),
                        session_id=session_id)

    def session_of(self, cookie_header: str) -> Identity | None:
        """The admin session a Cookie header carries, if it is valid (for logout)."""
        cookie = cookie_value(cookie_header, SESSION_COOKIE)
        if not cookie:
            return None
        try:
            return self._cached("session", cookie, self._from_session)
        except AuthError:
            return None

    def end_session(self, identity: Identity) -> None:
        """Logout: the session ends on every node (here at once, elsewhere within seconds)."""
        if identity.session_id:
            self.sessions.revoke(identity.session_id)

    def check_password(self, user: str, password: str, ip: str = "") -> bool:
        """Whether ``password`` is ``user``'s, throttled per address and per user (throttle.py):
        raises :class:`Throttled` without computing a hash while either is locked out."""
        user_key = user[:256]
        wait = self.throttle.retry_after(ip, user_key)
        if wait > 0:
            raise Throttled(f"locked out after repeated failed logins, retry in {int(wait) + 1} s", wait)
        hashed = self.settings.admin_users.get(user)
        try:
            with self.throttle.check_slot():
                # Same cost for unknown users, so timing does not reveal which users exist.
                ok = verify_password(password, hashed or _DUMMY_HASH) and hashed is not None
        except Busy as exc:
            raise Throttled(str(exc), 1.0) from exc
        if ok:
            self.throttle.success(ip, user_key)
            return True
        locked = self.throttle.failure(ip, user_key)
        if locked:
            self.record(None, ip, "-", "throttle", "", "", DENY,
                        f"address {ip or '?'} / user {user_key[:64]!r} locked out for {locked:.0f} s "
                        "after repeated failed logins", EVENT_SECURITY_ALERT)
        return False

    def _share_revoked(self, share_id: str) -> None:
        """Audit a revocation made by the plugin itself (the AI service's token, when the job
        is done reading): who held the share is in its row."""
        share = self.shares.get(share_id)
        holder = share.created_by if share else ""
        self.record(None, "", "POST", "shares", f"share:{share_id}", share.study_uid if share else "", ALLOW,
                    f"share {share_id} revoked (held by {holder or 'unknown'})", EVENT_APPLICATION_ACTIVITY)

    def mint_session(self, user: str) -> str:
        ttl = self.settings.session_ttl_seconds
        return self.signer.mint("session", {"sub": user, "jti": self.sessions.open(user, ttl)}, ttl)

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
        if study in self.hidden_studies():
            return Decision(False, "study quarantined: patient collision not resolved"), study
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

    def client_ip(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address: the peer's, or what a trusted proxy forwarded (proxies.py)."""
        return client_address(peer, headers, self.settings.trusted_proxies)

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        """Orthanc's incoming HTTP request filter. Any exception means deny."""
        method = METHODS.get(method_code, "OTHER")
        identity: Identity | None = None
        target = _UNCLASSIFIED
        try:
            ip = self.client_ip(ip, headers)
            target = classify(uri, method, dict(query), self._routes)
            refused = body_refusal(target.scope, method, headers)
            if refused:  # before Orthanc reads it: an unauthenticated body costs nothing
                self._record(None, ip, method, target, uri, "", DENY, refused, EVENT_SECURITY_ALERT)
                return False
            if target.scope is Scope.PUBLIC:
                return True
            try:
                identity = self.authenticate(headers, query, method, ip)
            except AuthError as exc:
                event = EVENT_SECURITY_ALERT if isinstance(exc, Throttled) else EVENT_USER_AUTHENTICATION
                self._record(None, ip, method, target, uri, "", DENY, str(exc), event)
                return False
            if identity is None:
                self._record(None, ip, method, target, uri, target.study, DENY, "no credentials",
                             EVENT_USER_AUTHENTICATION)
                return False
            if identity.method is Method.SESSION and method != "GET":
                # The cookie rides along with any page's request: writes must prove same-origin.
                problem = same_origin_problem(headers, self.settings.public_origins)
                if problem:
                    self._record(identity, ip, method, target, uri, target.study, DENY,
                                 f"session cookie write: {problem}", EVENT_SECURITY_ALERT)
                    return False
            decision, study = self.decide(identity, target, method)
            if target.scope is Scope.SEARCH:
                uri = _with_query(uri, query)
            if not decision.allowed or target.scope in (Scope.STUDY, Scope.SEARCH, Scope.STOW) or (
                target.scope is Scope.ADMIN and method != "GET"
            ):
                audit_problem = self._audit.problem() if decision.allowed and self._audit.fail_closed else ""
                if audit_problem:  # an access that cannot be recorded is not granted (Audit.FailClosed)
                    decision = Decision(False, "audit trail unavailable")
                event = target.event if decision.allowed else EVENT_SECURITY_ALERT
                recorded = self._record(identity, ip, method, target, uri, study,
                                        ALLOW if decision.allowed else DENY, decision.reason, event)
                if decision.allowed and not recorded and self._audit.fail_closed:
                    return False  # the queue stayed full: counted and reported by the writer
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
               decision: str, reason: str, event: str) -> bool:
        """Queue an audit event; False when it could not be queued (audit.py says what then)."""
        return self._audit.record(AuditEvent(
            time=time.time(), user=identity.subject if identity else "", role=identity.role if identity else "",
            ip=ip, method=method, route=route, uri=uri[:2048], study_uid=study, decision=decision, reason=reason,
            event_type=event,
        ))

    def _record(self, identity: Identity | None, ip: str, method: str, target: Target, uri: str, study: str,
                decision: str, reason: str, event: str) -> bool:
        return self.record(identity, ip, method, target.route, uri, study, decision, reason, event)


def _with_query(uri: str, query: Mapping[str, str]) -> str:
    """The URI with its query, for the audit of searches (credentials left out)."""
    kept = {k: v for k, v in query.items() if k.lower() != "token"}
    return f"{uri}?{urlencode(kept)}" if kept else uri


# A real hash of a random password, so unknown users cost the same scrypt as known ones.
_DUMMY_HASH = "scrypt$32768$8$1$EaBqnWFmkVeuX1iR1EXbFw==$J3gdM0stCJMrwTd2X9dk41peVJeHNGjBNyZk6zQemcQ="
