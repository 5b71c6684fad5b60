"""Test helpers: real MR series from pydicom's test files, and a stub DICOMweb server.

Series: nothing here is synthetic pixel data: the pixels are the files' own. What is made up, and
said so in SeriesDescription, is what the files lack: new UIDs (deterministic from ``seed``)
and, for ``emri_small.dcm`` (an Enhanced MR whose functional groups were stripped), a plain
axial geometry with the file's own 1.2 mm slice spacing.
"""

from __future__ import annotations

import copy
import io
import threading
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


class TestDataMissing(LookupError):
    """The pydicom test file is not installed (pydicom-data is optional)."""


def _path(name: str) -> str:
    path = get_testdata_file(name)
    if not path or not isinstance(path, str):
        raise TestDataMissing(f"{name} is not available (install pydicom-data)")
    return path


def mr_small(*, seed: str | None = None) -> Dataset:
    """pydicom's ``MR_small.dcm`` (64 x 64, 16-bit signed, with real geometry). With ``seed``,
    study/series/instance UIDs are replaced by deterministic new ones."""
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    if seed is not None:
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "instance", "0"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def mr_head_series(
    *,
    seed: str = "neuronova-test-head",
    patient_id: str = "NN-TEST-0001",
    patient_name: str = "Test^Head",
    slices: int | None = None,
) -> list[Dataset]:
    """The 10 frames of pydicom-data's ``emri_small.dcm`` (a real 3 T T1 TFE head scan, 64 x
    64, 12 bits) as a series of classic single-frame MR Image Storage instances, in order,
    with axial geometry: IPP (0, 0, 1.2 * i), IOP (1,0,0, 0,1,0), PixelSpacing 1 mm."""
    src = pydicom.dcmread(_path("emri_small.dcm"))
    frames = np.asarray(src.pixel_array)
    count = frames.shape[0] if slices is None else min(slices, frames.shape[0])
    spacing = float(src.get("SpacingBetweenSlices", 1.2) or 1.2)
    study_uid = generate_uid(entropy_srcs=[seed, "study"])
    series_uid = generate_uid(entropy_srcs=[seed, "series"])
    frame_of_reference = generate_uid(entropy_srcs=[seed, "frame-of-reference"])
    out: list[Dataset] = []
    for i in range(count):
        ds = Dataset()
        for keyword in (
            "SpecificCharacterSet",
            "ImageType",
            "StudyDate",
            "StudyTime",
            "SeriesDate",
            "SeriesTime",
            "ContentDate",
            "ContentTime",
            "PatientBirthDate",
            "BodyPartExamined",
            "MRAcquisitionType",
            "MagneticFieldStrength",
            "PatientPosition",
            "SoftwareVersions",
        ):
            if keyword in src:
                setattr(ds, keyword, copy.deepcopy(src[keyword].value))
        sop_uid = generate_uid(entropy_srcs=[seed, "instance", str(i)])
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.Modality = "MR"
        ds.Manufacturer = ""
        ds.ReferringPhysicianName = ""
        ds.AccessionNumber = ""
        ds.StudyDescription = "NeuroNova test head MR"
        ds.SeriesDescription = "T1 TFE head (pydicom-data emri_small, geometry assigned)"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientSex = "O"
        ds.StudyID = "1"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 301
        ds.InstanceNumber = i + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [0.0, 0.0, round(spacing * i, 4)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = spacing
        ds.SpacingBetweenSlices = spacing
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.EchoTrainLength = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = int(src.BitsStored)
        ds.HighBit = int(src.HighBit)
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(frames[i].astype("<u2")).tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        out.append(ds)
    return out


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class StubDicomWeb(ThreadingHTTPServer):
    """A minimal WADO-RS server for tests: ``GET {url}/studies/{st}/series/{se}`` answers the
    given instances as ``multipart/related; type="application/dicom"`` (in reverse order, so
    that clients must sort), only with ``Authorization: Bearer {token}`` (else 401).
    Set ``fail_status`` to answer every request with that status instead. ``requests`` logs
    (path, Authorization header) of every request."""

    daemon_threads = True

    def __init__(self, datasets: Sequence[Dataset], token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.fail_status: int | None = None
        self.requests: list[tuple[str, str]] = []
        self._series: dict[tuple[str, str], list[bytes]] = {}
        for ds in datasets:
            key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
            self._series.setdefault(key, []).append(part10(ds))
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _StubHandler)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]!s}:{self.server_address[1]}/dicom-web"

    def start(self) -> StubDicomWeb:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="stub-dicomweb", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()

    def series_parts(self, study: str, series: str) -> list[bytes] | None:
        return self._series.get((study, series))


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = cast(StubDicomWeb, self.server)
        auth = self.headers.get("Authorization", "")
        server.requests.append((self.path, auth))
        if server.fail_status is not None:
            self._plain(server.fail_status, f"stub failure {server.fail_status}")
            return
        if auth != f"Bearer {server.token}":
            self._plain(401, "bad or missing bearer token")
            return
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 5 or parts[0] != "dicom-web" or parts[1] != "studies" or parts[3] != "series":
            self._plain(404, "unknown route")
            return
        files = server.series_parts(parts[2], parts[4])
        if files is None:
            self._plain(404, "no such series")
            return
        boundary = uuid.uuid4().hex
        chunks: list[bytes] = []
        for data in reversed(files):
            chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            chunks.append(data)
            chunks.append(b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        body = b"".join(chunks)
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
