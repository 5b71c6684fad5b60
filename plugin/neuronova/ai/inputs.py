"""What a finished job hands to the SEG and SR builders (plain values), and their UIDs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydicom.sr.coding import Code

from .codes import HYPERINTENSITY, SERIES_DESCRIPTION_PREFIX, SegmentSpec

_NAMESPACE = uuid.UUID("5f0d5a3e-6c1b-4f3e-9a57-4e6575726f4e")  # fixed: keeps UIDs stable


class FrameMaskLike(Protocol):
    """One frame's mask; :class:`ai_client.SegmentationFrame` fits this structurally."""

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def frame_number(self) -> int: ...

    @property
    def mask(self) -> npt.NDArray[np.bool_]: ...


@dataclass(frozen=True, eq=False)
class FrameMask:
    sop_instance_uid: str
    frame_number: int
    mask: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class NumericMeasurement:
    """An extra measurement for the score group (e.g. the hyperintensity burden)."""

    name: Code
    value: float
    unit: Code


@dataclass(frozen=True, eq=False)
class AiResult:
    """What a finished job produced. ``masks`` may be empty (no SEG is built then)."""

    job_id: str
    model_type: str
    risk_score: float
    confidence: float
    masks: Sequence[FrameMaskLike] = ()
    model_version: str = ""
    segment: SegmentSpec = HYPERINTENSITY
    extra_measurements: Sequence[NumericMeasurement] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.job_id:
            raise ValueError("job_id must not be empty")
        if not self.model_type:
            raise ValueError("model_type must not be empty")
        for name in ("risk_score", "confidence"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")


def result_uid(job_id: str, *parts: str) -> str:
    """A stable UID for one object of one job (``2.25.<name-based UUID>``).

    Derived from the job id, so building the results of one job twice gives the same SOP
    Instance UIDs: a retried job stores the same instances again instead of duplicates."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, "/".join((job_id, *parts))).int)


def series_description(model_type: str, what: str) -> str:
    return f"{SERIES_DESCRIPTION_PREFIX}{model_type} {what}"[:64]
