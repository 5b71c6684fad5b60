"""The search order's table in the plugin store (gate/study_ids.py) with a real Orthanc: the
first search after a restart is exact and ordered from the table, arrivals and deletions
(study and patient level) reach it, and an emptied table is backfilled from Orthanc."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from sqlalchemy import Engine, create_engine, delete, select, update

from neuronova.store.schema import study_ids, study_ids_backfill
from tests.support.orthanc_server import start_orthanc
from tests.support.tiny_studies import tiny_instance, upload
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "order-secret-0123456789abcdefghijklmnopqr"
ENV = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "order-admin"}
OVERLAY: dict[str, Any] = {"NeuroNova": {"Htj2k": {"Enabled": False}}}
STORED = [f"1.2.777.{n}" for n in range(60)]
GRANTED = STORED[:50] + [f"1.2.778.{n}" for n in range(10)]  # 10 granted UIDs not stored


class Node:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.server = start_orthanc(data, env=ENV, overlay=OVERLAY)
        self.engine: Engine = create_engine(f"sqlite:///{data / 'neuronova' / 'neuronova.sqlite'}")

    def restart(self, before_start: Any = None) -> None:
        self.server.stop()
        if before_start is not None:
            before_start(self.engine)
        self.server = start_orthanc(self.data, env=ENV, overlay=OVERLAY)
        wait_for(lambda: self.health()["search_order"]["backfill"] == "done", timeout=60, what="backfill")

    def health(self) -> Any:
        return requests.get(self.server.base + "/neuronova/health", timeout=30).json()

    def rows(self) -> dict[str, str]:
        """StudyInstanceUID -> Orthanc id, as the table holds them."""
        with self.engine.connect() as connection:
            return {r.study_uid: r.orthanc_id for r in connection.execute(select(study_ids))}

    def doctor(self, **params: Any) -> list[str]:
        token = jwt.encode({"sub": "dr.order", "exp": int(time.time()) + 600, "realm_access": {"roles": ["doctor"]}},
                           SECRET, algorithm="HS256")
        answer = requests.get(self.server.base + "/dicom-web/studies", params=params, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return [item["0020000D"]["Value"][0] for item in answer.json()]

    def orthanc(self) -> list[str]:
        """Orthanc's own answer (an admin's search is the DICOMweb plugin's), kept to the granted studies."""
        answer = requests.get(self.server.base + "/dicom-web/studies", auth=self.server.admin, timeout=60)
        granted = set(GRANTED)
        return [item["0020000D"]["Value"][0] for item in answer.json() if item["0020000D"]["Value"][0] in granted]

    def store(self, uid: str, patient: str) -> None:
        assert upload(self.server.base, [tiny_instance(uid, patient)], auth=self.server.admin) == 1

    def study_id(self, uid: str) -> str:
        found = requests.post(self.server.base + "/tools/lookup", data=uid, auth=self.server.admin, timeout=30).json()
        return str(next(f["ID"] for f in found if f["Type"] == "Study"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("order"))
    try:
        blobs = [tiny_instance(uid, f"PAT-{n % 5}") for n, uid in enumerate(STORED)]
        assert upload(node.server.base, blobs, auth=node.server.admin) == len(STORED)
        for uid in GRANTED:
            answer = requests.post(f"{node.server.base}/neuronova/studies/{uid}/grants", auth=node.server.admin,
                                   json={"subject": "dr.order", "relation": "reading"}, timeout=30)
            assert answer.status_code == 201, answer.text
        wait_for(lambda: set(node.rows()) >= set(STORED), timeout=30, what="rows of the stored studies")
        node.restart()
        yield node
    finally:
        node.server.stop()
        node.engine.dispose()


def test_the_first_search_after_a_restart_is_exact(node: Node) -> None:
    expected = node.orthanc()
    assert sorted(expected) == sorted(STORED[:50])
    assert node.doctor(limit=25) == expected[:25]
    assert node.doctor(limit=25, offset=40) == expected[40:]
    assert node.doctor() == expected


def test_the_rows_are_orthanc_ids(node: Node) -> None:
    rows = node.rows()
    for uid in STORED[:5]:
        assert rows[uid] == node.study_id(uid)


def test_a_study_stored_after_the_start_is_recorded_and_found(node: Node) -> None:
    late = GRANTED[50]
    assert late not in node.doctor()
    node.store(late, "PAT-LATE")
    wait_for(lambda: late in node.rows(), timeout=30, what="the row of the new study")
    assert node.rows()[late] == node.study_id(late)
    assert node.doctor() == node.orthanc() and late in node.doctor()


def test_deleted_studies_and_patients_leave_the_table_and_the_search(node: Node) -> None:
    gone = STORED[3]
    requests.delete(f"{node.server.base}/studies/{node.study_id(gone)}", auth=node.server.admin,
                    timeout=30).raise_for_status()
    wait_for(lambda: gone not in node.rows(), timeout=30, what="the deleted study's row to go")
    assert gone not in node.doctor() and node.doctor() == node.orthanc()
    # A patient deleted: Orthanc reports each of its studies deleted too.
    patient = requests.get(f"{node.server.base}/studies/{node.study_id(STORED[4])}/patient", auth=node.server.admin,
                           timeout=30).json()
    of_patient = [uid for n, uid in enumerate(STORED) if n % 5 == 4]
    requests.delete(f"{node.server.base}/patients/{patient['ID']}", auth=node.server.admin,
                    timeout=30).raise_for_status()
    wait_for(lambda: not set(of_patient) & set(node.rows()), timeout=30, what="the patient's rows to go")
    found = node.doctor()
    assert not set(of_patient) & set(found) and found == node.orthanc()


def test_an_emptied_table_is_backfilled_from_orthanc(node: Node) -> None:
    before = node.rows()

    def empty(engine: Engine) -> None:
        with engine.begin() as connection:
            connection.execute(delete(study_ids))
            connection.execute(delete(study_ids_backfill))

    node.restart(empty)
    assert node.rows() == before
    assert node.doctor() == node.orthanc()


def test_the_order_is_read_from_the_table(node: Node) -> None:
    """Probe: a row altered while Orthanc is stopped moves its study to the front of the order
    (nothing else would: Orthanc itself is not asked about studies the table knows)."""
    expected = node.orthanc()
    last = expected[-1]

    def move_first(engine: Engine) -> None:
        with engine.begin() as connection:
            connection.execute(update(study_ids).where(study_ids.c.study_uid == last).values(orthanc_id="0" * 40))

    node.restart(move_first)
    assert node.doctor(limit=1) == [last] != expected[:1]
