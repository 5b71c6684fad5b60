"""Permitted-study search beyond one DICOM value: a doctor granted more study UIDs than fit in
the ~64 KiB the DICOMweb plugin takes as one StudyInstanceUID list gets every permitted study,
paged (``limit``/``offset``) and ordered exactly as Orthanc's own DICOMweb answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    data: Path = tmp_path_factory.mktemp("scale")
    server = start_orthanc(data, env={"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "scale-admin"},
                           overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}})
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


def _orthanc(server: OrthancServer, params: dict[str, Any]) -> list[str]:
    """Orthanc's own answer (an admin's search goes to the DICOMweb plugin unchanged), kept to
    the permitted studies."""
    allowed = set(PERMITTED)
    everything = _uids(requests.get(server.base + "/dicom-web/studies", params=params, auth=server.admin,
                                    timeout=60))
    return [u for u in everything if u in allowed]


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


def test_a_study_arriving_for_a_grant_is_found_by_the_next_search(server: OrthancServer) -> None:
    before = _doctor(server, {"limit": 2000})
    assert ABSENT[0] not in before
    assert upload(server.base, [tiny_instance(ABSENT[0], "PAT-LATE")], auth=server.admin) == 1
    after = _doctor(server, {"limit": 2000})
    assert sorted(after) == sorted([*before, ABSENT[0]])
    assert after == [u for u in _uids(requests.get(server.base + "/dicom-web/studies", auth=server.admin,
                                                   timeout=60)) if u in set(after)]


@pytest.mark.parametrize("level", ["series", "instances"])
def test_series_and_instance_searches_are_exact_pages(server: OrthancServer, level: str) -> None:
    token = jwt.encode({"sub": "dr.scale", "exp": int(time.time()) + 600, "realm_access": {"roles": ["doctor"]}},
                       SECRET, algorithm="HS256")
    tag = "0020000E" if level == "series" else "00080018"

    def uids(answer: requests.Response) -> list[str]:
        assert answer.status_code == 200, answer.text
        return [item[tag]["Value"][0] for item in answer.json()]

    allowed = set(PERMITTED) | set(ABSENT)  # every granted UID (one of ABSENT may have arrived)
    everything = requests.get(f"{server.base}/dicom-web/{level}", auth=server.admin, timeout=60,
                              params={"includefield": "0020000D"}).json()
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
    after = _orthanc(server, {})
    assert gone not in after and len(after) == len(before) - 1
    deadline = time.monotonic() + 10  # Orthanc reports deletions to the plugin asynchronously
    while _doctor(server, {"offset": 10, "limit": 50}) != after[10:60] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _doctor(server, {"offset": 10, "limit": 50}) == after[10:60]
