"""Realistic test studies built from pydicom's real test images, with fresh UIDs."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


@dataclass
class Study:
    study_uid: str
    patient_id: str
    series_uids: list[str] = field(default_factory=list)
    instances: list[Dataset] = field(default_factory=list)

    @property
    def sop_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.instances]

    def files(self) -> list[bytes]:
        return [to_bytes(ds) for ds in self.instances]


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def identify(ds: Dataset, study: Study, series_uid: str, patient_name: str, referring: str = "") -> None:
    """Give ``ds`` a fresh SOP Instance UID inside ``study``/``series_uid`` and the patient's identity."""
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = study.patient_id
    ds.PatientName = patient_name
    ds.ReferringPhysicianName = referring


def make_study(source: str, *, patient_id: str, patient_name: str, slices: int = 3, series: int = 1,
               referring: str = "", reading: str = "", description: str = "") -> Study:
    """A study of ``series`` x ``slices`` instances of the pydicom test file ``source``."""
    template = pydicom.dcmread(get_testdata_file(source))
    study = Study(generate_uid(), patient_id)
    for s in range(series):
        series_uid = generate_uid()
        study.series_uids.append(series_uid)
        for i in range(slices):
            ds = copy.deepcopy(template)
            identify(ds, study, series_uid, patient_name, referring)
            if reading:
                ds.NameOfPhysiciansReadingStudy = reading
            elif "NameOfPhysiciansReadingStudy" in ds:
                del ds.NameOfPhysiciansReadingStudy
            ds.StudyDescription = description or f"{source} study"
            ds.SeriesNumber = s + 1
            ds.InstanceNumber = i + 1
            if "ImagePositionPatient" in ds:
                position = [float(v) for v in ds.ImagePositionPatient]
                ds.ImagePositionPatient = [position[0], position[1], position[2] + i * 5.0]
            study.instances.append(ds)
    return study
