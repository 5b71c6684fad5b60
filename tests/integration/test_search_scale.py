"""Permitted-study search beyond one DICOM value: a doctor granted more study UIDs than fit in
the ~64 KiB the DICOMweb plugin takes as one StudyInstanceUID list gets every permitted study,
paged (``limit``/``offset``) and ordered exactly as Orthanc's own DICOMweb answers.

Every test runs on Orthanc's SQLite index and on its PostgreSQL index (plugin 5.0, a real
server: tests/support/databases.py). The gate answers in ascending Orthanc identifier on both
(dicomweb/search.py computes it without asking Orthanc). That is Orthanc's own order on SQLite
only: on PostgreSQL Orthanc answers in the order the resources were stored (measured here), so
there the gate's answers are compared with Orthanc's answer set, in the gate's order."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from sqlalchemy import URL, create_engine, text

from neuronova.dicomweb.search import ORDER_TAGS, answer_id
from tests.support.databases import PASSWORD, create_databases, node_env, start_postgres
from tests.support.orthanc_server import OrthancServer, start_orthanc
from tests.support.tiny_studies import long_uid, tiny_instance, upload

pytestmark = pytest.mark.integration

SECRET = "scale-secret-0123456789abcdefghijklmnopqr"
STORED = 300  # studies in the index; the doctor may see 240 of them
ABSENT_GRANTS = 1200  # granted UIDs not (yet) stored: together over 90 KiB of UIDs
# The granted stored studies sort after the absent ones (a list cut at 64 KiB loses them).
PERMITTED = [long_uid("1.2.999", n) for n in range(STORED) if n % 5]
OTHERS = [long_uid("1.2.999", n) for n in range(STORED) if not n % 5]
ABSENT = [long_uid("1.2.111", n) for n in range(ABSENT_GRANTS)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    data: Path = tmp_path_factory.mktemp("scale")
    env = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "scale-admin"}
    database = start_postgres() if request.param == "postgresql" else None
    try:
        if database is not None:
            create_databases(database, "orthanc", "neuronova")
            env.update(node_env(database, "orthanc", "neuronova"))
        yield from _loaded(start_orthanc(data, env=env, overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}},
                                         timeout=120))
    finally:
        if database is not None:
            database.stop()


def _loaded(server: OrthancServer) -> Iterator[OrthancServer]:
    try:
        blobs = [tiny_instance(uid, f"PAT-{n % 7}", modality="CT" if n % 2 else "MR")
                 for n, uid in enumerate(PERMITTED + OTHERS)]
        assert upload(server.base, blobs, auth=server.admin) == STORED
        session = requests.Session()

        def grant(uid: str) -> None:
            answer = session.post(f"{server.base}/neuronova/studies/{uid}/grants", auth=server.admin,
                                  json={"subject": "dr.scale", "relation": "reading"}, timeout=30)
            assert answer.status_code == 201, answer.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(grant, ABSENT + PERMITTED))
        yield server
    finally:
        server.stop()


def _uids(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["0020000D"]["Value"][0] for item in answer.json()]


def _doctor(server: OrthancServer, params: dict[str, Any]) -> list[str]:
    token = jwt.encode({"sub": "dr.scale", "exp": int(time.time()) + 600, "realm_access": {"roles": ["doctor"]}},
                       SECRET, algorithm="HS256")
    return _uids(requests.get(server.base + "/dicom-web/studies", params=params, timeout=60,
                              headers={"Authorization": f"Bearer {token}"}))


def _postgresql_index(server: OrthancServer) -> dict[str, Any] | None:
    """The PostgreSQL section scripts/run rendered for this node (None: SQLite index)."""
    rendered: dict[str, Any] = json.loads((server.data_dir / "orthanc.json").read_text())
    return rendered.get("PostgreSQL")


def _in_gate_order(server: OrthancServer, answer: list[dict[str, Any]], level: str) -> list[dict[str, Any]]:
    """Orthanc's answer as the gate orders it: unchanged on SQLite (the same order), sorted by
    Orthanc identifier on PostgreSQL (test_orthanc_answer_order says why)."""
    if _postgresql_index(server) is None:
        return answer
    return sorted(answer, key=lambda item: answer_id(item, level))


def _orthanc(server: OrthancServer, params: dict[str, Any]) -> list[str]:
    """Orthanc's own answer (an admin's search goes to the DICOMweb plugin unchanged), kept to
    the permitted studies, in the gate's order."""
    allowed = set(PERMITTED)
    answer = requests.get(server.base + "/dicom-web/studies", auth=server.admin, timeout=60,
                          params={**params, "includefield": ",".join(ORDER_TAGS["/studies"])})
    _uids(answer)
    return [u for u in _uids_of(_in_gate_order(server, answer.json(), "/studies")) if u in allowed]


def _uids_of(answer: list[dict[str, Any]]) -> list[str]:
    return [item["0020000D"]["Value"][0] for item in answer]


@pytest.mark.parametrize("level", ["/studies", "/series", "/instances"])
def test_orthanc_answer_order(server: OrthancServer, level: str) -> None:
    """Orthanc's own QIDO answer (an admin's), unpaged: ascending Orthanc identifier of the
    resource at the searched level on SQLite (what dicomweb/search.py reproduces); on
    PostgreSQL (plugin 5.0) the order the resources were stored in (their internalId)."""
    answer = requests.get(server.base + "/dicom-web" + level, params={"includefield": ",".join(ORDER_TAGS[level])},
                          auth=server.admin, timeout=60)
    assert answer.status_code == 200, answer.text
    ids = [answer_id(item, level) for item in answer.json()]
    assert len(ids) >= STORED
    index = _postgresql_index(server)
    if index is None:
        assert ids == sorted(ids)
        return
    url = URL.create("postgresql+psycopg", username=index["Username"], password=PASSWORD, host=index["Host"],
                     port=index["Port"], database=index["Database"])
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            stored = [str(r[0]) for r in connection.execute(
                text("SELECT publicId FROM Resources WHERE resourceType = :t ORDER BY internalId"),
                {"t": {"/studies": 1, "/series": 2, "/instances": 3}[level]})]
    finally:
        engine.dispose()
    assert ids == stored
    assert ids != sorted(ids)  # not the gate's order: the gate's answers are compared by set here


@pytest.mark.parametrize("params", [{}, {"ModalitiesInStudy": "CT"}, {"PatientID": "PAT-3"}],
                         ids=["all", "modality", "patient"])
def test_every_permitted_study_in_orthanc_order(server: OrthancServer, params: dict[str, Any]) -> None:
    expected = _orthanc(server, params)
    assert expected and len(expected) <= len(PERMITTED)
    got = _doctor(server, {**params, "limit": 2000})
    assert got == expected
    if not params:
        assert sorted(got) == sorted(PERMITTED)


@pytest.mark.parametrize(("offset", "limit"), [(0, 25), (37, 50), (200, 100), (239, 5), (240, 5)])
def test_pages_are_slices_of_the_complete_answer(server: OrthancServer, offset: int, limit: int) -> None:
    complete = _orthanc(server, {})
    assert _doctor(server, {"offset": offset, "limit": limit}) == complete[offset:offset + limit]
    modality = _orthanc(server, {"ModalitiesInStudy": "MR"})
    assert _doctor(server, {"ModalitiesInStudy": "MR", "offset": offset // 2, "limit": limit}) == \
        modality[offset // 2:offset // 2 + limit]


def test_an_explicit_study_list_is_intersected_with_the_permitted_set(server: OrthancServer) -> None:
    asked = PERMITTED[:3] + OTHERS[:3]
    got = _doctor(server, {"StudyInstanceUID": ",".join(asked)})
    assert sorted(got) == sorted(PERMITTED[:3])


def test_a_study_arriving_for_a_grant_is_found_once_orthanc_reports_it(server: OrthancServer) -> None:
    before = _doctor(server, {"limit": 2000})
    assert ABSENT[0] not in before
    assert upload(server.base, [tiny_instance(ABSENT[0], "PAT-LATE")], auth=server.admin) == 1
    # The node's cached answers go stale when Orthanc reports the new study, asynchronously
    # (dicomweb/front.py note_change): on PostgreSQL that took longer than the next request.
    deadline = time.monotonic() + 10
    while ABSENT[0] not in (after := _doctor(server, {"limit": 2000})) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(after) == sorted([*before, ABSENT[0]])
    everything = requests.get(server.base + "/dicom-web/studies", auth=server.admin, timeout=60,
                              params={"includefield": ",".join(ORDER_TAGS["/studies"])}).json()
    assert after == [u for u in _uids_of(_in_gate_order(server, everything, "/studies")) if u in set(after)]


@pytest.mark.parametrize("level", ["series", "instances"])
def test_series_and_instance_searches_are_exact_pages(server: OrthancServer, level: str) -> None:
    token = jwt.encode({"sub": "dr.scale", "exp": int(time.time()) + 600, "realm_access": {"roles": ["doctor"]}},
                       SECRET, algorithm="HS256")
    tag = "0020000E" if level == "series" else "00080018"

    def uids(answer: requests.Response) -> list[str]:
        assert answer.status_code == 200, answer.text
        return [item[tag]["Value"][0] for item in answer.json()]

    allowed = set(PERMITTED) | set(ABSENT)  # every granted UID (one of ABSENT may have arrived)
    everything = _in_gate_order(server, requests.get(
        f"{server.base}/dicom-web/{level}", auth=server.admin, timeout=60,
        params={"includefield": ",".join(ORDER_TAGS[f"/{level}"])}).json(), f"/{level}")
    complete = [item[tag]["Value"][0] for item in everything if item["0020000D"]["Value"][0] in allowed]
    assert len(complete) >= len(PERMITTED)
    got = uids(requests.get(f"{server.base}/dicom-web/{level}", params={"offset": 30, "limit": 100}, timeout=60,
                            headers={"Authorization": f"Bearer {token}"}))
    assert got == complete[30:130]


def test_pages_stay_exact_when_a_permitted_study_loses_its_last_instance(server: OrthancServer) -> None:
    before = _orthanc(server, {})
    assert _doctor(server, {"offset": 10, "limit": 50}) == before[10:60]  # the order is cached now
    gone = before[5]
    study = requests.post(server.base + "/tools/lookup", data=gone, auth=server.admin, timeout=30).json()[0]["ID"]
    instances = requests.get(f"{server.base}/studies/{study}/instances", auth=server.admin, timeout=30).json()
    for instance in instances:
        requests.delete(f"{server.base}/instances/{instance['ID']}", auth=server.admin,
                        timeout=30).raise_for_status()
    # Orthanc reports deletions to the plugin asynchronously, and the node's QIDO answers
    # (an admin's too) are cached until it has (dicomweb/front.py); slower on PostgreSQL.
    deadline = time.monotonic() + 10
    while gone in (after := _orthanc(server, {})) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone not in after and len(after) == len(before) - 1
    while _doctor(server, {"offset": 10, "limit": 50}) != after[10:60] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _doctor(server, {"offset": 10, "limit": 50}) == after[10:60]
