"""Geometry of the analysed series: which slice is sent, mask stacks, voxel sizes (pure).

**The instance sent to the service** (``instance_id`` of the contract) is the middle slice
of the series by position: every instance's ImagePositionPatient projected on the normal of
the first instance's ImageOrientationPatient (row x column direction cosines), sorted, and
the one at index ``(n - 1) // 2``. When an instance lacks either attribute (or they are
unreadable) the order is InstanceNumber instead, then the Orthanc identifier (the order of
Orthanc's listing); a series of one instance sends that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from .inputs import FrameMaskLike


@dataclass(frozen=True)
class SliceRef:
    """What Orthanc's index says about one instance (its ``MainDicomTags``)."""

    orthanc_id: str
    sop_instance_uid: str
    instance_number: str = ""
    image_position: str = ""  # "x\\y\\z", as Orthanc keeps it
    image_orientation: str = ""  # six direction cosines


def _floats(text: str, count: int) -> list[float] | None:
    try:
        values = [float(v) for v in text.replace(",", "\\").split("\\") if v.strip()]
    except ValueError:
        return None
    if len(values) != count or not all(np.isfinite(values)):
        return None
    return values


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return float("inf")
    return value if np.isfinite(value) else float("inf")


def ordered_slices(slices: Sequence[SliceRef]) -> list[SliceRef]:
    """The instances in slice order (see the module doc)."""
    orientation = _floats(slices[0].image_orientation, 6) if slices else None
    positions = [p for s in slices if (p := _floats(s.image_position, 3)) is not None]
    if orientation is not None and len(positions) == len(slices):
        normal = np.cross(orientation[:3], orientation[3:])
        if float(np.linalg.norm(normal)) > 0:
            distance = {id(s): float(np.dot(normal, p)) for s, p in zip(slices, positions, strict=True)}
            return sorted(slices, key=lambda s: (distance[id(s)], _number(s.instance_number), s.orthanc_id))
    return sorted(slices, key=lambda s: (_number(s.instance_number), s.orthanc_id))


def middle_slice(slices: Sequence[SliceRef]) -> SliceRef:
    """The instance sent to the service: the middle one in slice order."""
    if not slices:
        raise ValueError("the series has no instances")
    ordered = ordered_slices(slices)
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------- sources


def check_sources(sources: Sequence[Dataset]) -> None:
    if not sources:
        raise ValueError("no source datasets")
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in sources}
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in sources}
    if len(studies) != 1 or len(series) != 1:
        raise ValueError("the source datasets must be the instances of one series")


def number_of_frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def mask_stack(sources: Sequence[Dataset], masks: Sequence[FrameMaskLike]) -> npt.NDArray[np.bool_]:
    """The (frames, rows, columns) array highdicom expects, aligned with ``sources``: one
    frame per single-frame source, or the frames of the one multi-frame source. Frames
    without a mask are empty; a mask for an unknown instance/frame is an error."""
    multi = [ds for ds in sources if number_of_frames(ds) > 1]
    if multi and len(sources) > 1:
        raise ValueError("a SEG can reference several single-frame images or one multi-frame image")
    slots: dict[tuple[str, int], int] = {}
    shapes: list[tuple[int, int]] = []
    for ds in sources:
        for frame in range(1, number_of_frames(ds) + 1):
            slots[(str(ds.SOPInstanceUID), frame)] = len(shapes)
            shapes.append((int(ds.Rows), int(ds.Columns)))
    if len(set(shapes)) != 1:
        raise ValueError("the source frames differ in size")
    rows, columns = shapes[0]
    stack = np.zeros((len(shapes), rows, columns), dtype=np.bool_)
    for m in masks:
        key = (m.sop_instance_uid, m.frame_number)
        if key not in slots:
            raise ValueError(f"mask for frame {m.frame_number} of {m.sop_instance_uid}, which is not a source frame")
        if m.mask.shape != (rows, columns):
            raise ValueError(f"mask of shape {m.mask.shape} for a {rows}x{columns} frame")
        stack[slots[key]] = np.asarray(m.mask, dtype=np.bool_)
    return stack


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def slice_spacing(sources: Sequence[Dataset]) -> float | None:
    if len(sources) > 1 and all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for ds in sources):
        iop = np.array([float(v) for v in sources[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        distances = sorted(float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in sources)
        steps = np.diff(distances)
        if steps.size and float(np.median(steps)) > 0:
            return float(np.median(steps))
    first = sources[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _positive(first.get(keyword))
        if value is not None:
            return value
    shared = first.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            for keyword in ("SpacingBetweenSlices", "SliceThickness"):
                value = _positive(measures[0].get(keyword))
                if value is not None:
                    return value
    return None


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    value = ds.get("PixelSpacing")
    if value is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        measures = shared[0].get("PixelMeasuresSequence") if shared else None
        value = measures[0].get("PixelSpacing") if measures else None
    if value is None or len(value) != 2:
        return None
    return float(value[0]), float(value[1])


def voxel_volume_mm3(sources: Sequence[Dataset], spacing_from: Sequence[Dataset] | None = None) -> float | None:
    """Volume of one voxel of the source series in mm3, when its geometry says so.
    ``spacing_from`` (default ``sources``) gives the slice spacing: the whole series when
    the SEG covers only some of its slices."""
    spacing = pixel_spacing(sources[0])
    thickness = slice_spacing(spacing_from or sources)
    if spacing is None or thickness is None:
        return None
    return spacing[0] * spacing[1] * thickness
