"""Bounded work per request (issue 9 part 2): request bodies refused from their headers,
password throttling, frame lists, rendering parameters, the metadata cache, the audit trail
when its store fails or fills."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import jwt
import pytest

from neuronova import audit
from neuronova.audit import AuditEvent, AuditSettings, AuditWriter
from neuronova.dicomweb.front import DicomWebFront
from neuronova.dicomweb.paths import parse
from neuronova.dicomweb.rules import (
    MAX_ANSWER_BYTES,
    MAX_FRAMES,
    check_answer_size,
    core_rendering_query,
    frame_list,
    rendering_query,
)
from neuronova.errors import HttpError
from neuronova.gate import Gate
from neuronova.gate import settings as gate_settings
from neuronova.gate.api import GateApi
from neuronova.gate.bodies import body_refusal
from neuronova.gate.passwords import hash_password
from neuronova.gate.service import Throttled
from neuronova.gate.throttle import Throttle, ThrottleSettings
from neuronova.http import Request
from neuronova.scope import Scope
from neuronova.store import open_database
from neuronova.store.schema import audit_events

from .fakes import FakeHost, FakeStudy

SECRET = "unit-test-secret-0123456789abcdefghijkl"
POST = 2


class PublicLogin:
    """The one route table entry these tests need: the login page is public."""

    def scope_of(self, method: str, path: str) -> Scope | None:
        return Scope.PUBLIC if path == "/neuronova/login" and method in ("GET", "POST") else None


def make_gate(tmp_path: Path, writer: AuditWriter | None = None,
              throttle: dict[str, Any] | None = None) -> tuple[Gate, AuditWriter, Any]:
    host = FakeHost([FakeStudy("1.1", "P1", {"ReferringPhysicianName": "HOUSE^GREGORY"}, {"1.1.1": ["1.1.1.1"]})])
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = writer or AuditWriter(db)
    settings = gate_settings.parse({
        "Keys": [{"Kind": "secret", "Secret": SECRET, "Algorithms": ["HS256"]}],
        "SigningSecret": "s" * 40,
        "AdminUsers": {"admin": hash_password("pw", n=2**10)},
        "Throttle": throttle or {"MaxFailuresPerAddress": 3, "MaxFailuresPerUser": 5, "LockoutSeconds": 60},
    })
    return Gate(settings, host, db, writer, routes=PublicLogin()), writer, db


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[Gate, Any]]:
    g, writer, db = make_gate(tmp_path)
    yield g, db
    writer.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- bodies ------------------------------------------------------------------------------

def test_bodies_are_refused_from_their_headers(gate: tuple[Gate, Any]) -> None:
    g, db = gate
    four_gb = {"content-length": str(4 * 1024**3)}
    assert not g.allow_request("/neuronova/login", POST, "10.0.0.9", four_gb, {})
    assert not g.allow_request("/neuronova/login", POST, "10.0.0.9", {"transfer-encoding": "chunked"}, {})
    assert not g.allow_request("/neuronova/login", 1, "10.0.0.9", {"content-length": "5"}, {})
    assert g.allow_request("/neuronova/login", POST, "10.0.0.9", {"content-length": "40"}, {})
    g.flush_audit()
    reasons = [r["reason"] for r in audit.query(db, decision="deny")]
    assert reasons == ["request body larger than 8192 bytes",
                       "chunked request body where none or a small one is expected", "request body on a GET request"]
    assert body_refusal(Scope.STOW, "POST", four_gb) == ""  # left to Orthanc's MaximumRequestBodySizeMB
    assert body_refusal(Scope.USER, "POST", {"content-length": str(65 * 1024)}) != ""
    assert body_refusal(Scope.ADMIN, "POST", {"content-length": "-1"}) == "malformed Content-Length"


# -- throttling --------------------------------------------------------------------------

def test_basic_auth_locks_an_address_out_before_any_hash(gate: tuple[Gate, Any]) -> None:
    g, db = gate
    for n in range(3):  # distinct wrong passwords: each one costs a hash
        assert not g.allow_request("/system", 1, "10.0.0.1", basic("admin", f"guess{n}"), {})
    # now even the right password is refused from that address, without a hash
    assert not g.allow_request("/system", 1, "10.0.0.1", basic("admin", "pw"), {})
    assert g.allow_request("/system", 1, "10.0.0.2", basic("admin", "pw"), {})  # other addresses may
    g.flush_audit()
    alerts = [r for r in audit.query(db) if r["event_type"] == "110113"]
    assert any("locked out for 60 s" in r["reason"] and r["ip"] == "10.0.0.1" for r in alerts)
    assert any(r["reason"].startswith("locked out after repeated failed logins") for r in alerts)
    assert 59 <= g.throttle.retry_after("10.0.0.1", "x") <= 60


def test_a_user_is_locked_out_whatever_the_address(gate: tuple[Gate, Any]) -> None:
    g, _ = gate
    for n in range(5):
        assert not g.allow_request("/system", 1, f"10.1.0.{n}", basic("admin", f"guess{n}"), {})
    assert not g.allow_request("/system", 1, "10.1.0.99", basic("admin", "pw"), {})
    with pytest.raises(Throttled):
        g.check_password("admin", "pw", "10.1.0.100")


def test_login_answers_429_with_retry_after(gate: tuple[Gate, Any]) -> None:
    g, db = gate
    api = GateApi(g, db)

    def login(password: str) -> Any:
        return api.login(Request("POST", "/neuronova/login", body=f"username=admin&password={password}".encode(),
                                 ip="10.2.0.1"))

    assert [login(f"guess{n}").status for n in range(3)] == [401, 401, 401]
    locked = login("pw")
    assert locked.status == 429 and 55 <= int(locked.headers["Retry-After"]) <= 61
    assert login("pw").status == 429  # still locked: no hash computed, no session


def test_lockouts_double_and_expire() -> None:
    now = [0.0]
    t = Throttle(ThrottleSettings(max_failures_per_address=2, lockout_seconds=10, max_lockout_seconds=25),
                 clock=lambda: now[0])
    assert [t.failure("a", "u1"), t.failure("a", "u2")] == [0.0, 10.0]
    now[0] = 11.0
    assert t.retry_after("a", "u3") == 0.0
    assert [t.failure("a", "u4"), t.failure("a", "u5")] == [0.0, 20.0]
    now[0] = 32.0
    assert [t.failure("a", "u6"), t.failure("a", "u7")] == [0.0, 25.0]  # capped


def test_throttle_tables_are_bounded() -> None:
    t = Throttle(ThrottleSettings(max_entries=100))
    for n in range(5000):
        t.failure(f"10.{n // 256}.{n % 256}.1", f"user{n}")
    assert t.sizes() == (100, 100)


def test_concurrent_password_checks_are_bounded(gate: tuple[Gate, Any]) -> None:
    g, _ = gate
    slow = Throttle(ThrottleSettings(concurrent_checks=1, check_wait_seconds=0.0))
    g.throttle = slow
    with slow.check_slot(), pytest.raises(Throttled):  # the one slot is taken
        g.check_password("admin", "pw", "10.3.0.1")
    assert g.check_password("admin", "pw", "10.3.0.1")


# -- frames, rendering -------------------------------------------------------------------

def test_frame_lists_are_collapsed_and_bounded() -> None:
    assert frame_list((1,) * 5000) == (1,)
    assert frame_list((2, 1, 2)) == (2, 1)
    assert len(frame_list(tuple(range(1, MAX_FRAMES + 1)) * 3)) == MAX_FRAMES
    for bad in ((), (0,), tuple(range(1, MAX_FRAMES + 2))):
        with pytest.raises(HttpError) as refused:
            frame_list(bad)
        assert refused.value.status == 400
    check_answer_size(MAX_ANSWER_BYTES)
    with pytest.raises(HttpError) as too_big:
        check_answer_size(MAX_ANSWER_BYTES + 1)
    assert too_big.value.status == 413


@pytest.mark.parametrize("query", [
    {"viewport": "60000,60000"}, {"viewport": "0,10"}, {"viewport": "10"}, {"viewport": "10,10,1"},
    {"viewport": "10,10,0,0,99999,10"}, {"window": "40,0"}, {"window": "nan,400"}, {"window": "40,inf"},
    {"window": "40,400,cubic"}, {"window": "1e300,400"}, {"quality": "0"}, {"quality": "101"}, {"quality": "x"},
])
def test_rendering_parameters_are_bounded(query: dict[str, str]) -> None:
    for check in (rendering_query, core_rendering_query):
        with pytest.raises(HttpError) as refused:
            check(query)
        assert refused.value.status == 400


def test_rendering_parameters_in_range_pass_canonical() -> None:
    assert rendering_query({"viewport": "4096,4096", "quality": "100", "annotation": "x"}) == {
        "viewport": "4096,4096", "quality": "100"}
    assert rendering_query({"viewport": "64,64,0,0,-512,512", "window": "-600.5,1500,SIGMOID"}) == {
        "viewport": "64,64,0,0,-512,512", "window": "-600.5,1500,sigmoid"}


# -- metadata cache ----------------------------------------------------------------------

class MetadataHost(FakeHost):
    def __init__(self) -> None:
        super().__init__([FakeStudy("1.1", "P1", {}, {"1.1.1": ["1.1.1.1"]})])
        self.internal: list[str] = []

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        if uri.startswith("/dicom-web-internal/"):
            self.internal.append(uri)
            return b'[{"00080018": {"vr": "UI", "Value": ["1.1.1.1"]}}]'
        return super().rest_get(uri, after_plugins)

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if uri == "/studies/study-1.1":
            return {"LastUpdate": "20261201T000000"}
        return super().rest_get_json(uri, after_plugins)


def test_unknown_query_parameters_do_not_bypass_the_metadata_cache() -> None:
    host = MetadataHost()
    front = DicomWebFront(host, cast(Gate, None))
    for query in ({}, {"x": "1"}, {"x": "2"}, {"includefield": "all"}):
        request = Request("GET", "/dicom-web/studies/1.1/metadata", query=query, headers={"host": "pacs"})
        answer = front.handle(request)
        assert answer.status == 200, answer.body
    assert host.internal == ["/dicom-web-internal/studies/1.1/metadata"]


def test_forwarded_rendering_is_bounded_before_orthanc_sees_it() -> None:
    host = MetadataHost()
    front = DicomWebFront(host, cast(Gate, None))
    path = parse("/studies/1.1/series/1.1.1/instances/1.1.1.1/rendered")
    assert path is not None
    answer = front.handle(Request("GET", "/dicom-web" + path.resource + path.tail,
                                  query={"viewport": "60000,60000"}, headers={"accept": "image/jpeg"}))
    assert answer.status == 400 and host.internal == []


# -- audit -------------------------------------------------------------------------------

def event(n: int, at: float | None = None, decision: str = "allow") -> AuditEvent:
    return AuditEvent(time.time() if at is None else at, "u", "doctor", "127.0.0.1", "GET", "wado-rs", f"/x/{n}",
                      "1.1", decision, "ok", "110103")


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_failing_store_loses_nothing_and_access_fails_closed(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    errors: list[str] = []
    writer = AuditWriter(db, on_error=errors.append, settings=AuditSettings(capacity=1000))
    (tmp_path / "g").mkdir()
    g, _, _ = make_gate(tmp_path / "g", writer=writer)
    audit_events.drop(db.engine)  # the store refuses every write from now on
    house = {"authorization": "Bearer " + jwt.encode(
        {"sub": "h", "exp": int(time.time()) + 60, "realm_access": {"roles": ["admin"]}}, SECRET, algorithm="HS256")}
    writer.record(event(0))
    wait_for(lambda: writer.problem() != "")
    assert "cannot be written" in writer.problem() and writer.health()["status"] == "failing"
    assert not g.allow_request("/dicom-web/studies/1.1/metadata", 1, "127.0.0.1", house, {})
    audit_events.create(db.engine)  # the store is back
    wait_for(lambda: writer.problem() == "")
    assert g.allow_request("/dicom-web/studies/1.1/metadata", 1, "127.0.0.1", house, {})
    writer.close()
    rows = audit.query(db, limit=100)
    assert rows[0]["uri"] == "/x/0"  # retried until written: not dropped after 5 attempts
    assert any(r["reason"] == "audit trail unavailable" for r in rows)
    assert writer.lost == 0 and any("retrying" in e for e in errors)


def test_a_full_queue_does_not_block_and_is_summed_up(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    audit_events.drop(db.engine)
    writer = AuditWriter(db, settings=AuditSettings(capacity=2, enqueue_wait_seconds=0.0))
    accepted = [writer.record(event(n, decision="deny")) for n in range(50)]
    assert not all(accepted) and writer.dropped == accepted.count(False)
    assert "queue is full" in writer.problem() or "cannot be written" in writer.problem()
    audit_events.create(db.engine)
    wait_for(lambda: writer.problem() == "")
    writer.close()
    rows = audit.query(db, limit=100)
    summary = [r for r in rows if r["route"] == "audit"]
    assert summary and summary[0]["reason"] == f"{writer.dropped} audit event(s) not recorded: the audit queue was full"
    assert len(rows) == accepted.count(True) + 1


def test_old_and_excess_events_are_purged(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    writer = AuditWriter(db, settings=AuditSettings(retention_days=30, max_events=20, purge_interval_seconds=3600))
    now = time.time()
    for n in range(10):
        writer.record(event(n, at=now - 40 * 86400))  # older than the retention
    for n in range(10, 40):
        writer.record(event(n, at=now))
    writer.flush()
    assert writer.purge() is True
    writer.close()
    assert [r["uri"] for r in audit.query(db, limit=100)] == [f"/x/{n}" for n in range(20, 40)]
    assert writer.purged == 20


def test_audit_settings_are_checked() -> None:
    assert audit.parse_settings({}).fail_closed is True
    assert audit.parse_settings({"RetentionDays": "7", "MaxEvents": 0}).max_events == 0
    for bad in ({"RetentionDays": -1}, {"QueueCapacity": 0}, {"EnqueueWaitSeconds": 60}):
        with pytest.raises(Exception, match="Audit"):
            audit.parse_settings(bad)


@pytest.mark.parametrize("module", ["neuronova.gate.throttle", "neuronova.gate.bodies"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
