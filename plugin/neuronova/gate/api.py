"""REST handlers of the gate: /neuronova/me, grants, shares, audit, login and logout."""

from __future__ import annotations

import html
import re
import time
from typing import Any
from urllib.parse import quote, urlencode

from .. import audit as audit_log
from ..audit import ALLOW, DENY
from ..dicomweb.paths import UID, UID_RE
from ..errors import HttpError
from ..http import Request, Response, json_response
from ..router import Router
from ..scope import Scope
from ..store import Database
from .identity import Identity, Method
from .origin import same_origin_problem
from .policy import PHYSICIAN_ROLES
from .routes import EVENT_APPLICATION_ACTIVITY, EVENT_SECURITY_ALERT, EVENT_USER_AUTHENTICATION
from .service import SESSION_COOKIE, AuthError, Gate, Throttled
from .settings import RELATIONS

EXPLORER = "/app/explorer.html"
PUBLIC, USER, ADMIN = Scope.PUBLIC, Scope.USER, Scope.ADMIN


def caller(gate: Gate, request: Request) -> Identity:
    try:
        identity = gate.authenticate(request.headers, request.query, request.method, request.ip)
    except AuthError as exc:
        raise HttpError(401, str(exc)) from exc
    if identity is None:
        raise HttpError(401, "authentication required")
    return identity


def require_admin(gate: Gate, request: Request) -> Identity:
    identity = caller(gate, request)
    if not identity.is_admin:
        raise HttpError(403, "admin only")
    return identity



class GateApi:
    def __init__(self, gate: Gate, db: Database) -> None:
        self.gate = gate
        self.db = db

    def register(self, router: Router) -> None:
        # Scopes: what the gate's filter lets through before the handler (which checks the rest).
        router.add("GET", "/neuronova/me", self.me, scope=USER)
        router.add("GET", f"/neuronova/studies/(?P<study>{UID})/grants", self.list_grants, scope=ADMIN)
        router.add("POST", f"/neuronova/studies/(?P<study>{UID})/grants", self.add_grant, scope=ADMIN)
        router.add("DELETE", f"/neuronova/studies/(?P<study>{UID})/grants/(?P<subject>[^/]+)", self.remove_grant,
                   scope=ADMIN)
        router.add("POST", "/neuronova/shares", self.create_share, scope=USER)
        router.add("GET", "/neuronova/shares/(?P<id>[A-Za-z0-9_-]+)", self.get_share, scope=USER)
        router.add("DELETE", "/neuronova/shares/(?P<id>[A-Za-z0-9_-]+)", self.revoke_share, scope=USER)
        router.add("GET", "/neuronova/audit", self.audit, scope=ADMIN)
        router.add("GET", "/neuronova/login", self.login_page, scope=PUBLIC)
        router.add("POST", "/neuronova/login", self.login, scope=PUBLIC)
        router.add("GET", "/neuronova/logout", self.logout, scope=PUBLIC)
        router.add("POST", "/neuronova/logout", self.logout, scope=PUBLIC)

    def _audit(self, identity: Identity | None, request: Request, route: str, study: str, decision: str,
               reason: str, event: str = EVENT_APPLICATION_ACTIVITY) -> None:
        self.gate.record(identity, request.ip, request.method, route, request.path, study, decision, reason, event)

    def me(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        visibility = self.gate.visibility(identity)
        return json_response({
            "subject": identity.subject,
            "role": identity.role,
            "name": identity.name,
            "patient_id": identity.patient_id,
            "authenticated_by": identity.method.value,
            "expires_at": audit_log.iso_utc(identity.expires_at),
            "studies": "all" if visibility.everything else sorted(visibility.studies),
        })

    # -- grants ---------------------------------------------------------------------------

    def list_grants(self, request: Request) -> Response:
        require_admin(self.gate, request)
        study = request.groups[0]
        return json_response([g.__dict__ for g in self.gate.grants.list(study)])

    def add_grant(self, request: Request) -> Response:
        identity = require_admin(self.gate, request)
        study = request.groups[0]
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, 'body must be {"subject": "...", "relation": "ordering"|"reading"}')
        subject, relation = body.get("subject"), body.get("relation", "ordering")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise HttpError(400, "subject must be a non-empty string")
        if relation not in RELATIONS:
            raise HttpError(400, f"relation must be one of {list(RELATIONS)}")
        grant = self.gate.grants.add(study, subject, relation, identity.subject)
        self._audit(identity, request, "grants", study, ALLOW, f"grant {relation} to {subject}")
        return json_response(grant.__dict__, 201)

    def remove_grant(self, request: Request) -> Response:
        identity = require_admin(self.gate, request)
        study, subject = request.groups
        if not self.gate.grants.remove(study, subject):
            raise HttpError(404, "no such grant")
        self._audit(identity, request, "grants", study, ALLOW, f"revoke grants of {subject}")
        return json_response({"removed": subject})

    # -- shares ---------------------------------------------------------------------------

    def create_share(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        if not (identity.is_admin or identity.role in PHYSICIAN_ROLES):
            self._audit(identity, request, "shares", "", DENY, "role may not share", EVENT_SECURITY_ALERT)
            raise HttpError(403, "only admins, doctors and radiologists create share links")
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("study"), str) or not UID_RE.match(body["study"]):
            raise HttpError(400, 'body must be {"study": "<StudyInstanceUID>", "ttl": seconds}')
        study = body["study"]
        settings = self.gate.settings
        ttl = body.get("ttl", settings.share_default_ttl_seconds)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= settings.share_max_ttl_seconds:
            raise HttpError(400, f"ttl must be an integer from 60 to {settings.share_max_ttl_seconds} seconds")
        decision = self.gate.policy.decide(identity, study)
        if not decision.allowed:
            self._audit(identity, request, "shares", study, DENY, decision.reason, EVENT_SECURITY_ALERT)
            raise HttpError(403, "you may not share this study")
        share, token = self.gate.shares.create(study, identity.subject, ttl)
        self._audit(identity, request, "shares", study, ALLOW, f"share {share.id} for {ttl} s")
        viewer = settings.viewer_url.replace("{study}", quote(study)).replace("{token}", quote(token))
        return json_response({**_share_json(share), "token": token, "url": viewer}, 201)

    def get_share(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        share = self.gate.shares.get(request.groups[0])
        if share is None or not (identity.is_admin or share.created_by == identity.subject):
            raise HttpError(404, "no such share")
        return json_response(_share_json(share))

    def revoke_share(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        share = self.gate.shares.get(request.groups[0])
        if share is None or not (identity.is_admin or share.created_by == identity.subject):
            raise HttpError(404, "no such share")
        self.gate.shares.revoke(share.id, audited=True)
        self._audit(identity, request, "shares", share.study_uid, ALLOW, f"revoke share {share.id}")
        return json_response({"revoked": share.id})

    # -- audit ----------------------------------------------------------------------------

    def audit(self, request: Request) -> Response:
        require_admin(self.gate, request)
        q = request.query
        try:
            since = audit_log.parse_time(q["since"]) if q.get("since") else None
            until = audit_log.parse_time(q["until"]) if q.get("until") else None
        except ValueError as exc:
            raise HttpError(400, "since/until must be ISO 8601 or epoch seconds") from exc
        if q.get("decision", "") not in ("", ALLOW, DENY):
            raise HttpError(400, "decision must be allow or deny")
        self.gate.flush_audit()
        rows = audit_log.query(
            self.db, user=q.get("user", ""), study=q.get("study", ""), decision=q.get("decision", ""),
            node=q.get("node", ""), since=since, until=until, limit=request.int_param("limit", 100, 1, 100000),
            offset=request.int_param("offset", 0, 0, 10**12),
        )
        if q.get("format") == "jsonl":
            return Response(200, "".join(audit_log.as_json_lines(rows)).encode(), "application/x-ndjson")
        return json_response(rows)

    # -- admin login for Orthanc Explorer ------------------------------------------------

    def login_page(self, request: Request, message: str = "", status: int = 200) -> Response:
        target = _safe_next(request.query.get("next", EXPLORER))
        return Response(status, _LOGIN_HTML.format(
            message=html.escape(message), action="/neuronova/login?" + urlencode({"next": target}),
        ).encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def login(self, request: Request) -> Response:
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        user, password = form.get("username", ""), form.get("password", "")
        try:
            correct = self.gate.check_password(user, password, request.ip)
        except Throttled as exc:
            self._audit(None, request, "login", "", DENY, f"login for {user[:64]!r}: {exc}", EVENT_SECURITY_ALERT)
            page = self.login_page(request, "Too many failed sign-ins: try again later.", 429)
            page.headers["Retry-After"] = str(int(exc.retry_after) + 1)
            return page
        if not correct:
            self._audit(None, request, "login", "", DENY, f"failed login for {user[:64]!r}", EVENT_USER_AUTHENTICATION)
            return self.login_page(request, "Wrong user name or password.", 401)
        identity = Identity(subject=user, role="admin", method=Method.SESSION, expires_at=time.time())
        self._audit(identity, request, "login", "", ALLOW, "session opened", EVENT_USER_AUTHENTICATION)
        ttl = self.gate.settings.session_ttl_seconds
        cookie = f"{SESSION_COOKIE}={self.gate.mint_session(user)}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict"
        if request.headers.get("x-forwarded-proto") == "https":
            cookie += "; Secure"
        target = _safe_next(request.query.get("next", EXPLORER))
        return _redirect_page(target, cookie)

    def logout(self, request: Request) -> Response:
        """Ends the session, when the request comes from our own pages (Origin or Referer, as
        for cookie writes): a foreign page must not log the administrator out. A bare GET (a
        typed URL or a bookmark carries no Referer) gets a page whose button posts the logout."""
        identity = self.gate.session_of(request.headers.get("cookie", ""))
        problem = same_origin_problem(request.headers, self.gate.settings.public_origins)
        if identity is not None and problem:
            if request.method == "GET" and not request.headers.get("origin") and not request.headers.get("referer"):
                return Response(200, _LOGOUT_HTML.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
            self._audit(identity, request, "logout", "", DENY, f"logout refused: {problem}", EVENT_SECURITY_ALERT)
            return Response(403, b'{"error": "logout must come from this server\'s own pages"}', "application/json")
        if identity is not None:
            self.gate.end_session(identity)  # the cookie is dead on the server, not only cleared
            self._audit(identity, request, "logout", "", ALLOW, "session closed", EVENT_USER_AUTHENTICATION)
        cookie = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        return _redirect_page("/neuronova/login", cookie)


def _share_json(share: Any) -> dict[str, Any]:
    return {
        "id": share.id, "study": share.study_uid, "created_by": share.created_by,
        "created_at": audit_log.iso_utc(share.created_at), "expires_at": audit_log.iso_utc(share.expires_at),
        "revoked": share.revoked_at is not None,
    }


# A local path: "/" then printable ASCII other than "\\" (no space, no control characters:
# browsers drop tabs and newlines from URLs, so "/\t/evil.example" would become
# "//evil.example", another host), and never "//" at the start.
_LOCAL_PATH = re.compile(r"^/(?![/\\])[!-~]*$")


def _safe_next(target: str) -> str:
    """Only local paths: the login page must not become an open redirect.

    >>> [_safe_next(t) for t in ("/app/explorer.html#x", "//evil.example", "/\t/evil.example", "https://e.x")]
    ['/app/explorer.html#x', '/app/explorer.html', '/app/explorer.html', '/app/explorer.html']
    """
    if len(target) > 2048 or not _LOCAL_PATH.match(target) or "\\" in target:
        return EXPLORER
    return target


def _redirect_page(target: str, cookie: str) -> Response:
    # Orthanc's Redirect() drops headers set before it (Set-Cookie among them), so the
    # redirect is a tiny page instead.
    body = (f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(target)}">'
            f'<a href="{html.escape(target)}">Continue</a>')
    return Response(200, body.encode(), "text/html; charset=utf-8", {"Set-Cookie": cookie, "Cache-Control": "no-store"})


_LOGOUT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>NeuroNova - sign out</title></head>
<body style="font-family:sans-serif"><form method="post" action="/neuronova/logout">
<button type="submit">Sign out of NeuroNova PACS</button></form></body></html>
"""

_LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>NeuroNova - sign in</title>
<style>body{{font-family:sans-serif;background:#10243a;color:#fff;display:flex;justify-content:center;
margin-top:12vh}}form{{background:#fff;color:#111;padding:2em;border-radius:8px;width:18em}}
input{{width:100%;margin:.3em 0 1em;padding:.4em;box-sizing:border-box}}p.err{{color:#b00}}</style></head>
<body><form method="post" action="{action}"><h2>NeuroNova PACS</h2><p class="err">{message}</p>
<label>User name<input name="username" autocomplete="username" required autofocus></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in to Orthanc Explorer</button></form></body></html>
"""
