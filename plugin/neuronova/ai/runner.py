"""One attempt of one job: ask the inference service, store the results back as DICOM.

The outcome is a value (:class:`Outcome`): succeeded with the result record, transient
(retry with backoff), permanent (fail now) or interrupted (Orthanc is stopping). Nothing
here changes the job record; the service does that with the outcome.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ai_client import InferenceRequest, InferenceResult, PermanentError, TransientError
from ai_client.models import InvalidRequest

from ..errors import OrthancCallError
from ..host import Host
from .clients import Backend
from .codes import HYPERINTENSITY_BURDEN, NO_UNITS, segment_for_label
from .geometry import SliceRef, middle_slice, number_of_frames, ordered_slices
from .headers import RULES, Rule
from .inputs import AiResult, FrameMask, FrameMaskLike, NumericMeasurement
from .jobs import Job
from .results import ResultsError, build_results
from .tokens import TokenIssuer

SUCCEEDED, TRANSIENT, PERMANENT, INTERRUPTED = "succeeded", "transient", "permanent", "interrupted"


@dataclass(frozen=True)
class Outcome:
    kind: str
    error: str = ""
    retry_after: float | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    inference_seconds: float | None = None


class Interrupted(Exception):
    """Orthanc is stopping: leave the job for the next start."""


def _series_slices(host: Host, series_id: str) -> list[SliceRef]:
    """The series' instances in slice order (``geometry.ordered_slices``), from Orthanc's index."""
    instances = host.rest_get_json(f"/series/{series_id}/instances")
    slices = []
    for i in instances:
        tags = i.get("MainDicomTags", {})
        slices.append(SliceRef(
            orthanc_id=str(i.get("ID", "")), sop_instance_uid=str(tags.get("SOPInstanceUID", "")),
            instance_number=str(tags.get("InstanceNumber", "")),
            image_position=str(tags.get("ImagePositionPatient", "")),
            image_orientation=str(tags.get("ImageOrientationPatient", "")),
        ))
    return ordered_slices(slices)


@dataclass(frozen=True, eq=False)
class Masks:
    """The masks of an answer, the images the SEG covers (None: the whole series) and a
    note when a mask cannot be placed."""

    frames: list[FrameMaskLike]
    segmented: frozenset[str] | None = None
    note: str = ""


def _masks(result: InferenceResult, sent: SliceRef, sources: Sequence[Dataset]) -> Masks:
    """Per-frame masks cover the series. A single mask is for one instance: the one the
    answer names, else (the seed contract) the instance the request named."""
    if result.segmentation_frames:
        return Masks(list(result.segmentation_frames))
    if result.segmentation is None:
        return Masks([])
    uid = result.segmentation_sop_instance_uid or sent.sop_instance_uid
    frame = result.segmentation_frame_number
    if frame is None:
        source = next((ds for ds in sources if str(ds.SOPInstanceUID) == uid), None)
        if source is not None and number_of_frames(source) > 1:
            return Masks([], note=f"the service returned one mask for the {number_of_frames(source)}-frame "
                                  f"instance {uid} without segmentation_frame_number: no SEG stored")
        frame = 1
    return Masks([FrameMask(uid, frame, np.asarray(result.segmentation, dtype=np.bool_))], frozenset({uid}))


def _burden(details: Mapping[str, Any]) -> list[NumericMeasurement]:
    value = details.get("burden")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1:
        return [NumericMeasurement(HYPERINTENSITY_BURDEN, float(value), NO_UNITS)]
    return []


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(details), allow_nan=False)))
    except (TypeError, ValueError):
        return {"unserializable": True}


class Runner:
    def __init__(self, host: Host, backends: Mapping[str, Backend], tokens: TokenIssuer, dicomweb_url: str,
                 remote_names: Mapping[str, str], stopping: Callable[[], bool] = lambda: False,
                 header_rules: Mapping[str, Rule] = RULES) -> None:
        self.host = host
        self.backends = backends
        self.tokens = tokens
        self.dicomweb_url = dicomweb_url
        self.remote_names = remote_names
        self.stopping = stopping
        self.header_rules = header_rules  # headers.RULES; replaceable for a fixed rule without restart

    def run(self, job: Job) -> Outcome:
        try:
            return self._run(job)
        except Interrupted as exc:
            return Outcome(INTERRUPTED, str(exc) or "Orthanc is stopping")
        except PermanentError as exc:
            return Outcome(PERMANENT, str(exc))
        except TransientError as exc:
            return Outcome(TRANSIENT, str(exc), exc.retry_after)
        except OrthancCallError as exc:
            if exc.status == 404:
                return Outcome(PERMANENT, f"Orthanc: not found ({exc}); the study or series was deleted")
            return Outcome(TRANSIENT, f"Orthanc call failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried, then fails visibly
            return Outcome(TRANSIENT, f"internal error: {type(exc).__name__}: {exc}")

    def _run(self, job: Job) -> Outcome:
        backend = self.backends.get(job.model)
        if backend is None:
            raise PermanentError(f"model {job.model!r} is not configured or has no inference URL")
        series_id = self.host.lookup_series(job.series_uid)
        if series_id is None or self.host.lookup_study(job.study_uid) is None:
            raise PermanentError("the study or the series is no longer in Orthanc")
        slices = _series_slices(self.host, series_id)
        if not slices:
            raise PermanentError("the series has no instances")
        sent = middle_slice(slices)
        sources: list[Dataset] = []

        def load_sources() -> Sequence[Dataset]:
            if not sources:
                for instance in slices:
                    data = self.host.rest_get(f"/instances/{instance.orthanc_id}/file")
                    sources.append(pydicom.dcmread(io.BytesIO(data)))
            return sources

        started = time.monotonic()
        if backend.uses_dicomweb:
            token, revoke = self.tokens.issue(job.study_uid, job.id)
            try:
                try:
                    request = InferenceRequest(
                        instance_id=sent.orthanc_id, model_type=self.remote_names.get(job.model, job.model),
                        patient_id=job.patient_id, study_instance_uid=job.study_uid,
                        series_instance_uid=job.series_uid, dicomweb_url=self.dicomweb_url, access_token=token,
                    )
                except InvalidRequest as exc:
                    raise PermanentError(f"cannot build the inference request: {exc}") from exc
                result = backend.infer(request, load_sources)
            finally:
                revoke()  # the service is done reading: the token dies now, not at its expiry
        else:
            result = backend.infer(None, load_sources)
        inference_seconds = time.monotonic() - started
        if self.stopping():
            raise Interrupted("Orthanc is stopping; the results will be computed again after the restart")
        return self._store(job, result, load_sources(), sent, inference_seconds)

    def _store(self, job: Job, result: InferenceResult, sources: Sequence[Dataset], sent: SliceRef,
               inference_seconds: float) -> Outcome:
        placed = _masks(result, sent, sources)
        masks, note = placed.frames, placed.note
        try:
            ai = AiResult(
                job_id=job.id, model_type=job.model, risk_score=result.risk_score, confidence=result.confidence,
                masks=masks, model_version=result.model_version or "", segment=segment_for_label(
                    result.segmentation_label), extra_measurements=_burden(result.details),
            )
            objects = build_results(list(sources), ai, segmented=placed.segmented, rules=self.header_rules)
        except ResultsError as exc:
            raise PermanentError(f"the answer cannot be stored as DICOM: {exc}") from exc
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"the answer cannot be stored as DICOM: {type(exc).__name__}: {exc}") from exc
        kinds = ["SEG"] * (objects.segmentation is not None) + ["SR"]
        blobs = list(zip(kinds, objects.datasets(), objects.part10(), strict=True))
        stored = []
        for kind, ds, blob in blobs:  # SEG first: the SR references it
            answer = json.loads(self.host.rest_post("/instances", blob))
            stored.append({
                "type": kind, "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID),
                "series_instance_uid": str(ds.SeriesInstanceUID), "orthanc_id": str(answer.get("ID", "")),
                "status": str(answer.get("Status", "")),
            })
        mask_voxels = int(sum(int(np.count_nonzero(m.mask)) for m in masks))
        record: dict[str, Any] = {
            "risk_score": result.risk_score,
            "confidence": result.confidence,
            "processing_time": result.processing_time,
            "inference_seconds": round(inference_seconds, 3),
            "service_job_id": result.job_id,
            "model_version": result.model_version,
            "segmentation_label": result.segmentation_label,
            "mask": {"frames": len(masks), "voxels": mask_voxels} if masks else None,
            "series_analysed": job.series_uid,
            "instance_sent": {"orthanc_id": sent.orthanc_id, "sop_instance_uid": sent.sop_instance_uid},
            "header_changes": [c.to_json() for c in objects.changes],
            "objects": stored,
            "details": _json_safe(result.details),
        }
        if note:
            record["note"] = note
        return Outcome(SUCCEEDED, result=record, inference_seconds=inference_seconds)
