"""Many small synthetic studies, made fast: one 2x2 8-bit instance each (pydicom), uploaded in
parallel through the REST API. For searches at scale (tests and bench.search_bench)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def long_uid(prefix: str, n: int) -> str:
    """A 64-character UID (the maximum): study lists as long as real ones get."""
    head = f"{prefix}.{n}."
    return head + "1" + "0" * (63 - len(head))


def tiny_instance(study_uid: str, patient_id: str, *, modality: str = "OT", date: str = "20240101") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName = patient_id, f"SCALE^{patient_id}"
    ds.StudyDate, ds.StudyTime, ds.Modality = date, "120000", modality
    ds.StudyDescription = "scale"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.SamplesPerPixel, ds.PixelRepresentation = 7, 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x00\x40\x80\xff"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def upload(base: str, blobs: Iterable[bytes], auth: tuple[str, str] | None = None, threads: int = 8) -> int:
    """POST every blob to ``base``/instances (loopback), ``threads`` at a time; the count stored."""
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError("loopback only")
    local = requests.Session()

    def post(blob: bytes) -> None:
        local.post(base + "/instances", data=blob, auth=auth, timeout=60).raise_for_status()

    with ThreadPoolExecutor(threads) as pool:
        return sum(1 for _ in pool.map(post, blobs))
