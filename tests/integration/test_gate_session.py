"""The admin session against a real Orthanc: cookie writes prove same-origin, logout ends
the session on the server, handler audit rows carry the client address, search rows the
query, the login redirect stays local, and a deleted series forgets its old study."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
import requests
from pydicom.uid import generate_uid

from tests.support.dicom_factory import make_study, to_bytes

from .conftest import ADMIN_PASSWORD, World

pytestmark = pytest.mark.integration
SESSION = "neuronova_session"


def login(world: World) -> requests.Session:
    session = requests.Session()
    answer = session.post(world.base + "/neuronova/login", data={"username": "admin", "password": ADMIN_PASSWORD},
                          timeout=10)
    assert answer.status_code == 200 and SESSION in session.cookies
    return session


def audit_rows(world: World, **query: str) -> list[dict[str, Any]]:
    answer = requests.get(world.base + "/neuronova/audit", params={"limit": "100000", **query},
                          auth=world.server.admin, timeout=10)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


FIND = b'{"Level": "Study", "Query": {"PatientID": "NOBODY"}}'


def test_cookie_writes_must_come_from_our_own_pages(world: World) -> None:
    session = login(world)
    assert session.post(world.base + "/tools/find", data=FIND, timeout=10).status_code == 403  # neither header
    foreign = session.post(world.base + "/tools/find", data=FIND, headers={"Origin": "https://evil.example"},
                           timeout=10)
    assert foreign.status_code == 403
    referer = session.post(world.base + "/tools/find", data=FIND,
                           headers={"Referer": "https://evil.example/app/explorer.html"}, timeout=10)
    assert referer.status_code == 403
    # What Orthanc Explorer sends (a browser's same-origin XHR): Origin, or at least Referer.
    own = session.post(world.base + "/tools/find", data=FIND, headers={"Origin": world.base}, timeout=10)
    assert own.status_code == 200 and own.json() == []
    own = session.post(world.base + "/tools/find", data=FIND,
                       headers={"Referer": world.base + "/app/explorer.html#find-patients"}, timeout=10)
    assert own.status_code == 200
    assert session.get(world.base + "/system", timeout=10).status_code == 200  # reads need no proof
    # Basic auth is no cookie: a script needs no Origin.
    assert requests.post(world.base + "/tools/find", data=FIND, auth=world.server.admin, timeout=10).status_code == 200
    denials = [r for r in audit_rows(world, user="admin", decision="deny") if "session cookie write" in r["reason"]]
    assert {r["ip"] for r in denials} == {"127.0.0.1"} and len(denials) >= 3
    assert any("evil.example" in r["reason"] for r in denials)


def test_logout_ends_the_session_on_the_server(world: World) -> None:
    session = login(world)
    cookie = session.cookies[SESSION]
    assert session.get(world.base + "/system", timeout=10).status_code == 200
    # a foreign page cannot log the administrator out; a bare GET gets a button to post it
    foreign = session.post(world.base + "/neuronova/logout", headers={"Origin": "https://evil.example"}, timeout=10)
    assert foreign.status_code == 403
    bare = session.get(world.base + "/neuronova/logout", timeout=10)
    assert bare.status_code == 200 and 'method="post" action="/neuronova/logout"' in bare.text
    assert session.get(world.base + "/system", timeout=10).status_code == 200  # still signed in
    answer = session.get(world.base + "/neuronova/logout", headers={"Referer": world.base + "/app/explorer.html"},
                         timeout=10)
    assert answer.status_code == 200
    # The old cookie, replayed (the browser cleared it; a thief would not): refused.
    replay = requests.get(world.base + "/system", cookies={SESSION: cookie}, timeout=10)
    assert replay.status_code == 403
    logout_rows = [r for r in audit_rows(world, user="admin") if r["route"] == "logout"]
    assert logout_rows and logout_rows[-1]["decision"] == "allow" and logout_rows[-1]["ip"] == "127.0.0.1"
    assert any(r["decision"] == "deny" and "evil.example" in r["reason"] for r in logout_rows)


def test_rows_written_by_handlers_carry_the_client_address(world: World) -> None:
    token = world.token("dr.house.ip", "doctor", name="HOUSE^GREGORY")
    answer = requests.post(world.base + "/neuronova/shares", json={"study": world.a.study_uid, "ttl": 600},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    rows = [r for r in audit_rows(world, user="dr.house.ip") if r["route"] == "shares"]
    assert rows and rows[0]["ip"] == "127.0.0.1"


def test_search_rows_carry_the_query(world: World) -> None:
    token = world.token("dr.search", "doctor", name="HOUSE^GREGORY")
    answer = world.get("/dicom-web/studies?PatientID=PAT-001&limit=7", token)
    assert answer.status_code == 200
    rows = [r for r in audit_rows(world, user="dr.search") if r["route"] == "qido-rs/studies"]
    assert rows and "PatientID=PAT-001" in rows[0]["uri"] and "limit=7" in rows[0]["uri"]
    query_token = requests.get(world.base + "/dicom-web/studies", params={"token": token, "PatientID": "PAT-001"},
                               timeout=10)
    assert query_token.status_code == 200
    assert all(token not in r["uri"] for r in audit_rows(world, user="dr.search"))


def test_login_redirect_stays_local(world: World) -> None:
    for target in ("/\t/evil.example", "//evil.example", "https://evil.example"):
        answer = requests.post(world.base + "/neuronova/login", params={"next": target},
                               data={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10)
        assert answer.status_code == 200
        refresh = re.search(r'content="0;url=([^"]*)"', answer.text)
        assert refresh is not None and refresh.group(1) == "/app/explorer.html", target


def test_a_series_moved_to_another_study_is_not_readable_through_the_old_one(world: World) -> None:
    # Two series, so that the old study stays when one of them goes.
    old = make_study("MR_small.dcm", patient_id="PAT-MOVE", patient_name="MOVE^ME", slices=1, series=2)
    for blob in old.files():
        assert requests.post(world.base + "/instances", data=blob, auth=world.server.admin, timeout=30).ok
    grant = requests.post(world.base + f"/neuronova/studies/{old.study_uid}/grants",
                          json={"subject": "dr.move", "relation": "reading"}, auth=world.server.admin, timeout=10)
    assert grant.status_code == 201, grant.text
    token = world.token("dr.move", "doctor")
    sop = old.sop_uids[0]
    # WADO-URI names only the instance: the gate finds its study (and caches it).
    wado = f"/wado?requestType=WADO&objectUID={sop}&contentType=application/dicom"
    assert world.get(wado, token).status_code == 200
    # The series is deleted, then stored again under a study the doctor may not see.
    found = requests.post(world.base + "/tools/lookup", data=old.series_uids[0], auth=world.server.admin, timeout=10)
    series_id = next(item["ID"] for item in found.json() if item["Type"] == "Series")
    assert requests.delete(world.base + f"/series/{series_id}", auth=world.server.admin, timeout=10).ok
    moved = copy.deepcopy(old.instances[0])
    moved.StudyInstanceUID = generate_uid()
    assert requests.post(world.base + "/instances", data=to_bytes(moved), auth=world.server.admin, timeout=30).ok
    # Orthanc hands the DELETED change to the plugin on its change thread: allow it a moment.
    statuses = []
    for _ in range(50):
        statuses.append(world.get(wado, token).status_code)
        if statuses[-1] != 200:
            break
        time.sleep(0.2)
    assert statuses[-1] == 403, statuses
    assert world.get(f"/dicom-web/studies/{old.study_uid}/series/{old.series_uids[0]}/metadata",
                     token).status_code in (403, 404)
