"""Audit: decisions are recorded with who, what, where, why, and a PS3.15 event type."""

from __future__ import annotations

import time

import requests

from .conftest import World


def test_decisions_are_audited(world: World) -> None:
    since = time.time() - 1
    doctor = world.token("dr.audit", "doctor", name="HOUSE^GREGORY")
    allowed_route = f"/dicom-web/studies/{world.a.study_uid}/metadata"
    denied_route = f"/dicom-web/studies/{world.c.study_uid}/metadata"
    assert world.get(allowed_route, doctor).status_code == 200
    assert world.get(denied_route, doctor).status_code == 403
    assert world.get("/system", doctor).status_code == 403
    assert world.get("/dicom-web/studies", doctor).status_code == 200
    assert world.get("/system", "garbage").status_code == 403

    rows = world.admin_get(f"/neuronova/audit?user=dr.audit&since={since}").json()
    by_route = {(r["uri"], r["decision"]): r for r in rows}
    ok = by_route[(allowed_route, "allow")]
    assert ok["study_uid"] == world.a.study_uid and ok["event_type"] == "110103" and ok["role"] == "doctor"
    assert ok["ip"] == "127.0.0.1" and ok["method"] == "GET" and ok["time"].endswith("Z")
    no = by_route[(denied_route, "deny")]
    assert no["study_uid"] == world.c.study_uid and no["event_type"] == "110113" and no["reason"]
    assert by_route[("/system", "deny")]["reason"] == "admin-only route"
    assert by_route[("/dicom-web/studies", "allow")]["event_type"] == "110112"
    anonymous = world.admin_get(f"/neuronova/audit?decision=deny&since={since}").json()
    assert any(r["uri"] == "/system" and r["user"] == "" and r["event_type"] == "110114" for r in anonymous)

    only_study = world.admin_get(f"/neuronova/audit?study={world.c.study_uid}&since={since}").json()
    assert only_study and all(r["study_uid"] == world.c.study_uid for r in only_study)
    page = world.admin_get(f"/neuronova/audit?user=dr.audit&since={since}&limit=2&offset=1").json()
    assert [r["id"] for r in page] == [r["id"] for r in rows[1:3]]
    lines = world.admin_get(f"/neuronova/audit?user=dr.audit&since={since}&format=jsonl")
    assert lines.headers["Content-Type"].startswith("application/x-ndjson")
    assert len(lines.text.strip().splitlines()) == len(rows)
    assert world.admin_get("/neuronova/audit?since=yesterday").status_code == 400
    assert requests.get(world.base + "/neuronova/audit", timeout=10).status_code == 403
