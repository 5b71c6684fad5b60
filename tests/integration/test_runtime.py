"""The runtime NeuroNova runs on: Orthanc 1.13.0, Python plugin 7.1, DICOMweb 1.24, GDCM 1.8
(Debian forky's packages), and what that runtime must and must not do with the plugin."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.integration.conftest import ADMIN_PASSWORD, World
from tests.support.orthanc_server import start_orthanc

pytestmark = pytest.mark.integration

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


@pytest.fixture
def stored(world: World) -> Iterator[list[str]]:
    """Orthanc ids of the instances a test stores in the shared world: deleted afterwards, so
    other modules' exact search answers stay as they were."""
    ids: list[str] = []
    yield ids
    for orthanc_id in ids:
        requests.delete(f"{world.base}/instances/{orthanc_id}", auth=world.server.admin, timeout=30)


def _upload(world: World, stored: list[str], name: str, expected_syntax: str) -> tuple[str, str, str, str]:
    """Store a pydicom test file with fresh UIDs; (orthanc id, study, series, sop uid)."""
    path = get_testdata_file(name)
    assert path is not None, name
    ds = pydicom.dcmread(path)
    assert str(ds.file_meta.TransferSyntaxUID) == expected_syntax
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "PAT-RUNTIME"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    answer = requests.post(world.base + "/instances", data=buffer.getvalue(), auth=world.server.admin, timeout=30)
    assert answer.status_code == 200, answer.text
    stored.append(answer.json()["ID"])
    return answer.json()["ID"], str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_versions_are_the_forky_runtime(world: World) -> None:
    system = world.admin_get("/system").json()
    assert system["Version"] == "1.13.0"
    names = [n for n in world.admin_get("/plugins").json() if n != "explorer.js"]
    plugins = {name: world.admin_get(f"/plugins/{name}").json()["Version"] for name in names}
    assert plugins["python"] == "7.1"
    assert plugins["dicom-web"] == "1.24"
    assert plugins["gdcm"] == "1.8"


def test_jpeg_baseline_retrieve_as_dicom_does_not_kill_orthanc(world: World, stored: list[str]) -> None:
    """GDCM 1.8 loaded unrestricted crashes Orthanc 1.13.0 on this request (stack overflow
    in libgdcm); restricted to JPEG 2000, DCMTK handles JPEG baseline."""
    orthanc_id, study, series, sop = _upload(world, stored, "SC_rgb_jpeg_dcmtk.dcm", JPEG_BASELINE)
    url = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    answer = world.admin_get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("multipart/related")
    # Orthanc's own transcoding (DCMTK) of the same instance, the way C-MOVE and WADO-URI use it.
    transcoded = requests.post(world.base + f"/instances/{orthanc_id}/modify", auth=world.server.admin, timeout=30,
                               json={"Transcode": "1.2.840.10008.1.2.1", "Force": True, "Keep": ["SOPInstanceUID"]})
    assert transcoded.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(transcoded.content))
    assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1" and ds.Rows > 0
    preview = world.admin_get(f"/instances/{orthanc_id}/preview")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    assert world.get("/neuronova/health").status_code == 200


def test_jpeg2000_originals_preview_and_render_through_gdcm(world: World, stored: list[str]) -> None:
    """GDCM decodes on Orthanc's HTTP threads, whose stacks Debian's civetweb fixes at 100 KiB:
    /rendered through the plugin's route overflowed them (SIGSEGV) until the stack floor
    (scripts/lib/preload.c) was preloaded."""
    orthanc_id, study, series, sop = _upload(world, stored, "US1_J2KR.dcm", JPEG2000_LOSSLESS)
    preview = world.admin_get(f"/instances/{orthanc_id}/preview")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    rendered = world.admin_get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered")
    assert rendered.status_code == 200 and rendered.headers["Content-Type"].startswith("image/")
    assert world.get("/neuronova/health").status_code == 200


@pytest.fixture
def remote_server(tmp_path: Path) -> Iterator[str]:
    env = {"NEURONOVA_REMOTE_ACCESS": "true", "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD}
    server = start_orthanc(tmp_path, env=env)
    try:
        yield server.base
    finally:
        server.stop()


def test_remote_access_starts_with_the_gate_as_the_authentication(remote_server: str) -> None:
    """Orthanc 1.13 refuses some insecure combinations of RemoteAccessAllowed and
    AuthenticationEnabled; with NeuroNova the gate is the authentication and it must start."""
    health = requests.get(remote_server + "/neuronova/health", timeout=10)
    assert health.status_code == 200 and health.json()["gate"] == "armed"
    assert requests.get(remote_server + "/system", timeout=10).status_code == 403
    assert requests.get(remote_server + "/system", auth=("admin", ADMIN_PASSWORD), timeout=10).status_code == 200


def test_orthanc_stops_cleanly(tmp_path: Path) -> None:
    """orthanc-python 7.1 releases its callbacks at shutdown; when that freed the App, Orthanc
    died with SIGSEGV in _Py_Dealloc every time it stopped (the bridge now keeps them)."""
    server = start_orthanc(tmp_path, env={"NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert requests.get(server.base + "/neuronova/health", timeout=10).status_code == 200
    server.stop()
    assert server.process.returncode == 0, f"exit {server.process.returncode}:\n{server.log()[-2000:]}"
    assert "Orthanc has stopped" in server.log()
