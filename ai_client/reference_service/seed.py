"""The seed's answer: exactly the replaced design's response, and nothing else.

The seed's service answered ``job_id``, ``risk_score``, ``segmentation`` (one base64 PNG
mask), ``confidence`` and ``processing_time``; its mask was the segmentation of the one
instance the request named (``instance_id``, an Orthanc identifier). In this mode the
reference service answers that shape: the analysis still runs on the whole series, and
``segmentation`` is the mask of the named instance's frame.

The service reads the series through DICOMweb, which knows SOP Instance UIDs, not Orthanc
identifiers; Orthanc's identifier of an instance is the SHA-1 of
``PatientID|StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID`` written as five groups of
eight hex digits (Orthanc's ``DicomInstanceHasher``), so the service finds the instance by
computing it. A SOP Instance UID in ``instance_id`` is accepted too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..models import InferenceRequest, InferenceResult
from ..png import mask_to_base64

SEED_FIELDS = ("job_id", "risk_score", "segmentation", "confidence", "processing_time")


class UnknownInstance(ValueError):
    """``instance_id`` names no instance of the analysed series (answered with 422)."""


def orthanc_instance_id(patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    # Orthanc's identifier scheme, not a security use
    text = "|".join((patient_id, study_uid, series_uid, sop_uid)).encode()
    digest = hashlib.sha1(text, usedforsecurity=False).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def seed_answer(request: InferenceRequest, result: InferenceResult) -> dict[str, Any]:
    """The seed's response for ``request`` from a full ``result`` (with per-frame masks)."""
    wanted = request.instance_id.strip()
    for frame in result.segmentation_frames:
        ids = (frame.sop_instance_uid, orthanc_instance_id(
            request.patient_id, request.study_instance_uid, request.series_instance_uid, frame.sop_instance_uid))
        if frame.frame_number == 1 and wanted in ids:
            return {
                "job_id": result.job_id,
                "risk_score": result.risk_score,
                "segmentation": mask_to_base64(frame.mask),
                "confidence": result.confidence,
                "processing_time": result.processing_time,
            }
    raise UnknownInstance(f"instance_id {wanted!r} is not an instance of series {request.series_instance_uid}")
