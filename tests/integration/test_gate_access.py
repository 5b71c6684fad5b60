"""Authorization: a matrix of callers against every kind of route, with exact QIDO answers."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.support.dicom_factory import Study, make_study, to_bytes

from .conftest import World

CALLERS = {
    # name: (token kwargs, studies it may see: subset of "abc")
    "admin-token": ({"sub": "pacs-admin", "role": "admin"}, "abc"),
    "doctor-with-grant": ({"sub": "dr.grant", "role": "doctor", "name": "GRANT^CARY"}, "c"),
    "doctor-without": ({"sub": "dr.nobody", "role": "doctor", "name": "NOBODY^NOEL"}, ""),
    "doctor-by-referring-attribute": ({"sub": "dr.house", "role": "doctor", "name": "HOUSE^GREGORY"}, "a"),
    "radiologist-by-reading-attribute": ({"sub": "dr.wilson", "role": "radiologist", "name": "WILSON^JAMES"}, "b"),
    "patient-own": ({"sub": "jane", "role": "patient", "patient_id": "PAT-001"}, "ab"),
    "patient-other": ({"sub": "richard", "role": "patient", "patient_id": "PAT-002"}, "c"),
    "patient-wildcard": ({"sub": "eve", "role": "patient", "patient_id": "PAT-*"}, ""),
    "nurse": ({"sub": "nurse.joy", "role": "nurse"}, ""),
    "lab": ({"sub": "lab.tech", "role": "lab"}, ""),
}


@pytest.fixture(scope="module", autouse=True)
def grant_for_doctor(world: World) -> None:
    answer = requests.post(f"{world.base}/neuronova/studies/{world.c.study_uid}/grants", auth=world.server.admin,
                           json={"subject": "dr.grant", "relation": "reading"}, timeout=10)
    assert answer.status_code == 201, answer.text


def studies(world: World) -> dict[str, Study]:
    return {"a": world.a, "b": world.b, "c": world.c}


def study_routes(study: Study) -> list[str]:
    s, se = study.study_uid, study.series_uids[0]
    i = str(study.instances[0].SOPInstanceUID)
    return [
        f"/dicom-web/studies/{s}",
        f"/dicom-web/studies/{s}/metadata",
        f"/dicom-web/studies/{s}/series",
        f"/dicom-web/studies/{s}/instances",
        f"/dicom-web/studies/{s}/series/{se}",
        f"/dicom-web/studies/{s}/series/{se}/metadata",
        f"/dicom-web/studies/{s}/series/{se}/instances",
        f"/dicom-web/studies/{s}/series/{se}/instances/{i}",
        f"/dicom-web/studies/{s}/series/{se}/instances/{i}/metadata",
        f"/dicom-web/studies/{s}/series/{se}/instances/{i}/frames/1",
        f"/dicom-web/studies/{s}/series/{se}/instances/{i}/rendered",
        f"/wado?requestType=WADO&studyUID={s}&seriesUID={se}&objectUID={i}&contentType=application/dicom",
        f"/wado?requestType=WADO&objectUID={i}&contentType=image/jpeg",
    ]


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_study_scoped_routes(world: World, caller: str) -> None:
    kwargs, allowed = CALLERS[caller]
    token = world.token(**kwargs)
    for key, study in studies(world).items():
        expected = 200 if key in allowed else 403
        for route in study_routes(study):
            answer = world.get(route, token)
            assert answer.status_code == expected, f"{caller} {route}: {answer.status_code} {answer.text[:200]}"
            if expected == 403:
                assert answer.content == b""


def _uids(answer: requests.Response, tag: str = "0020000D") -> set[str]:
    assert answer.status_code == 200, answer.text
    return {item[tag]["Value"][0] for item in answer.json()}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_qido_returns_exactly_the_permitted_studies(world: World, caller: str) -> None:
    kwargs, allowed = CALLERS[caller]
    token = world.token(**kwargs)
    every = studies(world)
    expected = {every[k].study_uid for k in allowed}
    if not allowed and kwargs["role"] in ("nurse", "lab"):
        assert world.get("/dicom-web/studies", token).status_code == 403
        return
    assert _uids(world.get("/dicom-web/studies", token)) == expected
    expected_series = {se for k in allowed for se in every[k].series_uids}
    assert _uids(world.get("/dicom-web/series", token), "0020000E") == expected_series
    expected_sops = {sop for k in allowed for sop in every[k].sop_uids}
    assert _uids(world.get("/dicom-web/instances", token), "00080018") == expected_sops
    # OHIF's prior-study search by PatientID
    for patient in ("PAT-001", "PAT-002"):
        want = {every[k].study_uid for k in allowed if every[k].patient_id == patient}
        assert _uids(world.get(f"/dicom-web/studies?PatientID={patient}", token)) == want
    # Asking for a forbidden study by UID returns nothing, not an error that reveals it.
    for key, study in every.items():
        got = _uids(world.get(f"/dicom-web/studies?StudyInstanceUID={study.study_uid}", token))
        assert got == ({study.study_uid} if key in allowed else set())


def test_limit_and_offset_apply_after_filtering(world: World) -> None:
    token = world.token("jane", "patient", patient_id="PAT-001")
    permitted = {world.a.study_uid, world.b.study_uid}
    first = _uids(world.get("/dicom-web/studies?limit=1", token))
    second = _uids(world.get("/dicom-web/studies?limit=1&offset=1", token))
    assert len(first) == 1 and len(second) == 1 and first | second == permitted
    assert _uids(world.get("/dicom-web/studies?offset=2", token)) == set()
    assert world.get("/dicom-web/studies?limit=-1", token).status_code == 400


def test_hierarchy_cannot_be_spoofed(world: World) -> None:
    """A permitted study in the path does not open another study's series or instance."""
    token = world.token("dr.house", "doctor", name="HOUSE^GREGORY")  # may see A only
    a, c = world.a, world.c
    c_series, c_sop = c.series_uids[0], str(c.instances[0].SOPInstanceUID)
    for route in (
        f"/dicom-web/studies/{a.study_uid}/series/{c_series}/metadata",
        f"/dicom-web/studies/{a.study_uid}/series/{c_series}/instances/{c_sop}/frames/1",
        f"/wado?requestType=WADO&studyUID={a.study_uid}&objectUID={c_sop}&contentType=application/dicom",
        f"/wado?requestType=WADO&objectUID={c_sop}",
        "/wado?requestType=WADO&objectUID=1.2.3.4.5.6.7",
    ):
        assert world.get(route, token).status_code == 403, route


def test_non_admins_cannot_reach_core_explorer_or_admin_routes(world: World) -> None:
    token = world.token("dr.house", "doctor", name="HOUSE^GREGORY")
    a_id = world.admin_get(f"/dicom-web/studies/{world.a.study_uid}/series").status_code  # warm
    assert a_id == 200
    for method, path in (
        ("GET", "/system"), ("GET", "/studies"), ("GET", "/patients"), ("GET", "/instances"),
        ("GET", "/app/explorer.html"), ("GET", "/app/explorer.js"), ("GET", "/jobs"), ("GET", "/modalities"),
        ("GET", "/peers"), ("GET", "/changes"), ("POST", "/tools/find"), ("GET", "/tools/metrics-prometheus"),
        ("GET", "/neuronova/audit"), ("GET", f"/neuronova/studies/{world.a.study_uid}/grants"),
        ("DELETE", f"/dicom-web/studies/{world.a.study_uid}"), ("GET", "/dicom-web/servers"),
        ("GET", "/dicom-web-internal/studies"), ("POST", "/instances"), ("GET", "/DICOM-WEB/studies"),
    ):
        answer = requests.request(method, world.base + path, headers={"Authorization": f"Bearer {token}"},
                                  timeout=10)
        assert answer.status_code in (403, 404), f"{method} {path}: {answer.status_code}"
        assert answer.status_code == 403 or path.startswith("/dicom-web/studies/"), f"{method} {path}"
    # Dot segments sent raw (requests would normalise them away): never an escape.
    for raw in (f"/dicom-web/studies/{world.a.study_uid}/../../../system",
                f"/dicom-web/studies/{world.a.study_uid}/%2e%2e/%2e%2e/%2e%2e/system",
                "/wado/../system", "//system"):
        connection = http.client.HTTPConnection("127.0.0.1", world.server.http_port, timeout=10)
        connection.request("GET", raw, headers={"Authorization": f"Bearer {token}"})
        status = connection.getresponse().status
        connection.close()
        assert status in (400, 403, 404), f"{raw}: {status}"
    # and the admin can
    assert world.admin_get("/dicom-web-internal/studies").status_code == 403  # internal root: nobody
    assert world.admin_get("/tools/metrics-prometheus").status_code == 200


def test_grants_api(world: World) -> None:
    base = f"{world.base}/neuronova/studies/{world.b.study_uid}/grants"
    token = world.token("dr.late", "doctor", name="LATE^LARRY")
    assert world.get(f"/dicom-web/studies/{world.b.study_uid}/metadata", token).status_code == 403
    assert requests.post(base, json={"subject": "dr.late", "relation": "bogus"}, auth=world.server.admin,
                         timeout=10).status_code == 400
    assert requests.post(base, json={"subject": "dr.late", "relation": "ordering"}, auth=world.server.admin,
                         timeout=10).status_code == 201
    assert world.get(f"/dicom-web/studies/{world.b.study_uid}/metadata", token).status_code == 200
    listed = requests.get(base, auth=world.server.admin, timeout=10).json()
    assert {(g["subject"], g["relation"]) for g in listed} == {("dr.late", "ordering")}
    # a doctor cannot grant himself anything
    assert requests.post(base, json={"subject": "dr.late"}, headers={"Authorization": f"Bearer {token}"},
                         timeout=10).status_code == 403
    assert requests.delete(f"{base}/dr.late", auth=world.server.admin, timeout=10).status_code == 200
    assert world.get(f"/dicom-web/studies/{world.b.study_uid}/metadata", token).status_code == 403
    assert requests.delete(f"{base}/dr.late", auth=world.server.admin, timeout=10).status_code == 404


def test_share_links(world: World) -> None:
    doctor = world.token("dr.house", "doctor", name="HOUSE^GREGORY")
    # a doctor may share only what he may see
    refused = requests.post(world.base + "/neuronova/shares", json={"study": world.c.study_uid, "ttl": 600},
                            headers={"Authorization": f"Bearer {doctor}"}, timeout=10)
    assert refused.status_code == 403
    created = requests.post(world.base + "/neuronova/shares", json={"study": world.a.study_uid, "ttl": 600},
                            headers={"Authorization": f"Bearer {doctor}"}, timeout=10)
    assert created.status_code == 201, created.text
    share: dict[str, Any] = created.json()
    assert world.a.study_uid in share["url"] and share["token"] in share["url"]
    token = share["token"]
    assert world.get(f"/dicom-web/studies/{world.a.study_uid}/metadata", token).status_code == 200
    assert _uids(world.get("/dicom-web/studies", token)) == {world.a.study_uid}
    assert world.get(f"/dicom-web/studies/{world.b.study_uid}/metadata", token).status_code == 403
    assert world.get("/system", token).status_code == 403
    # read-only: no STOW with a share link
    assert requests.post(world.base + "/dicom-web/studies", data=b"x",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 403
    # revoke: effective at once
    revoked = requests.delete(f"{world.base}/neuronova/shares/{share['id']}",
                              headers={"Authorization": f"Bearer {doctor}"}, timeout=10)
    assert revoked.status_code == 200
    assert world.get(f"/dicom-web/studies/{world.a.study_uid}/metadata", token).status_code == 403
    assert world.get(f"/dicom-web/studies/{world.a.study_uid}/metadata?token={token}").status_code == 403


def test_stow_rs_by_role(world: World) -> None:
    extra = make_study("CT_small.dcm", patient_id="PAT-003", patient_name="STOW^TEST", slices=2)
    radiologist = world.token("dr.stow", "radiologist", name="STOW^RAD")
    doctor = world.token("dr.house", "doctor", name="HOUSE^GREGORY")
    client = DICOMwebClient(world.base + "/dicom-web", headers={"Authorization": f"Bearer {doctor}"})
    with pytest.raises(requests.HTTPError) as refused:
        client.store_instances(extra.instances)
    assert refused.value.response.status_code == 403
    client = DICOMwebClient(world.base + "/dicom-web", headers={"Authorization": f"Bearer {radiologist}"})
    result = client.store_instances(extra.instances)
    stored = {str(item.ReferencedSOPInstanceUID) for item in result.ReferencedSOPSequence}
    assert all(item.RetrieveURL.endswith(str(item.ReferencedSOPInstanceUID)) for item in result.ReferencedSOPSequence)
    assert stored == set(extra.sop_uids)
    assert world.admin_get(f"/dicom-web/studies/{extra.study_uid}/instances").status_code == 200
    # the radiologist stored it, but may not read it without a grant
    assert world.get(f"/dicom-web/studies/{extra.study_uid}/metadata", radiologist).status_code == 403
    assert to_bytes(extra.instances[0])  # built files are valid Part 10


def test_dicomweb_client_reads_permitted_study(world: World) -> None:
    token = world.token("dr.house", "doctor", name="HOUSE^GREGORY")
    client = DICOMwebClient(world.base + "/dicom-web", headers={"Authorization": f"Bearer {token}"})
    found = client.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in found] == [world.a.study_uid]
    instances = client.retrieve_study(world.a.study_uid)
    assert sorted(str(ds.SOPInstanceUID) for ds in instances) == sorted(world.a.sop_uids)
    metadata = client.retrieve_study_metadata(world.a.study_uid)
    assert len(metadata) == len(world.a.instances)
    frames = client.retrieve_instance_frames(world.a.study_uid, world.a.series_uids[0], world.a.sop_uids[0], [1],
                                             media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),))
    original = world.a.instances[0]
    assert frames[0] == original.PixelData
    # RetrieveURLs point at the public root on the host the client used
    assert all("/dicom-web-internal/" not in str(s) for s in found)
    assert urlsplit(str(found[0]["00081190"]["Value"][0])).path.startswith("/dicom-web/studies/")
    answer = world.get("/dicom-web/studies", token)  # requests sends Host with the port
    assert answer.json()[0]["00081190"]["Value"][0].startswith(world.base + "/dicom-web/studies/")


def test_dicom_network_for_configured_modalities(world: World) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", world.server.dicom_port, ae_title="NEURONOVA")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    found = {str(identifier.StudyInstanceUID) for status, identifier in assoc.send_c_find(
        query, StudyRootQueryRetrieveInformationModelFind) if identifier is not None and status.Status in (0xFF00,
                                                                                                          0xFF01)}
    assoc.release()
    assert {world.a.study_uid, world.b.study_uid, world.c.study_uid} <= found
    # an unknown calling AET may not query
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = stranger.associate("127.0.0.1", world.server.dicom_port, ae_title="NEURONOVA")
    if assoc.is_established:
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        assoc.release()
        assert all(getattr(status, "Status", None) not in (0xFF00, 0xFF01) for status, _ in responses)
        assert all(identifier is None for _, identifier in responses)


def test_c_move_for_configured_modalities_and_no_c_get(world: World) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        MRImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = world.a.study_uid
    # C-GET is refused by default (Orthanc cannot audit it): nothing comes back
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for storage in (MRImageStorage, CTImageStorage):
        ae.add_requested_context(storage)
    roles = [build_role(MRImageStorage, scp_role=True), build_role(CTImageStorage, scp_role=True)]
    assoc = ae.associate("127.0.0.1", world.server.dicom_port, ae_title="NEURONOVA", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if assoc.is_established:
        statuses = [int(s.Status) for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                    if "Status" in s]
        assoc.release()
        assert not statuses or statuses[-1] != 0x0000
    assert received == []
    # C-MOVE to the modality's own listener (configured host and port)
    received.clear()
    scp = AE(ae_title="TESTSCU")
    for storage in (MRImageStorage, CTImageStorage):
        scp.add_supported_context(storage)
    server = scp.start_server(("127.0.0.1", world.scu_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        mover = AE(ae_title="TESTSCU")
        mover.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = mover.associate("127.0.0.1", world.server.dicom_port, ae_title="NEURONOVA")
        assert assoc.is_established
        statuses = [int(s.Status) for s, _ in assoc.send_c_move(query, "TESTSCU",
                                                                  StudyRootQueryRetrieveInformationModelMove)]
        assoc.release()
    finally:
        server.shutdown()
    assert statuses[-1] == 0x0000 and sorted(received) == sorted(world.a.sop_uids)


def test_qido_with_encoded_values_and_lists(world: World) -> None:
    """Clients percent-encode query values (OHIF sends includefield=a%2Cb); the answer must be
    the same as for the literal values."""
    token = world.token("jane", "patient", patient_id="PAT-001")
    both = f"{world.a.study_uid},{world.b.study_uid}"
    for query in (f"StudyInstanceUID={both}", f"StudyInstanceUID={quote(both, safe='')}",
                  "PatientName=DOE%5EJANE", "PatientName=DOE%5E%2A", "PatientName=DOE^*"):
        assert _uids(world.get(f"/dicom-web/studies?{query}", token)) == {world.a.study_uid, world.b.study_uid}, query
    assert _uids(world.get("/dicom-web/studies?StudyDescription=Brain%20MR", token)) == {world.a.study_uid}
    assert _uids(world.get("/dicom-web/studies?StudyDescription=Brain%20M*", token)) == {world.a.study_uid}
    answer = world.get("/dicom-web/studies?includefield=00081030%2C00080061", token)
    assert all("00081030" in item for item in answer.json())
    admin = world.admin_get("/dicom-web/studies?PatientName=ROE%5ERICHARD")
    assert _uids(admin) == {world.c.study_uid}
