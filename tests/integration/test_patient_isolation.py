"""Patients never mix (issue 9.4): an instance reusing another patient's StudyInstanceUID is
stored, quarantined, audited, hidden from non-admins, and resolved by an admin."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.support.dicom_factory import Study, make_study

from .conftest import World, c_store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_world_as_found(world: World) -> Iterator[None]:
    """The session's world is shared: the studies made here are deleted afterwards."""
    before = set(_studies(world))
    yield
    for study in set(_studies(world)) - before:
        requests.delete(f"{world.base}/studies/{study}", auth=world.server.admin, timeout=30)


def _studies(world: World) -> list[str]:
    answer = world.admin_get("/studies")
    assert answer.status_code == 200
    return list(answer.json())


def _collision(world: World, physician: str) -> tuple[Study, Study, str]:
    """A victim's study uploaded by an admin, and an intruder's instances under the same UID."""
    tag = uuid.uuid4().hex[:8]
    victim = make_study("CT_small.dcm", patient_id=f"VIC-{tag}", patient_name="VICTIM^VERA", slices=2,
                        referring=physician)
    intruder = make_study("MR_small.dcm", patient_id=f"INT-{tag}", patient_name="INTRUDER^IGOR", slices=2)
    for ds in intruder.instances:
        ds.StudyInstanceUID = victim.study_uid
    intruder.study_uid = victim.study_uid
    for blob in victim.files():
        answer = requests.post(world.base + "/instances", data=blob, auth=world.server.admin, timeout=30)
        assert answer.status_code == 200, answer.text
    return victim, intruder, tag


def _quarantined(world: World, study: str) -> list[dict[str, object]]:
    answer = world.admin_get("/neuronova/quarantine", params={"status": "quarantined"})
    assert answer.status_code == 200, answer.text
    return [item for item in answer.json() if item["study_uid"] == study]


def _instances_of(world: World, study: str) -> list[str]:
    answer = requests.post(world.base + "/tools/find", auth=world.server.admin, timeout=30,
                           data=json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study}}))
    assert answer.status_code == 200
    return list(answer.json())


def test_a_broken_modality_cannot_show_one_patient_to_another(world: World) -> None:
    victim, intruder, tag = _collision(world, "CHASE^ROBERT")
    uid = victim.study_uid
    assert c_store(world.server.dicom_port, intruder) == [0, 0]  # Orthanc stores it: nothing is lost
    assert len(_instances_of(world, uid)) == 4

    intruder_patient = world.token("igor", "patient", patient_id=f"INT-{tag}")
    victim_patient = world.token("vera", "patient", patient_id=f"VIC-{tag}")
    doctor = world.token("dr.chase", "doctor", name="CHASE^ROBERT")
    for token in (intruder_patient, victim_patient, doctor):
        for level in ("/studies", "/series", "/instances"):
            found = world.get(f"/dicom-web{level}", token, params={"StudyInstanceUID": uid})
            assert found.status_code == 200
            assert "VICTIM" not in found.text and "INTRUDER" not in found.text and uid not in found.text, level
        for path in (f"/dicom-web/studies/{uid}/metadata", f"/dicom-web/studies/{uid}/series"):
            assert world.get(path, token).status_code == 403
    # admins see everything (two study entries: Orthanc filed the UID under both patients), and
    # the admin API lists the quarantined instances
    both = world.admin_get("/dicom-web/studies", params={"StudyInstanceUID": uid}).json()
    assert sorted(str(e["00100020"]["Value"][0]) for e in both) == [f"INT-{tag}", f"VIC-{tag}"]
    entries = _quarantined(world, uid)
    assert sorted(str(e["sop_uid"]) for e in entries) == sorted(intruder.sop_uids)
    assert all(e["patient_id"] == f"INT-{tag}" and e["existing_patient_ids"] == [f"VIC-{tag}"] for e in entries)
    assert all(e["origin"] == "DICOM_PROTOCOL" for e in entries)
    assert world.get("/neuronova/quarantine", doctor).status_code == 403
    # each arrival is a security alert in the audit trail
    audit = world.admin_get("/neuronova/audit", params={"study": uid}).json()
    alerts = [row for row in audit if row["route"] == "collision"]
    assert len(alerts) == 2 and all(row["event_type"] == "110113" for row in alerts)

    # the admin deletes the intruder's instances: the victim's study is whole and visible again
    for entry in entries:
        answer = requests.post(f"{world.base}/neuronova/quarantine/{entry['id']}/delete", auth=world.server.admin,
                               timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "deleted", answer.text
    again = requests.post(f"{world.base}/neuronova/quarantine/{entries[0]['id']}/delete", auth=world.server.admin,
                          timeout=30)
    assert again.status_code == 409
    assert len(_instances_of(world, uid)) == 2
    metadata = world.get(f"/dicom-web/studies/{uid}/metadata", doctor)
    assert metadata.status_code == 200 and "INTRUDER" not in metadata.text and len(metadata.json()) == 2
    assert uid in world.get("/dicom-web/studies", victim_patient).text
    assert uid not in world.get("/dicom-web/studies", intruder_patient).text


def test_a_stow_by_an_allowed_role_is_quarantined_then_released(world: World) -> None:
    victim, intruder, _tag = _collision(world, "FOREMAN^ERIC")
    uid = victim.study_uid
    radiologist = world.token("dr.stow", "radiologist", name="STOW^RAD")
    client = DICOMwebClient(world.base + "/dicom-web", headers={"Authorization": f"Bearer {radiologist}"})
    client.store_instances(intruder.instances[:1])
    entries = _quarantined(world, uid)
    assert len(entries) == 1 and entries[0]["origin"] != "DICOM_PROTOCOL"
    doctor = world.token("dr.foreman", "doctor", name="FOREMAN^ERIC")
    assert world.get(f"/dicom-web/studies/{uid}/metadata", doctor).status_code == 403
    assert requests.post(f"{world.base}/neuronova/quarantine/{entries[0]['id']}/release",
                         headers={"Authorization": f"Bearer {doctor}"}, timeout=30).status_code == 403
    released = requests.post(f"{world.base}/neuronova/quarantine/{entries[0]['id']}/release",
                             auth=world.server.admin, timeout=30)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert _quarantined(world, uid) == []
    # released or not, one search answer never carries two patients: the study entry is left out
    found = world.get("/dicom-web/studies", doctor, params={"StudyInstanceUID": uid})
    assert found.status_code == 200 and "INTRUDER" not in found.text and "VICTIM" not in found.text
