"""The gate's decisions over a fake Host (pure logic; the real thing is in tests/integration)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neuronova import audit
from neuronova.audit import AuditWriter
from neuronova.gate import Gate
from neuronova.store import open_database

from .fakes import FakeHost, FakeStudy
from .gate_fixtures import ORDERING_MATCH, READING_MATCH, bearer, gate_settings_for_tests

GET = 1


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[Gate, FakeHost, Any]]:
    host = FakeHost([
        FakeStudy("1.1", "P1", {"ReferringPhysicianName": "HOUSE^GREGORY"}, {"1.1.1": ["1.1.1.1"]}),
        FakeStudy("2.2", "P1", {"NameOfPhysiciansReadingStudy": "WILSON^JAMES\\CUDDY^LISA"}, {"2.2.1": ["2.2.1.1"]}),
        FakeStudy("3.3", "P2", {}, {"3.3.1": ["3.3.1.1"]}),
    ])
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    settings = gate_settings_for_tests(ORDERING_MATCH, READING_MATCH)
    yield Gate(settings, host, db, writer), host, db
    writer.close()




def allowed(gate: Gate, uri: str, headers: dict[str, str], query: dict[str, str] | None = None) -> bool:
    return gate.allow_request(uri, GET, "127.0.0.1", headers, query or {})


def test_attribute_matches_and_patient_rules(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, _, _ = gate
    house = bearer("doctor", name="house^gregory")  # person names compare case-insensitively
    cuddy = bearer("radiologist", name="CUDDY^LISA")  # one of several reading physicians
    patient = bearer("patient", patient_id="P1")
    assert allowed(g, "/dicom-web/studies/1.1/metadata", house)
    assert not allowed(g, "/dicom-web/studies/2.2/metadata", house)
    assert allowed(g, "/dicom-web/studies/2.2/metadata", cuddy)
    assert allowed(g, "/dicom-web/studies/1.1/metadata", patient)
    assert allowed(g, "/dicom-web/studies/2.2/metadata", patient)
    assert not allowed(g, "/dicom-web/studies/3.3/metadata", patient)
    assert not allowed(g, "/dicom-web/studies/9.9/metadata", house)  # unknown looks like forbidden
    identity = g.authenticate(patient, {}, "GET")
    assert identity is not None and g.visibility(identity).studies == {"1.1", "2.2"}


def test_grants_take_effect_at_once(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, _, _ = gate
    doctor = bearer("doctor", sub="dr.grant")
    assert not allowed(g, "/dicom-web/studies/3.3/series", doctor)
    g.grants.add("3.3", "dr.grant", "reading", "admin")
    assert allowed(g, "/dicom-web/studies/3.3/series", doctor)
    g.grants.remove("3.3", "dr.grant")
    assert not allowed(g, "/dicom-web/studies/3.3/series", doctor)


def test_hierarchy_is_checked(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, _, _ = gate
    house = bearer("doctor", name="HOUSE^GREGORY")
    assert allowed(g, "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1/frames/1", house)
    assert not allowed(g, "/dicom-web/studies/1.1/series/3.3.1/instances/3.3.1.1/frames/1", house)
    assert allowed(g, "/wado", house, {"objectUID": "1.1.1.1"})
    assert not allowed(g, "/wado", house, {"studyUID": "1.1", "objectUID": "3.3.1.1"})
    assert not allowed(g, "/wado", house, {"studyUID": "1.1"})


def test_an_exception_inside_the_gate_denies_and_is_audited(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, host, db = gate
    admin = bearer("admin")
    house = bearer("doctor", name="HOUSE^GREGORY")
    host.fail = True
    assert not allowed(g, "/dicom-web/studies/1.1/metadata", house)
    assert allowed(g, "/system", admin)  # admins need no study facts
    g.flush_audit()
    rows = audit.query(db, decision="deny")
    assert rows[-1]["reason"] == "gate error: RuntimeError" and rows[-1]["event_type"] == "110113"
    assert any("denied GET /dicom-web/studies/1.1/metadata" in line for line in host.logs)


ADMIN_BASIC = {"authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}


def count_password_checks(g: Gate, seconds: float = 0.0) -> list[str]:
    """Record (and optionally slow down, as a real scrypt is slow) every password check."""
    checks: list[str] = []
    check_password = g.check_password

    def counting(user: str, password: str, ip: str = "") -> bool:
        checks.append(user)
        time.sleep(seconds)
        return check_password(user, password, ip)

    g.check_password = counting  # type: ignore[method-assign]
    return checks


def test_credentials_are_cached_and_basic_auth_is_verified_once(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, _, _ = gate
    basic = ADMIN_BASIC
    checks = count_password_checks(g)
    for _ in range(200):
        assert allowed(g, "/system", basic)
    assert checks == ["admin"]  # one scrypt, then the cached identity
    tokens = bearer("doctor")
    verify = g.verifier.verify
    verified: list[str] = []
    g.verifier.verify = lambda token: verified.append(token) or verify(token)  # type: ignore[method-assign]
    for _ in range(50):
        allowed(g, "/dicom-web/studies", tokens)
    assert len(verified) == 1
    wrong = {"authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    assert not allowed(g, "/system", wrong)
    assert not allowed(g, "/system", {"authorization": "Digest abc"})
    assert not allowed(g, "/system", {"authorization": "Basic !!!"})


def test_share_identity_is_bound_to_one_study_and_revocable(gate: tuple[Gate, FakeHost, Any]) -> None:
    g, _, _ = gate
    share, token = g.shares.create("1.1", "dr.house", 600)
    headers = {"authorization": f"Bearer {token}"}
    assert allowed(g, "/dicom-web/studies/1.1/metadata", headers)
    assert not allowed(g, "/dicom-web/studies/2.2/metadata", headers)
    assert not allowed(g, "/system", headers)
    assert not g.allow_request("/dicom-web/studies", 2, "127.0.0.1", headers, {})  # read-only
    identity = g.authenticate(headers, {}, "GET")
    assert identity is not None and g.visibility(identity).studies == {"1.1"}
    g.shares.revoke(share.id)
    assert not allowed(g, "/dicom-web/studies/1.1/metadata", headers)
    assert not allowed(g, "/neuronova/me", headers)


def test_parallel_first_requests_with_one_credential_are_verified_once(gate: tuple[Gate, FakeHost, Any]) -> None:
    """Four upload connections opened at once with the same basic credentials: one scrypt,
    and no connection refused as "busy" while it runs (a slow check stands for the scrypt)."""
    import threading

    g, _, _ = gate
    basic = ADMIN_BASIC
    checks = count_password_checks(g, seconds=0.6)  # longer than the wait for the password-check slot
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(allowed(g, "/instances", basic))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [True] * 4 and checks == ["admin"]
