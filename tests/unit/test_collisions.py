"""Patient collisions (gate/collisions.py): detected on arrival, quarantined, hidden, resolved."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from neuronova import audit
from neuronova.audit import AuditWriter
from neuronova.gate import Gate
from neuronova.gate.collisions import QUARANTINED, RELEASED, CollisionGuard
from neuronova.store import Database, open_database
from tests.support.dicom_factory import to_bytes

from .fakes import FakeHost, FakeStudy
from .gate_fixtures import ORDERING_MATCH, bearer, gate_settings_for_tests

GET = 1


class IndexHost(FakeHost):
    """FakeHost whose /tools/find answers carry the PatientID, and whose "DICOM files" are JSON."""

    def parse_dicom(self, dicom: bytes) -> dict[str, Any] | None:
        try:
            parsed = json.loads(dicom)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        self._check()
        assert uri == "/tools/find"
        query = json.loads(body)["Query"]
        found = [s for s in self.studies.values() if s.uid == query.get("StudyInstanceUID")]
        return json.dumps([{"MainDicomTags": {"StudyInstanceUID": s.uid},
                            "PatientMainDicomTags": {"PatientID": s.patient_id}} for s in found]).encode()


def instance(study: str, patient: str, sop: str = "9.9.9.1") -> bytes:
    return json.dumps({"0020,000d": study, "0010,0020": patient, "0008,0018": sop, "0020,000e": study + ".1"}).encode()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[CollisionGuard, Gate, IndexHost, Database, AuditWriter]]:
    host = IndexHost([
        FakeStudy("1.1", "P1", {"ReferringPhysicianName": "HOUSE^GREGORY"}, {"1.1.1": ["1.1.1.1"]}),
    ])
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    settings = gate_settings_for_tests(ORDERING_MATCH)
    gate = Gate(settings, host, db, writer)
    guard = CollisionGuard(host, db, gate)
    gate.hidden_studies = guard.hidden_studies
    yield guard, gate, host, db, writer
    writer.close()




def gate_allows(_guard: CollisionGuard, gate: Gate, uri: str, headers: dict[str, str]) -> bool:
    return gate.allow_request(uri, GET, "127.0.0.1", headers, {})


def test_an_instance_of_another_patient_is_quarantined_and_audited(world: Any) -> None:
    guard, gate, _host, db, writer = world
    assert guard.check(instance("1.1", "P1"), "REST_API") is None  # same patient: no collision
    assert guard.hidden_studies() == frozenset()
    found = guard.check(instance("1.1", "P9"), "DICOM_PROTOCOL")
    assert found is not None and found.status == QUARANTINED
    assert (found.study_uid, found.patient_id, found.existing_patient_ids) == ("1.1", "P9", ("P1",))
    assert guard.hidden_studies() == frozenset({"1.1"})
    # the next instance of the intruder collides too, and the record survives a restart
    assert guard.check(instance("1.1", "P9", "9.9.9.2"), "DICOM_PROTOCOL") is not None
    assert CollisionGuard(_host, db, gate).hidden_studies() == frozenset({"1.1"})
    assert len(guard.list(QUARANTINED)) == 2
    writer.flush()
    alerts = [r for r in audit.query(db, study="1.1") if r["route"] == "collision"]
    assert len(alerts) == 2 and all(r["event_type"] == "110113" and r["decision"] == "deny" for r in alerts)


def test_two_new_patients_on_one_new_study_collide_before_either_is_indexed(world: Any) -> None:
    guard = world[0]
    assert guard.check(instance("7.7", "P5"), "DICOM_PROTOCOL") is None  # Orthanc has not stored it yet
    assert guard.check(instance("7.7", "P6"), "DICOM_PROTOCOL") is not None


def test_a_real_dicom_file_is_checked_from_its_bytes(world: Any) -> None:
    """Plain files are read by header_tags (this host's parse_dicom cannot parse DICOM at all)."""
    guard = world[0]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.PatientID = "1.1", "P9"
    found = guard.check(to_bytes(ds), "REST_API")
    assert found is not None and (found.sop_uid, found.series_uid) == (ds.SOPInstanceUID, ds.SeriesInstanceUID)
    assert found.existing_patient_ids == ("P1",)
    ds.PatientID = "P1"
    assert guard.check(to_bytes(ds), "REST_API") is None


def test_not_dicom_or_no_study_is_left_to_orthanc(world: Any) -> None:
    guard = world[0]
    assert guard.check(b"not dicom", "REST_API") is None
    assert guard.check(json.dumps({"0010,0020": "P9"}).encode(), "REST_API") is None


def test_study_reads_of_a_quarantined_study_are_denied_to_non_admins_only(world: Any) -> None:
    guard, gate, _host, _db, _writer = world
    doctor = bearer("doctor", name="HOUSE^GREGORY")
    uri = "/dicom-web/studies/1.1/metadata"
    assert gate_allows(guard, gate, uri, doctor)
    guard.check(instance("1.1", "P9"), "DICOM_PROTOCOL")
    assert not gate_allows(guard, gate, uri, doctor)
    assert not gate_allows(guard, gate, "/dicom-web/studies/1.1/series/1.1.1/instances/1.1.1.1", doctor)
    assert gate_allows(guard, gate, uri, bearer("admin"))
    # searches are not refused: the DICOMweb front leaves the study out of their answers
    assert gate_allows(guard, gate, "/dicom-web/studies", doctor)


def test_release_shows_the_study_again(world: Any) -> None:
    guard, gate, _host, _db, _writer = world
    found = guard.check(instance("1.1", "P9"), "DICOM_PROTOCOL")
    assert found is not None
    released = guard.resolve(found, RELEASED, "admin")
    assert released.status == RELEASED and released.resolved_by == "admin" and released.resolved_at
    assert guard.hidden_studies() == frozenset()
    assert gate_allows(guard, gate, "/dicom-web/studies/1.1/metadata", bearer("doctor", name="HOUSE^GREGORY"))


def test_an_instance_that_cannot_be_checked_is_quarantined(world: Any) -> None:
    guard, _gate, host, _db, _writer = world
    host.fail = True  # Orthanc's index cannot be read
    found = guard.check(instance("5.5", "P5"), "REST_API")
    assert found is not None and found.existing_patient_ids == ("(index lookup failed)",)
    assert guard.hidden_studies() == frozenset({"5.5"})


class SlowIndexHost(IndexHost):
    """IndexHost whose index read of one study (``held``) answers only once ``release`` is
    set: a first instance whose read is slow (a busy PostgreSQL index connection)."""

    def __init__(self, held: str, *args: Any) -> None:
        super().__init__(*args)
        self.held = held
        self.reading = threading.Event()
        self.release = threading.Event()

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        answer = super().rest_post(uri, body, after_plugins)  # the index as it was when read
        if json.loads(body)["Query"].get("StudyInstanceUID") == self.held:
            self.reading.set()
            assert self.release.wait(10), "the held read was never released"
        return answer


def _guard_on(host: IndexHost, tmp_path: Path) -> tuple[CollisionGuard, AuditWriter]:
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    return CollisionGuard(host, db, Gate(gate_settings_for_tests(ORDERING_MATCH), host, db, writer)), writer


def test_a_slow_index_read_does_not_hold_up_instances_of_other_studies(tmp_path: Path) -> None:
    host = SlowIndexHost("7.7", [])
    guard, writer = _guard_on(host, tmp_path)
    try:
        slow = threading.Thread(target=guard.check, args=(instance("7.7", "P7"), "REST_API"))
        slow.start()
        assert host.reading.wait(10)
        other = threading.Thread(target=guard.check, args=(instance("8.8", "P8"), "REST_API"))
        other.start()
        other.join(5)
        finished_meanwhile = not other.is_alive()
        host.release.set()
        slow.join(10)
        other.join(10)
        assert finished_meanwhile  # it did not wait for the read of study 7.7
    finally:
        host.release.set()
        writer.close()


def test_two_patients_arriving_together_on_a_slow_study_still_collide(tmp_path: Path) -> None:
    host = SlowIndexHost("7.7", [])
    guard, writer = _guard_on(host, tmp_path)
    try:
        results: list[Any] = []
        first = threading.Thread(target=lambda: results.append(guard.check(instance("7.7", "P1"), "REST_API")))
        first.start()
        assert host.reading.wait(10)
        second = threading.Thread(
            target=lambda: results.append(guard.check(instance("7.7", "P2", sop="9.9.9.2"), "REST_API")))
        second.start()
        host.release.set()
        first.join(10)
        second.join(10)
        assert results[0] is None and results[1] is not None  # the second waited for the first
        assert results[1].existing_patient_ids == ("P1",)
        assert guard.hidden_studies() == frozenset({"7.7"})
    finally:
        host.release.set()
        writer.close()


def test_an_index_read_made_before_a_deletion_is_not_kept(tmp_path: Path) -> None:
    host = SlowIndexHost("7.7", [FakeStudy("7.7", "P1", {}, {"7.7.1": ["7.7.1.1"]})])
    guard, writer = _guard_on(host, tmp_path)
    try:
        reader = threading.Thread(target=guard.check, args=(instance("7.7", "P1"), "REST_API"))
        reader.start()
        assert host.reading.wait(10)
        host.studies.clear()  # the study is deleted while its owners are being read ...
        guard.forget()  # ... and Orthanc reports the deletion
        host.release.set()
        reader.join(10)
        host.held = ""
        # P1's study is gone: another patient's instance of that UID is a new study, no collision
        assert guard.check(instance("7.7", "P2", sop="9.9.9.2"), "REST_API") is None
    finally:
        host.release.set()
        writer.close()


def test_a_quarantine_during_a_reload_of_the_hidden_set_is_not_lost(world: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    guard, _gate, _host, _db, _writer = world
    assert guard.check(instance("1.1", "P1"), "REST_API") is None
    load = guard._load_hidden
    recorded = threading.Thread(target=guard.check, args=(instance("1.1", "P9"), "DICOM_PROTOCOL"))

    def slow_load() -> frozenset[str]:
        stale = load()  # read before the quarantine below writes its row
        recorded.start()
        recorded.join(timeout=0.5)  # it waits for the reload to end (else: done meanwhile)
        return stale

    monkeypatch.setattr(guard, "_load_hidden", slow_load)
    monkeypatch.setattr(guard, "_hidden_read_at", 0.0)  # due for its periodic re-read
    guard.hidden_studies()
    recorded.join(timeout=10)
    monkeypatch.setattr(guard, "_load_hidden", load)
    assert guard.hidden_studies() == frozenset({"1.1"})
