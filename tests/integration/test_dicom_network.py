"""The DICOM network (issue 9.5): per-modality permissions from NEURONOVA_MODALITIES (Orthanc's
extended DicomModalities form), C-STORE, C-FIND and C-MOVE audited, C-GET refused (Orthanc
cannot audit it), nothing for unknown peers, the DICOM port on loopback, with pynetdicom
against a real Orthanc."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.support.dicom_factory import Study, make_study
from tests.support.orthanc_server import OrthancServer, free_port, start_orthanc

from .conftest import c_store

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "dicom network admin password"
SECRET = "dicom-network-jwt-secret-0123456789abcdef"
CALLED = "NEURONOVA"
OK = 0x0000


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancServer, int, Study]]:
    full_port = free_port()
    modalities = {
        "full": {"AET": "NNFULL", "Host": "127.0.0.1", "Port": full_port, "AllowEcho": True, "AllowStore": True,
                 "AllowFind": True, "AllowMove": True},
        "store": {"AET": "NNSTORE", "Host": "127.0.0.1", "Port": free_port(), "AllowStore": True},
        "find": {"AET": "NNFIND", "Host": "127.0.0.1", "Port": free_port(), "AllowEcho": True, "AllowFind": True},
    }
    server = start_orthanc(tmp_path_factory.mktemp("dicom-network"), env={
        "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD, "NEURONOVA_JWT_SECRET": SECRET,
        "NEURONOVA_MODALITIES": json.dumps(modalities),
    })
    try:
        study = make_study("MR_small.dcm", patient_id="NET-001", patient_name="NET^WORK", slices=2)
        assert c_store(server.dicom_port, study, aet="NNSTORE") == [OK, OK]
        yield server, full_port, study
    finally:
        server.stop()


def _echo(server: OrthancServer, aet: str) -> int | None:
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=CALLED)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def _store(server: OrthancServer, aet: str, study: Study) -> list[int | None]:
    """C-STORE statuses; None where the instance got no status (refused association or context)."""
    ae = AE(ae_title=aet)
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=CALLED)
    if not assoc.is_established:
        return [None for _ in study.instances]
    statuses: list[int | None] = []
    try:
        for ds in study.instances:
            try:
                answer = assoc.send_c_store(ds)
            except (RuntimeError, ValueError):
                statuses.append(None)
                continue
            statuses.append(int(answer.Status) if "Status" in answer else None)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses

def _study_query(study: Study) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study.study_uid
    return query



def _find(server: OrthancServer, aet: str, study: Study) -> set[str]:
    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=CALLED)
    if not assoc.is_established:
        return set()
    query = _study_query(study)
    query.PatientID = ""
    try:
        return {str(identifier.StudyInstanceUID) for status, identifier in
                assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                if identifier is not None and status.Status in (0xFF00, 0xFF01)}
    finally:
        assoc.release()


def _get(server: OrthancServer, aet: str, study: Study) -> tuple[list[int], list[str]]:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return OK

    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for storage in (MRImageStorage, CTImageStorage):
        ae.add_requested_context(storage)
    roles = [build_role(MRImageStorage, scp_role=True), build_role(CTImageStorage, scp_role=True)]
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=CALLED, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        return [], received
    query = _study_query(study)
    try:
        statuses = [int(s.Status) for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                    if "Status" in s]
    finally:
        assoc.release()
    return statuses, received


def _move(server: OrthancServer, aet: str, destination: str, port: int, study: Study) -> tuple[list[int], list[str]]:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return OK

    scp = AE(ae_title=destination)
    for storage in (MRImageStorage, CTImageStorage):
        scp.add_supported_context(storage)
    listener = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        mover = AE(ae_title=aet)
        mover.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = mover.associate("127.0.0.1", server.dicom_port, ae_title=CALLED)
        if not assoc.is_established:
            return [], received
        query = _study_query(study)
        try:
            statuses = [int(s.Status) for s, _ in assoc.send_c_move(
                query, destination, StudyRootQueryRetrieveInformationModelMove) if "Status" in s]
        finally:
            assoc.release()
    finally:
        listener.shutdown()
    return statuses, received


def _outgoing(server: OrthancServer, study: Study) -> list[dict[str, Any]]:
    audit = requests.get(server.base + "/neuronova/audit", params={"study": study.study_uid},
                         auth=server.admin, timeout=30).json()
    return [row for row in audit if row["route"] == "dicom/outgoing"]


def test_c_echo_per_modality(network: tuple[OrthancServer, int, Study]) -> None:
    server, _port, _study = network
    assert _echo(server, "NNFULL") == OK
    assert _echo(server, "NNFIND") == OK
    assert _echo(server, "NNSTORE") != OK  # AllowEcho left out: refused
    assert _echo(server, "STRANGER") != OK  # without remote access, nothing for unknown peers


def test_c_store_per_modality_and_audited(network: tuple[OrthancServer, int, Study]) -> None:
    server, _port, study = network
    other = make_study("MR_small.dcm", patient_id="NET-002", patient_name="NET^REFUSED", slices=1)
    assert _store(server, "NNFIND", other) != [OK]  # AllowStore left out: refused
    assert _store(server, "STRANGER", other) != [OK]
    found = requests.post(server.base + "/tools/find", auth=server.admin, timeout=30,
                          data=json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": other.study_uid}}))
    assert found.status_code == 200 and found.json() == []
    audit = requests.get(server.base + "/neuronova/audit", params={"study": study.study_uid},
                         auth=server.admin, timeout=30).json()
    stores = [row for row in audit if row["method"] == "C-STORE"]
    assert sorted(str(row["uri"]).rsplit("/", 1)[-1] for row in stores) == sorted(study.sop_uids)
    assert all(row["user"] == "NNSTORE" and row["ip"] == "127.0.0.1" and row["event_type"] == "110104"
               for row in stores)
    assert all(CALLED in str(row["uri"]) for row in stores)


def test_c_find_per_modality(network: tuple[OrthancServer, int, Study]) -> None:
    server, _port, study = network
    assert _find(server, "NNFIND", study) == {study.study_uid}
    assert _find(server, "NNFULL", study) == {study.study_uid}
    assert _find(server, "NNSTORE", study) == set()
    assert _find(server, "STRANGER", study) == set()
    # each C-FIND Orthanc answered is an audit event: level, keys, calling AET and IP, the study
    audit = requests.get(server.base + "/neuronova/audit", params={"study": study.study_uid},
                         auth=server.admin, timeout=30).json()
    finds = [row for row in audit if row["method"] == "C-FIND"]
    assert sorted(row["user"] for row in finds) == ["NNFIND", "NNFULL"]
    assert all(row["ip"] == "127.0.0.1" and row["event_type"] == "110112" and row["route"] == "dicom/c-find"
               for row in finds)
    assert all(f"dicom://{CALLED}/STUDY?" in row["uri"] and "0010,0020" in row["uri"] for row in finds)
    # the route that takes these events is not open to HTTP callers, admins included
    forged = requests.post(server.base + "/neuronova/dicom/c-find", auth=server.admin, timeout=30,
                           data=json.dumps({"query": {"0020,000d": study.study_uid}, "origin": {"RemoteAet": "X"}}))
    assert forged.status_code == 403


def test_c_get_refused_c_move_per_modality_and_audited(network: tuple[OrthancServer, int, Study]) -> None:
    server, full_port, study = network
    # C-GET: Orthanc tells no plugin what its C-GET SCP sends, so C-GET is refused by default
    statuses, received = _get(server, "NNFULL", study)
    assert received == [] and (not statuses or statuses[-1] != OK)
    statuses, received = _move(server, "NNFULL", "NNFULL", full_port, study)
    assert statuses[-1] == OK and sorted(received) == sorted(study.sop_uids)
    # the C-MOVE request itself: who asked (AET, IP), which study, to which AET, how many
    audit = requests.get(server.base + "/neuronova/audit", params={"study": study.study_uid},
                         auth=server.admin, timeout=30).json()
    moves = [row for row in audit if row["route"] == "dicom/c-move"]
    assert len(moves) == 1 and moves[0]["decision"] == "allow" and moves[0]["method"] == "C-MOVE"
    assert moves[0]["user"] == "NNFULL" and moves[0]["ip"] == "127.0.0.1"
    assert "to AET NNFULL" in moves[0]["reason"] and f"{len(study.sop_uids)} instance(s)" in moves[0]["reason"]
    # and each instance it sent: the study, the instance, the destination AET
    sent = _outgoing(server, study)
    assert sorted(str(r["uri"]).rsplit("/", 1)[-1] for r in sent) == sorted(study.sop_uids)
    assert all(r["user"] == "NNFULL" and r["ip"] == "127.0.0.1" and r["method"] == "C-STORE"
               and r["event_type"] == "110104" for r in sent)
    # AllowMove left out: Orthanc refuses before the plugin is asked
    statuses, received = _move(server, "NNFIND", "NNFULL", full_port, study)
    assert received == [] and (not statuses or statuses[-1] != OK)
    # an unknown destination is refused, and the refusal is audited with who asked
    statuses, received = _move(server, "NNFULL", "NOSUCHAET", free_port(), study)
    assert received == [] and (not statuses or statuses[-1] != OK)
    denied = requests.get(server.base + "/neuronova/audit", params={"decision": "deny"},
                          auth=server.admin, timeout=30).json()
    assert any(r["route"] == "dicom/c-move" and r["user"] == "NNFULL" and "NOSUCHAET" in r["reason"]
               for r in denied)


def _listening(port: int) -> set[str]:
    """The local addresses of TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    addresses: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = open(table, encoding="ascii").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port and len(address) == width:
                addresses.add(address)
    return addresses


def test_dicom_port_listens_on_loopback_only(network: tuple[OrthancServer, int, Study]) -> None:
    server, _port, _study = network
    # 0100007F is 127.0.0.1 as /proc/net/tcp writes it; nothing on the wildcard address
    assert _listening(server.dicom_port) == {"0100007F"}


def test_orthanc_runs_with_nagle_off_for_dicom(network: tuple[OrthancServer, int, Study]) -> None:
    """DCMTK disables Nagle's algorithm on its sockets only when TCP_NODELAY says so; without
    it each C-STORE response waits for the peer's delayed ACK (docs/runtime-facts.md)."""
    server, _port, _study = network
    with open(f"/proc/{server.process.pid}/cmdline", "rb") as file:
        assert b"Orthanc" in file.read().split(b"\0")[0]  # the PID is Orthanc's (the launchers exec)
    with open(f"/proc/{server.process.pid}/environ", "rb") as file:
        assert b"TCP_NODELAY=1" in file.read().split(b"\0")
