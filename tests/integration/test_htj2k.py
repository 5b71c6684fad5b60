"""HTJ2K renditions through a real Orthanc with the gate: ingest by C-STORE and STOW-RS,
frames and instances negotiated by Accept, originals untouched, failures harmless, backfill."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openjpeg
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from neuronova.multipart import parse as parse_multipart
from tests.support.dicom_factory import Study, make_study, to_bytes
from tests.support.orthanc_server import OrthancServer, free_port, orthanc_pid, start_orthanc
from tests.support.waiting import wait_for

from .conftest import c_store

SECRET = "htj2k-integration-secret-0123456789abcdef"
HTJ2K = "1.2.840.10008.1.2.4.202"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ANY_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
LE_FRAMES = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'


@dataclass
class Ingested:
    server: OrthancServer
    files: dict[str, bytes]  # SOP Instance UID -> bytes sent
    studies: dict[str, Study]

    def admin_get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.server.base + path, auth=self.server.admin, timeout=60, **kwargs)

    def instance_id(self, sop_uid: str) -> str:
        found = requests.post(self.server.base + "/tools/lookup", data=sop_uid, auth=self.server.admin, timeout=10)
        return str(found.json()[0]["ID"])


def from_file(name: str, patient: str) -> Study:
    """One instance from a pydicom test file, with fresh UIDs so it is a study of its own."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient
    return Study(ds.StudyInstanceUID, patient, [ds.SeriesInstanceUID], [ds])


def corrupt_instance() -> Dataset:
    """A CT whose Pixel Data is shorter than its attributes say: Orthanc stores it, no codec can encode it."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    return ds


def wait_idle(server: OrthancServer, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin, timeout=10).json()
        if stats["queued"] == 0 and stats["with_rendition"] + stats["failed"] + stats["skipped"] >= stats["instances"]:
            return dict(stats)
        time.sleep(0.2)
    raise AssertionError(f"renditions not done in {timeout} s: {stats}")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    scu_port = free_port()
    server = start_orthanc(tmp_path_factory.mktemp("htj2k"), env={
        "NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "htj2k-admin",
        "NEURONOVA_MODALITIES": f'{{"TESTSCU": ["TESTSCU", "127.0.0.1", {scu_port}]}}',
    })
    studies = {
        "ct": make_study("CT_small.dcm", patient_id="H-1", patient_name="HT^CT", slices=3),
        "multiframe": from_file("emri_small.dcm", "H-2"),  # 10 frames, native
        "j2k": from_file("JPEG2000.dcm", "H-3"),  # JPEG 2000 original
        "rle": from_file("MR_small_RLE.dcm", "H-4"),
        "ybr": from_file("SC_rgb_dcmtk_+eb+cy+np.dcm", "H-5"),  # YBR_FULL_422: not encodable by design
        "corrupt": Study("", "H-6", [], [corrupt_instance()]),
    }
    studies["corrupt"].study_uid = str(studies["corrupt"].instances[0].StudyInstanceUID)
    try:
        files: dict[str, bytes] = {}
        for study in studies.values():
            for ds in study.instances:
                files[str(ds.SOPInstanceUID)] = to_bytes(ds)
        # ingest paths: C-STORE, STOW-RS and REST
        assert c_store(server.dicom_port, studies["ct"]) == [0, 0, 0]
        stow = DICOMwebClient(server.base + "/dicom-web", headers={
            "Authorization": requests.auth._basic_auth_str(*server.admin)})  # type: ignore[attr-defined]
        stow.store_instances(studies["multiframe"].instances + studies["rle"].instances)
        for key in ("j2k", "ybr", "corrupt"):
            for ds in studies[key].instances:
                answer = requests.post(server.base + "/instances", data=files[str(ds.SOPInstanceUID)],
                                       auth=server.admin, timeout=30)
                assert answer.status_code == 200, answer.text
        wait_idle(server)
        yield Ingested(server, files, studies)
    finally:
        server.stop()


def frames(ing: Ingested, study: Study, numbers: str, accept: str, index: int = 0) -> requests.Response:
    ds = study.instances[index]
    path = (f"/dicom-web/studies/{study.study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            f"/frames/{numbers}")
    return ing.admin_get(path, headers={"Accept": accept})


def test_every_encodable_instance_has_a_verified_rendition(ingested: Ingested) -> None:
    stats = ingested.admin_get("/neuronova/htj2k/stats").json()
    assert stats["with_rendition"] == 3 + 1 + 1 + 1  # ct x3, multiframe, j2k, rle
    assert stats["skipped"] == 2 and stats["failed"] == 0  # YBR_FULL_422 by design, the corrupt one
    assert stats["compression_ratio"] > 1.2
    # the encoders read the originals from Orthanc's storage folder themselves (size and MD5 checked)
    assert stats["originals_read"] == {"storage": 3 + 1 + 1 + 1 + 2, "rest": 0}
    corrupt_uid = str(ingested.studies["corrupt"].instances[0].StudyInstanceUID)
    study = ingested.admin_get(f"/neuronova/htj2k/studies/{corrupt_uid}").json()
    assert study["counts"] == {"skipped": 1} and "cannot be decoded" in study["problems"][0]["error"]
    ybr_uid = ingested.studies["ybr"].study_uid
    assert "YBR_FULL_422" in ingested.admin_get(f"/neuronova/htj2k/studies/{ybr_uid}").json()["problems"][0]["error"]


def test_originals_are_untouched(ingested: Ingested) -> None:
    by_dimse = {str(ds.SOPInstanceUID) for ds in ingested.studies["ct"].instances}
    for sop_uid, sent in ingested.files.items():
        instance = ingested.instance_id(sop_uid)
        stored = ingested.admin_get(f"/instances/{instance}/file").content
        md5 = ingested.admin_get(f"/instances/{instance}/attachments/dicom/md5").text.strip()
        assert md5 == hashlib.md5(stored).hexdigest()  # noqa: S324 - Orthanc's own checksum
        if sop_uid in by_dimse:  # C-STORE carries a data set, not a file: Orthanc writes the file meta
            assert pydicom.dcmread(io.BytesIO(stored)) == pydicom.dcmread(io.BytesIO(sent)), sop_uid
        else:  # REST and STOW-RS: the very bytes sent
            assert stored == sent, sop_uid
    # Orthanc's own features still read the original. (Not the JPEG 2000 one: Debian's
    # Orthanc 1.10.1 cannot decode JPEG 2000 itself, with or without NeuroNova.)
    for key in ("ct", "multiframe", "rle"):
        instance = ingested.instance_id(str(ingested.studies[key].instances[0].SOPInstanceUID))
        preview = ingested.admin_get(f"/instances/{instance}/preview")
        assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG"), key


def test_rendition_is_a_valid_part10_htj2k_object(ingested: Ingested) -> None:
    sop = str(ingested.studies["multiframe"].instances[0].SOPInstanceUID)
    instance = ingested.instance_id(sop)
    assert "htj2k" in ingested.admin_get(f"/instances/{instance}/attachments").json()
    data = ingested.admin_get(f"/instances/{instance}/attachments/htj2k/data").content
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == HTJ2K and ds.SOPInstanceUID == sop
    original = pydicom.dcmread(io.BytesIO(ingested.files[sop]))
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_frames_as_htj2k_decode_bit_exactly_with_openjpeg(ingested: Ingested) -> None:
    for key in ("ct", "j2k", "rle"):
        study = ingested.studies[key]
        answer = frames(ingested, study, "1", ANY_FRAMES)
        assert answer.status_code == 200
        (part,) = parse_multipart(answer.content, answer.headers["Content-Type"])
        assert part.content_type == f"application/octet-stream; transfer-syntax={HTJ2K}"
        expected = pydicom.dcmread(io.BytesIO(ingested.files[str(study.instances[0].SOPInstanceUID)])).pixel_array
        assert np.array_equal(openjpeg.decode(part.body), expected), key


def test_frame_lists_on_a_multiframe_instance(ingested: Ingested) -> None:
    study = ingested.studies["multiframe"]
    original = pydicom.dcmread(io.BytesIO(ingested.files[str(study.instances[0].SOPInstanceUID)])).pixel_array
    answer = frames(ingested, study, "1,3,5", ANY_FRAMES)
    parts = parse_multipart(answer.content, answer.headers["Content-Type"])
    assert [p.content_type.endswith(HTJ2K) for p in parts] == [True] * 3
    for part, number in zip(parts, (1, 3, 5), strict=True):
        assert np.array_equal(openjpeg.decode(part.body), original[number - 1])
    uncompressed = frames(ingested, study, "2,10", LE_FRAMES)
    parts = parse_multipart(uncompressed.content, uncompressed.headers["Content-Type"])
    assert [p.content_type for p in parts] == [f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"] * 2
    assert parts[1].body == original[9].astype("<i2" if original.dtype.kind == "i" else "<u2").tobytes()
    assert frames(ingested, study, "11", ANY_FRAMES).status_code == 404


def test_uncompressed_frames_are_correct_for_their_label(ingested: Ingested) -> None:
    for key in ("ct", "j2k", "rle", "ybr"):
        study = ingested.studies[key]
        answer = frames(ingested, study, "1", LE_FRAMES)
        assert answer.status_code == 200, key
        (part,) = parse_multipart(answer.content, answer.headers["Content-Type"])
        assert part.content_type.endswith(EXPLICIT_LE)
        ds = pydicom.dcmread(io.BytesIO(ingested.files[str(study.instances[0].SOPInstanceUID)]))
        pixels = ds.pixel_array
        if key == "ybr":
            assert len(part.body) == pixels.size  # 8-bit colour, one byte per sample
            continue
        assert part.body == pixels.astype(pixels.dtype.newbyteorder("<")).tobytes(), key
    # plain octet-stream means Explicit VR Little Endian too (PS3.18)
    answer = frames(ingested, ingested.studies["ct"], "1", 'multipart/related; type="application/octet-stream"')
    assert parse_multipart(answer.content, answer.headers["Content-Type"])[0].content_type.endswith(EXPLICIT_LE)


def test_single_part_jphc_and_not_acceptable(ingested: Ingested) -> None:
    study = ingested.studies["ct"]
    answer = frames(ingested, study, "1", "image/jphc")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("image/jphc")
    assert answer.content[:2] == b"\xff\x4f"  # SOC marker: a bare codestream
    refused = frames(ingested, study, "1", 'multipart/related; type="image/jpeg"')
    assert refused.status_code == 406
    # the instance without a rendition is served from its original, labelled as such
    corrupt = ingested.studies["corrupt"]
    fallback = frames(ingested, corrupt, "1", ANY_FRAMES)
    assert fallback.status_code in (200, 406)
    if fallback.status_code == 200:
        (part,) = parse_multipart(fallback.content, fallback.headers["Content-Type"])
        assert not part.content_type.endswith(HTJ2K)


def test_instance_retrieval_negotiates(ingested: Ingested) -> None:
    study = ingested.studies["j2k"]
    ds = study.instances[0]
    path = f"/dicom-web/studies/{study.study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    any_syntax = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    rendition = ingested.admin_get(path, headers={"Accept": any_syntax})
    (part,) = parse_multipart(rendition.content, rendition.headers["Content-Type"])
    assert part.content_type.endswith(HTJ2K)
    assert pydicom.dcmread(io.BytesIO(part.body)).file_meta.TransferSyntaxUID == HTJ2K
    original = ingested.admin_get(path, headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.91'})
    (part,) = parse_multipart(original.content, original.headers["Content-Type"])
    assert part.body == ingested.files[str(ds.SOPInstanceUID)]
    plain = ingested.admin_get(path, headers={"Accept": 'multipart/related; type="application/dicom"'})
    (part,) = parse_multipart(plain.content, plain.headers["Content-Type"])
    assert part.content_type.endswith(EXPLICIT_LE)
    assert pydicom.dcmread(io.BytesIO(part.body)).file_meta.TransferSyntaxUID == EXPLICIT_LE
    whole = ingested.admin_get(f"/dicom-web/studies/{ingested.studies['ct'].study_uid}",
                               headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert len(parse_multipart(whole.content, whole.headers["Content-Type"])) == 3


def test_metadata_advertises_the_rendition(ingested: Ingested) -> None:
    for key, expected in (("ct", True), ("corrupt", False)):
        study = ingested.studies[key]
        metadata = ingested.admin_get(f"/dicom-web/studies/{study.study_uid}/metadata").json()
        assert all(("00083002" in item) == expected for item in metadata), key
        if expected:
            assert metadata[0]["00083002"]["Value"] == [HTJ2K]


def test_prometheus_metrics(ingested: Ingested) -> None:
    ingested.admin_get("/neuronova/htj2k/stats")
    metrics = ingested.admin_get("/tools/metrics-prometheus").text
    for name in ("neuronova_htj2k_encoded_total", "neuronova_htj2k_with_rendition", "neuronova_htj2k_failed"):
        assert name in metrics


def test_backfill_processes_instances_stored_while_htj2k_was_off(tmp_path: Path) -> None:
    off = {"NeuroNova": {"Htj2k": {"Enabled": False}}}
    env = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "htj2k-admin"}
    server = start_orthanc(tmp_path, env=env, overlay=off)
    study = make_study("CT_small.dcm", patient_id="B-1", patient_name="BACK^FILL", slices=4)
    try:
        for blob in study.files():
            requests.post(server.base + "/instances", data=blob, auth=server.admin, timeout=30).raise_for_status()
        time.sleep(1)
        stats = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin, timeout=10).json()
        assert stats["with_rendition"] == 0 and stats["without_rendition"] == 4
    finally:
        server.stop()
    server = start_orthanc(tmp_path, env=env, overlay={"NeuroNova": {"Htj2k": {"Enabled": True}}},
                           http_port=server.http_port)
    metadata_path = f"{server.base}/dicom-web/studies/{study.study_uid}/metadata"
    try:
        before = requests.get(metadata_path, auth=server.admin, timeout=30).json()
        assert len(before) == 4 and not any("00083002" in item for item in before)  # and now cached
        started = requests.post(server.base + "/neuronova/htj2k/backfill", auth=server.admin, timeout=10)
        assert started.status_code == 202
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            progress = requests.get(server.base + "/neuronova/htj2k/backfill", auth=server.admin, timeout=10).json()
            if progress["state"] != "running":
                break
            time.sleep(0.2)
        assert progress["state"] == "finished" and progress["done"] == progress["total"] == 4, progress
        assert progress["failures"] == 0 and progress["rate_per_second"] > 0
        stats = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin, timeout=10).json()
        assert stats["with_rendition"] == 4
        # the renditions are part of the cached metadata's version: advertised at once
        after = requests.get(metadata_path, auth=server.admin, timeout=30).json()
        assert all(item["00083002"]["Value"] == [HTJ2K] for item in after)
        # a second run finds nothing left to do
        requests.post(server.base + "/neuronova/htj2k/backfill", auth=server.admin, timeout=10)
        time.sleep(1)
        again = requests.get(server.base + "/neuronova/htj2k/backfill", auth=server.admin, timeout=10).json()
        assert again["total"] == 0
    finally:
        server.stop()


def _encoder_processes(parent: int) -> set[int]:
    """PIDs of the encoder processes Orthanc ``parent`` spawned (alive, not zombies)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(parent) and b"multiprocessing.spawn" in cmdline \
                and not fields.get("State", "").startswith("Z"):
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return not (Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1].startswith("Z"))
    except (OSError, IndexError):
        return False


def test_encoder_processes_end_when_orthanc_is_killed(tmp_path: Path) -> None:
    env = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "htj2k-admin"}
    server = start_orthanc(tmp_path, env=env)
    try:
        pid = orthanc_pid(server)
        encoders = wait_for(lambda: _encoder_processes(pid), timeout=60, what="the encoder processes")
        os.kill(pid, signal.SIGKILL)
        # Each checks for its parent once a second (encoder_pool.ORPHAN_CHECK_SECONDS).
        wait_for(lambda: not any(_alive(p) for p in encoders), timeout=15,
                 what=f"the orphaned encoder processes {sorted(encoders)} to end")
    finally:
        server.stop()
