"""What the reference service does for one request: fetch the series, analyse it, answer.

Usable without the HTTP server: :func:`run_inference` takes the fetch step as a function, so
an integration test can call it with :func:`dicomweb_fetch` against a real gate, and a unit
test with a local series.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..dicomweb import DEFAULT_MAX_VOXELS, SeriesVolume, UnsupportedSeries, fetch_series_volume
from ..models import InferenceRequest, InferenceResult, SegmentationFrame
from .analysis import MODELS, analyse

Fetch = Callable[[InferenceRequest], SeriesVolume]


class UnknownModel(ValueError):
    """The request names a model type the service does not have (answered with 400)."""


@dataclass(frozen=True)
class FetchOptions:
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    max_voxels: int = DEFAULT_MAX_VOXELS


def dicomweb_fetch(options: FetchOptions | None = None) -> Fetch:
    """The service's fetch step: the request's series through ``dicomweb_url`` with its
    bearer ``access_token`` (see :func:`ai_client.dicomweb.fetch_series_volume`)."""
    opts = options or FetchOptions()

    def fetch(request: InferenceRequest) -> SeriesVolume:
        volume, _ = fetch_series_volume(
            request.dicomweb_url,
            request.study_instance_uid,
            request.series_instance_uid,
            request.access_token,
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            max_voxels=opts.max_voxels,
        )
        return volume

    return fetch


def infer_volume(volume: SeriesVolume, model_type: str, *, job_id: str | None = None) -> InferenceResult:
    """Analyse an already fetched volume with model ``model_type`` and build the answer."""
    model = MODELS.get(model_type)
    if model is None:
        raise UnknownModel(f"unknown model_type {model_type!r}; known: {sorted(MODELS)}")
    started = time.perf_counter()
    analysis = analyse(volume.pixels, model)
    frames = tuple(
        SegmentationFrame(ref.sop_instance_uid, ref.frame_number, analysis.finding_mask[i])
        for i, ref in enumerate(volume.frames)
    )
    key = analysis.key_slice
    details = dict(analysis.details)
    details["modality"] = volume.modality
    if volume.pixel_spacing is not None and volume.slice_spacing is not None:
        voxel = volume.pixel_spacing[0] * volume.pixel_spacing[1] * volume.slice_spacing
        details["voxel_volume_mm3"] = round(voxel, 6)
        details["hyperintense_volume_mm3"] = round(voxel * int(analysis.finding_mask.sum()), 3)
    return InferenceResult(
        job_id=job_id or uuid.uuid4().hex,
        risk_score=analysis.risk_score,
        confidence=analysis.confidence,
        processing_time=round(time.perf_counter() - started, 3),
        segmentation=analysis.finding_mask[key],
        segmentation_sop_instance_uid=volume.frames[key].sop_instance_uid,
        segmentation_frame_number=volume.frames[key].frame_number,
        segmentation_frames=frames,
        segmentation_label=model.segment_label,
        model_type=model.name,
        model_version=model.version,
        details=details,
    )


def run_inference(request: InferenceRequest, fetch: Fetch) -> InferenceResult:
    """Handle one contract request end to end (``processing_time`` includes the fetch)."""
    if request.model_type not in MODELS:
        raise UnknownModel(f"unknown model_type {request.model_type!r}; known: {sorted(MODELS)}")
    started = time.perf_counter()
    volume = fetch(request)
    if volume.study_instance_uid and volume.study_instance_uid != request.study_instance_uid:
        raise UnsupportedSeries(
            f"the series belongs to study {volume.study_instance_uid}, not {request.study_instance_uid}"
        )
    result = infer_volume(volume, request.model_type)
    return replace(result, processing_time=round(time.perf_counter() - started, 3))
