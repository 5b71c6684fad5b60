"""Request and answer of the NeuroNova inference contract, with strict validation.

The contract (``POST {base}/inference``, JSON both ways) is the one of the replaced design,
extended so that a service can pull the whole series through the gate. It is documented,
field by field, in ``ai_client/README.md``; :meth:`InferenceResult.from_json` is its
executable definition on the client side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from .errors import MalformedResponse
from .png import MAX_MASK_PIXELS, MaskDecodeError, mask_from_base64, mask_to_base64

#: A DICOM UID: dot-separated numbers, at most 64 characters (PS3.5 9.1).
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

Mask = npt.NDArray[np.bool_]


def is_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.match(value) is not None


class InvalidRequest(ValueError):
    """An inference request does not follow the contract (the service answers 400)."""


@dataclass(frozen=True)
class InferenceRequest:
    """What the plugin sends. ``access_token`` is a short-lived read-only bearer token for
    this one study, to be sent as ``Authorization: Bearer ...`` to ``dicomweb_url``."""

    instance_id: str
    model_type: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    dicomweb_url: str
    access_token: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("model_type", "dicomweb_url", "access_token"):
            if not getattr(self, name):
                raise InvalidRequest(f"{name} must not be empty")
        for name in ("study_instance_uid", "series_instance_uid"):
            if not is_uid(getattr(self, name)):
                raise InvalidRequest(f"{name} is not a DICOM UID")
        parts = urlsplit(self.dicomweb_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequest("dicomweb_url must be an absolute http(s) URL")

    def to_json(self) -> dict[str, str]:
        return {
            "instance_id": self.instance_id,
            "model_type": self.model_type,
            "patient_id": self.patient_id,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "dicomweb_url": self.dicomweb_url,
            "access_token": self.access_token,
        }

    @classmethod
    def from_json(cls, obj: object) -> InferenceRequest:
        """Parse a decoded JSON body (raises :class:`InvalidRequest`)."""
        if not isinstance(obj, Mapping):
            raise InvalidRequest("the request body must be a JSON object")
        values: dict[str, str] = {}
        for name in (
            "instance_id",
            "model_type",
            "patient_id",
            "study_instance_uid",
            "series_instance_uid",
            "dicomweb_url",
            "access_token",
        ):
            value = obj.get(name)
            if not isinstance(value, str):
                raise InvalidRequest(f"{name} is required and must be a string")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True, eq=False)
class SegmentationFrame:
    """The mask of one frame of the analysed series (``frame_number`` is 1-based; it is 1
    for single-frame instances)."""

    sop_instance_uid: str
    frame_number: int
    mask: Mask

    def to_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "frame_number": self.frame_number,
            "mask": mask_to_base64(self.mask),
        }


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """A validated answer. Masks are decoded (boolean arrays, rows x columns)."""

    job_id: str
    risk_score: float
    confidence: float
    processing_time: float
    segmentation: Mask | None = None
    segmentation_sop_instance_uid: str | None = None
    segmentation_frame_number: int | None = None
    segmentation_frames: tuple[SegmentationFrame, ...] = ()
    segmentation_label: str | None = None
    model_type: str | None = None
    model_version: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON answer (what a service sends)."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "risk_score": self.risk_score,
            "confidence": self.confidence,
            "processing_time": self.processing_time,
            "segmentation": None if self.segmentation is None else mask_to_base64(self.segmentation),
        }
        if self.segmentation_sop_instance_uid is not None:
            out["segmentation_sop_instance_uid"] = self.segmentation_sop_instance_uid
        if self.segmentation_frame_number is not None:
            out["segmentation_frame_number"] = self.segmentation_frame_number
        if self.segmentation_frames:
            out["segmentation_frames"] = [f.to_json() for f in self.segmentation_frames]
        for name in ("segmentation_label", "model_type", "model_version"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.details:
            out["details"] = dict(self.details)
        return out

    @classmethod
    def from_json(cls, obj: object, *, max_mask_pixels: int = MAX_MASK_PIXELS) -> InferenceResult:
        """Validate a decoded JSON answer; anything off raises :class:`MalformedResponse`.

        Unknown fields are ignored (a service may add more); known fields must be exactly
        of their documented type.
        """
        if not isinstance(obj, Mapping):
            raise MalformedResponse(f"the answer must be a JSON object, not {_kind(obj)}")
        job_id = _string(obj, "job_id", required=True)
        assert job_id is not None
        if not job_id:
            raise MalformedResponse("job_id must not be empty")
        risk_score = _number(obj, "risk_score", 0.0, 1.0)
        confidence = _number(obj, "confidence", 0.0, 1.0)
        processing_time = _number(obj, "processing_time", 0.0, math.inf)

        segmentation: Mask | None = None
        raw = obj.get("segmentation")
        if raw is not None:
            segmentation = _mask(raw, "segmentation", max_mask_pixels)
        seg_uid = _string(obj, "segmentation_sop_instance_uid", required=False)
        if seg_uid is not None and not is_uid(seg_uid):
            raise MalformedResponse("segmentation_sop_instance_uid is not a DICOM UID")
        seg_frame = obj.get("segmentation_frame_number")
        if seg_frame is not None and (not isinstance(seg_frame, int) or isinstance(seg_frame, bool) or seg_frame < 1):
            raise MalformedResponse("segmentation_frame_number must be an integer >= 1")

        frames: list[SegmentationFrame] = []
        raw_frames = obj.get("segmentation_frames")
        if raw_frames is not None:
            if not isinstance(raw_frames, list):
                raise MalformedResponse("segmentation_frames must be a list")
            seen: set[tuple[str, int]] = set()
            for i, item in enumerate(raw_frames):
                where = f"segmentation_frames[{i}]"
                if not isinstance(item, Mapping):
                    raise MalformedResponse(f"{where} must be an object")
                uid = _string(item, "sop_instance_uid", required=True, where=where)
                assert uid is not None
                if not is_uid(uid):
                    raise MalformedResponse(f"{where}.sop_instance_uid is not a DICOM UID")
                number = item.get("frame_number", 1)
                if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                    raise MalformedResponse(f"{where}.frame_number must be an integer >= 1")
                if (uid, number) in seen:
                    raise MalformedResponse(f"{where} repeats frame {number} of {uid}")
                seen.add((uid, number))
                mask_text = item.get("mask")
                frames.append(SegmentationFrame(uid, number, _mask(mask_text, f"{where}.mask", max_mask_pixels)))

        details = obj.get("details", {})
        if details is None:
            details = {}
        if not isinstance(details, Mapping):
            raise MalformedResponse("details must be an object")

        return cls(
            job_id=job_id,
            risk_score=risk_score,
            confidence=confidence,
            processing_time=processing_time,
            segmentation=segmentation,
            segmentation_sop_instance_uid=seg_uid,
            segmentation_frame_number=seg_frame,
            segmentation_frames=tuple(frames),
            segmentation_label=_string(obj, "segmentation_label", required=False),
            model_type=_string(obj, "model_type", required=False),
            model_version=_string(obj, "model_version", required=False),
            details=dict(details),
        )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _string(obj: Mapping[str, Any], name: str, *, required: bool, where: str = "") -> str | None:
    label = f"{where}.{name}" if where else name
    if name not in obj or obj[name] is None:
        if required:
            raise MalformedResponse(f"{label} is missing")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise MalformedResponse(f"{label} must be a string, not {_kind(value)}")
    return value


def _number(obj: Mapping[str, Any], name: str, low: float, high: float) -> float:
    if name not in obj:
        raise MalformedResponse(f"{name} is missing")
    value = obj[name]
    # bool is an int in Python but never a number in JSON
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(f"{name} must be a number, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise MalformedResponse(f"{name}={value!r} is outside [{low}, {high}]")
    return number


def _mask(value: object, label: str, max_pixels: int) -> Mask:
    if not isinstance(value, str):
        raise MalformedResponse(f"{label} must be a base64 PNG string, not {_kind(value)}")
    try:
        return mask_from_base64(value, max_pixels=max_pixels)
    except MaskDecodeError as exc:
        raise MalformedResponse(f"{label}: {exc}") from exc
