"""The admin session (server-side, same-origin writes), search audit rows, the hierarchy
cache on deletion and the login redirect, over a fake Host."""

from __future__ import annotations

import base64
import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neuronova import audit
from neuronova.audit import AuditWriter
from neuronova.errors import ConfigError
from neuronova.gate import Gate, origin, proxies
from neuronova.gate import api as gate_api
from neuronova.gate import settings as gate_settings
from neuronova.gate.passwords import hash_password
from neuronova.gate.service import SESSION_COOKIE
from neuronova.gate.sessions import SessionRegistry
from neuronova.http import Request
from neuronova.store import Database, open_database

from .fakes import FakeHost, FakeStudy

GET, POST, PUT, DELETE = 1, 2, 3, 4
HOST = {"host": "pacs.local:8042"}
SELF = "http://pacs.local:8042"


def make_settings(**extra: Any) -> gate_settings.Settings:
    return gate_settings.parse({
        "SigningSecret": "s" * 40, "AdminUsers": {"admin": hash_password("pw", n=2**10)}, **extra,
    })


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path}/store.sqlite")


@pytest.fixture
def gate(db: Database) -> Iterator[Gate]:
    host = FakeHost([FakeStudy("1.1", "P1", {}, {"1.1.1": ["1.1.1.1"]}), FakeStudy("3.3", "P2", {}, {})])
    writer = AuditWriter(db)
    yield Gate(make_settings(PublicOrigins=["https://PACS.example.org:443/app/"]), host, db, writer)
    writer.close()


def session_headers(g: Gate, **headers: str) -> dict[str, str]:
    return {**HOST, "cookie": f"other=1; {SESSION_COOKIE}={g.mint_session('admin')}", **headers}


def last_row(g: Gate, db: Database) -> dict[str, Any]:
    g.flush_audit()
    return audit.query(db, limit=100000)[-1]  # oldest first


# -- same-origin proof for cookie writes -----------------------------------------------------

def test_cookie_write_without_origin_or_referer_is_refused_and_audited(gate: Gate, db: Database) -> None:
    headers = session_headers(gate)
    assert gate.allow_request("/system", GET, "10.0.0.9", headers, {})  # reads need no proof
    for method in (POST, PUT, DELETE):
        assert not gate.allow_request("/instances/x", method, "10.0.0.9", headers, {})
    row = last_row(gate, db)
    assert (row["decision"], row["user"], row["ip"], row["event_type"]) == ("deny", "admin", "10.0.0.9", "110113")
    assert "no Origin or Referer" in row["reason"]


def test_cookie_write_from_a_foreign_origin_is_refused(gate: Gate, db: Database) -> None:
    for extra in ({"origin": "https://evil.example"}, {"origin": "null"},
                  {"referer": "https://evil.example/app/explorer.html"},
                  {"origin": "http://pacs.local:8043"}, {"origin": "https://pacs.local:8042"},
                  # a foreign Origin wins over a matching Referer
                  {"origin": "https://evil.example", "referer": SELF + "/app/explorer.html"}):
        assert not gate.allow_request("/tools/reset", POST, "10.0.0.9", session_headers(gate, **extra), {}), extra
    assert "foreign" in last_row(gate, db)["reason"]


def test_cookie_write_from_our_own_pages_passes(gate: Gate) -> None:
    for extra in ({"origin": SELF}, {"referer": SELF + "/app/explorer.html#study?uuid=1"},
                  {"origin": "https://pacs.example.org"},  # Gate.PublicOrigins (normalized)
                  {"origin": "https://pacs.example.org", "x-forwarded-proto": "https"},
                  {"origin": "https://proxy.example", "x-forwarded-proto": "https",
                   "x-forwarded-host": "proxy.example"}):
        assert gate.allow_request("/instances/x", DELETE, "10.0.0.9", session_headers(gate, **extra), {}), extra


def test_basic_auth_and_bearer_writes_need_no_origin(gate: Gate) -> None:
    basic = {"authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    assert gate.allow_request("/instances/x", DELETE, "10.0.0.9", basic, {})


def test_public_origins_must_be_urls() -> None:
    with pytest.raises(ConfigError):
        make_settings(PublicOrigins=["pacs.example.org"])


# -- server-side sessions --------------------------------------------------------------------

def test_logout_ends_the_session_on_the_server(gate: Gate, db: Database) -> None:
    headers = session_headers(gate)
    assert gate.allow_request("/system", GET, "10.0.0.9", headers, {})
    identity = gate.session_of(headers["cookie"])
    assert identity is not None and identity.session_id
    gate.end_session(identity)
    # The same cookie, replayed after logout: refused here at once ...
    assert not gate.allow_request("/system", GET, "10.0.0.9", headers, {})
    assert gate.session_of(headers["cookie"]) is None
    # ... and by another node that never saw it (it reads the store).
    writer = AuditWriter(db)
    try:
        other = Gate(make_settings(), FakeHost([]), db, writer)
        assert not other.allow_request("/system", GET, "10.0.0.9", headers, {})
    finally:
        writer.close()


def test_a_signed_session_unknown_to_the_store_is_refused(gate: Gate) -> None:
    forged = gate.signer.mint("session", {"sub": "admin"}, 600)  # valid signature, no session row
    assert not gate.allow_request("/system", GET, "10.0.0.9", {"cookie": f"{SESSION_COOKIE}={forged}"}, {})


def test_a_logout_elsewhere_reaches_a_node_that_cached_the_session(db: Database) -> None:
    now = [1000.0]
    here = SessionRegistry(db, refresh_seconds=5.0, clock=lambda: now[0])
    elsewhere = SessionRegistry(db, refresh_seconds=5.0, clock=lambda: now[0])
    session = here.open("admin", 3600)
    assert here.is_live(session) and not here.is_revoked(session)
    assert elsewhere.revoke(session)
    assert not here.is_live(session)
    now[0] += 5.0
    assert here.is_revoked(session)
    assert not elsewhere.revoke("no-such-session")


def test_ended_sessions_leave_memory_once_expired(db: Database) -> None:
    now = [1000.0]
    registry = SessionRegistry(db, refresh_seconds=5.0, clock=lambda: now[0])
    session = registry.open("admin", 600)
    assert registry.revoke(session) and registry.is_revoked(session)
    now[0] += 601.0  # past the cookie's expiry, and past the minute kept for local writes
    assert not registry.is_revoked(session)
    assert session not in registry._revoked


def test_logout_handler_revokes_and_audits(gate: Gate, db: Database) -> None:
    api = gate_api.GateApi(gate, db)
    headers = session_headers(gate)
    foreign = api.logout(Request("POST", "/neuronova/logout", headers={**headers, "origin": "https://evil.example"},
                                 ip="10.0.0.7"))
    assert foreign.status == 403 and "Set-Cookie" not in foreign.headers
    bare = api.logout(Request("GET", "/neuronova/logout", headers=headers, ip="10.0.0.7"))
    assert bare.status == 200 and "Set-Cookie" not in bare.headers and b'method="post"' in bare.body
    assert gate.allow_request("/system", GET, "10.0.0.9", headers, {})  # still signed in
    own = {**headers, "referer": "http://" + headers.get("host", "pacs") + "/app/explorer.html"}
    answer = api.logout(Request("GET", "/neuronova/logout", headers=own, ip="10.0.0.7"))
    assert answer.status == 200 and "Max-Age=0" in answer.headers["Set-Cookie"]
    assert not gate.allow_request("/system", GET, "10.0.0.9", headers, {})
    gate.flush_audit()
    rows = audit.query(db, user="admin", limit=10)
    assert any(r["route"] == "logout" and r["decision"] == "allow" and r["ip"] == "10.0.0.7" for r in rows)


# -- audit of searches -----------------------------------------------------------------------

def test_search_rows_carry_the_query_but_no_token(gate: Gate, db: Database) -> None:
    basic = {"authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    query = {"PatientID": "P1", "limit": "5", "token": "secret-token"}
    assert gate.allow_request("/dicom-web/studies", GET, "10.0.0.9", basic, query)
    row = last_row(gate, db)
    assert row["uri"].startswith("/dicom-web/studies?") and "PatientID=P1" in row["uri"] and "limit=5" in row["uri"]
    assert "secret-token" not in row["uri"]


# -- the hierarchy cache ---------------------------------------------------------------------

def test_deletion_drops_the_series_to_study_cache(gate: Gate) -> None:
    host: Any = gate.studies._host
    assert gate.studies.study_of("series", "1.1.1") == "1.1"
    # The series is deleted, then stored again under study 3.3.
    host.studies["3.3"].series["1.1.1"] = host.studies["1.1"].series.pop("1.1.1")
    gate.studies.invalidate()  # a study arrived: the hierarchy cache may stay
    assert gate.studies.study_of("series", "1.1.1") == "1.1"
    gate.studies.invalidate(hierarchy=True)  # something was deleted
    assert gate.studies.study_of("series", "1.1.1") == "3.3"
    assert gate.studies.study_of("instance", "1.1.1.1") == "3.3"


# -- the login page's redirect ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["//evil.example", "/\t/evil.example", "/\n/evil.example", "/\\evil.example",
                                    "\\/evil.example", "https://evil.example", "javascript:alert(1)", "/ /x",
                                    "evil.example", "", "/\u2215evil", "/" + "a" * 3000])
def test_login_redirect_takes_only_local_paths(target: str) -> None:
    assert gate_api._safe_next(target) == gate_api.EXPLORER


def test_login_redirect_keeps_local_paths() -> None:
    for target in ("/app/explorer.html#study?uuid=1", "/ohif/viewer?StudyInstanceUIDs=1.2", "/"):
        assert gate_api._safe_next(target) == target


@pytest.mark.parametrize("module", [origin, gate_api, proxies], ids=lambda m: m.__name__)
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_the_plugins_own_share_revocations_are_audited_once(gate: Gate, db: Database) -> None:
    ai_share, _ = gate.shares.create("1.1", "ai:0123", 600)  # what the AI service's token is
    gate.shares.revoke(ai_share.id)  # the job is done reading
    row = last_row(gate, db)
    assert (row["route"], row["study_uid"], row["decision"]) == ("shares", "1.1", "allow")
    assert ai_share.id in row["reason"] and "ai:0123" in row["reason"]
    before = len(audit.query(db, limit=100000))
    manual, _ = gate.shares.create("1.1", "dr.house", 600)
    gate.shares.revoke(manual.id, audited=True)  # the API handler records it, with who and from where
    gate.flush_audit()
    assert len(audit.query(db, limit=100000)) == before


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(db: Database) -> None:
    writer = AuditWriter(db)
    gate = Gate(make_settings(TrustedProxies="127.0.0.1, 10.9.0.0/16"), FakeHost([]), db, writer)
    wrong = {"authorization": "Basic " + base64.b64encode(b"admin:wrong").decode(), **HOST}
    try:
        forwarded = {**wrong, "x-forwarded-for": "6.6.6.6, 203.0.113.9"}
        assert not gate.allow_request("/system", GET, "127.0.0.1", forwarded, {})
        assert last_row(gate, db)["ip"] == "203.0.113.9"  # the balancer's own address is not the client
        assert not gate.allow_request("/system", GET, "198.51.100.7", {**wrong, "x-forwarded-for": "203.0.113.9"}, {})
        assert last_row(gate, db)["ip"] == "198.51.100.7"  # an untrusted peer's header is ignored
        assert gate.client_ip("127.0.0.1", {}) == "127.0.0.1"
    finally:
        writer.close()
    with pytest.raises(ConfigError, match="TrustedProxies"):
        make_settings(TrustedProxies=["not-a-network"])
