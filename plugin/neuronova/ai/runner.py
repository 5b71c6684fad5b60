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
from typing import Any, Protocol

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ai_client import InferenceRequest, InferenceResult, PermanentError, TransientError
from ai_client.models import InvalidRequest

from ..errors import OrthancCallError
from ..host import Host
from .clients import Backend
from .jobs import Job
from .results import (
    HYPERINTENSITY_BURDEN,
    NO_UNITS,
    AiResult,
    FrameMask,
    FrameMaskLike,
    NumericMeasurement,
    build_results,
    segment_for_label,
    to_part10,
)

SUCCEEDED, TRANSIENT, PERMANENT, INTERRUPTED = "succeeded", "transient", "permanent", "interrupted"


@dataclass(frozen=True)
class Outcome:
    kind: str
    error: str = ""
    retry_after: float | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    inference_seconds: float | None = None


class TokenIssuer(Protocol):
    def issue(self, study_uid: str, job_id: str) -> tuple[str, Callable[[], None]]:
        """A short-lived read-only token for one study, and a function that revokes it."""


class Interrupted(Exception):
    """Orthanc is stopping: leave the job for the next start."""


def _series_instances(host: Host, series_id: str) -> list[dict[str, Any]]:
    instances = host.rest_get_json(f"/series/{series_id}/instances")

    def order(i: Mapping[str, Any]) -> tuple[int, str]:
        tags = i.get("MainDicomTags", {})
        try:
            number = int(tags.get("InstanceNumber", "") or 0)
        except ValueError:
            number = 0
        return number, str(i.get("ID", ""))

    return sorted(instances, key=order)


def _masks(result: InferenceResult) -> tuple[list[FrameMaskLike], str]:
    """The frames' masks; a legacy single mask needs the instance it belongs to."""
    if result.segmentation_frames:
        return list(result.segmentation_frames), ""
    if result.segmentation is not None:
        if result.segmentation_sop_instance_uid:
            return [FrameMask(result.segmentation_sop_instance_uid, result.segmentation_frame_number or 1,
                              np.asarray(result.segmentation, dtype=np.bool_))], ""
        return [], "the service returned a mask without segmentation_sop_instance_uid: no SEG stored"
    return [], ""


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
                 remote_names: Mapping[str, str], stopping: Callable[[], bool] = lambda: False) -> None:
        self.host = host
        self.backends = backends
        self.tokens = tokens
        self.dicomweb_url = dicomweb_url
        self.remote_names = remote_names
        self.stopping = stopping

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
        instances = _series_instances(self.host, series_id)
        if not instances:
            raise PermanentError("the series has no instances")
        sources: list[Dataset] = []

        def load_sources() -> Sequence[Dataset]:
            if not sources:
                for instance in instances:
                    data = self.host.rest_get(f"/instances/{instance['ID']}/file")
                    sources.append(pydicom.dcmread(io.BytesIO(data)))
            return sources

        started = time.monotonic()
        if backend.uses_dicomweb:
            token, revoke = self.tokens.issue(job.study_uid, job.id)
            try:
                try:
                    request = InferenceRequest(
                        instance_id=str(instances[0]["ID"]), model_type=self.remote_names.get(job.model, job.model),
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
        return self._store(job, result, load_sources(), inference_seconds)

    def _store(self, job: Job, result: InferenceResult, sources: Sequence[Dataset],
               inference_seconds: float) -> Outcome:
        masks, note = _masks(result)
        try:
            ai = AiResult(
                job_id=job.id, model_type=job.model, risk_score=result.risk_score, confidence=result.confidence,
                masks=masks, model_version=result.model_version or "", segment=segment_for_label(
                    result.segmentation_label), extra_measurements=_burden(result.details),
            )
            objects = build_results(list(sources), ai)
            blobs = [(kind, ds, to_part10(ds)) for kind, ds in
                     (("SEG", objects.segmentation), ("SR", objects.report)) if ds is not None]
        except (ValueError, TypeError, AttributeError) as exc:
            raise PermanentError(f"the answer cannot be stored as DICOM: {type(exc).__name__}: {exc}") from exc
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
            "objects": stored,
            "details": _json_safe(result.details),
        }
        if note:
            record["note"] = note
        return Outcome(SUCCEEDED, result=record, inference_seconds=inference_seconds)
