"""Fetch a series through DICOMweb (WADO-RS) with a bearer token, as one sorted volume.

This is the "pull the whole series through the gate" half of the contract: the plugin sends
``dicomweb_url`` and a short-lived read-only ``access_token`` for the study; a service (the
reference service, or :class:`~ai_client.oip.OipClient` on the plugin side) calls
:func:`fetch_series_volume`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ._http import excerpt
from .errors import MalformedResponse, PermanentError, TransientError
from .models import is_uid

#: Refuse series larger than this many voxels by default (float32: 1 GiB).
DEFAULT_MAX_VOXELS = 256 * 1024 * 1024


class UnsupportedSeries(PermanentError):
    """The series cannot be turned into one volume (no pixels, colour, mixed frame sizes,
    undecodable compression, too large). Retrying cannot help."""


@dataclass(frozen=True)
class FrameRef:
    """Where one slice of a volume comes from (``frame_number`` is 1-based)."""

    sop_instance_uid: str
    frame_number: int
    position: tuple[float, float, float] | None


@dataclass(frozen=True, eq=False)
class SeriesVolume:
    """A series as a (slices, rows, columns) float32 array, modality LUT (rescale) applied,
    slices sorted along the slice normal (ImagePositionPatient) or, lacking geometry, by
    InstanceNumber then frame number. ``frames[i]`` says which instance/frame slice ``i``
    is."""

    pixels: npt.NDArray[np.float32]
    frames: tuple[FrameRef, ...]
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    pixel_spacing: tuple[float, float] | None
    slice_spacing: float | None

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.pixels.shape
        return (int(s[0]), int(s[1]), int(s[2]))


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _functional(ds: Dataset, index: int, sequence: str, attribute: str) -> Any:
    """An attribute from the per-frame functional group ``index``, else the shared group."""
    for groups_name, idx in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_name)
        if groups is None or len(groups) <= idx:
            continue
        inner = groups[idx].get(sequence)
        if inner and attribute in inner[0]:
            return inner[0].get(attribute)
    return None


def _frame_geometry(
    ds: Dataset, index: int, n_frames: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, tuple[float, float]]:
    """(position, orientation, (slope, intercept)) of frame ``index`` (0-based)."""
    if n_frames == 1 and "ImagePositionPatient" in ds:
        position = _floats(ds.get("ImagePositionPatient"), 3)
    else:
        position = _floats(_functional(ds, index, "PlanePositionSequence", "ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6) or _floats(
        _functional(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
    )
    slope_v = ds.get("RescaleSlope")
    intercept_v = ds.get("RescaleIntercept")
    if slope_v is None:
        slope_v = _functional(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
        intercept_v = _functional(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    slope = float(slope_v) if slope_v not in (None, "") else 1.0
    intercept = float(intercept_v) if intercept_v not in (None, "") else 0.0
    return position, orientation, (slope, intercept)


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    spacing = _floats(ds.get("PixelSpacing"), 2) or _floats(
        _functional(ds, 0, "PixelMeasuresSequence", "PixelSpacing"), 2
    )
    return None if spacing is None else (spacing[0], spacing[1])


def volume_from_datasets(datasets: Sequence[Dataset], *, max_voxels: int = DEFAULT_MAX_VOXELS) -> SeriesVolume:
    """Build the sorted volume of one series from its instances (single- or multi-frame).
    Instances without pixel data (e.g. a stray SR in the series) are left out."""
    if not datasets:
        raise UnsupportedSeries("the series has no instances")
    images = [ds for ds in datasets if "PixelData" in ds]
    if not images:
        raise UnsupportedSeries("the series has no instance with pixel data")
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in images}
    if len(series_uids) != 1:
        raise UnsupportedSeries(f"instances of {len(series_uids)} series given, expected one")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in images}
    if len(shapes) != 1:
        raise UnsupportedSeries(f"the series mixes frame sizes {sorted(shapes)}")
    rows, columns = shapes.pop()
    if any(int(ds.get("SamplesPerPixel", 1)) != 1 for ds in images):
        raise UnsupportedSeries("colour images are not supported (SamplesPerPixel != 1)")
    total = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in images) * rows * columns
    if total > max_voxels:
        raise UnsupportedSeries(f"the series has {total} voxels, more than the limit {max_voxels}")

    slices: list[npt.NDArray[np.float32]] = []
    refs: list[FrameRef] = []
    keys: list[tuple[float, int, str, int]] = []
    orientations: list[tuple[float, ...] | None] = []
    for ds in images:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        try:
            arr = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for missing decoders or bad data
            meta = getattr(ds, "file_meta", None)
            syntax = meta.get("TransferSyntaxUID", "?") if meta is not None else "?"
            raise UnsupportedSeries(
                f"cannot decode the pixels of {ds.get('SOPInstanceUID', '?')} ({syntax}): {exc}"
            ) from exc
        arr = np.asarray(arr).reshape(n_frames, rows, columns)
        instance_number = int(ds.get("InstanceNumber", 0) or 0)
        for i in range(n_frames):
            position, orientation, (slope, intercept) = _frame_geometry(ds, i, n_frames)
            frame = arr[i].astype(np.float32)
            if slope != 1.0 or intercept != 0.0:
                frame = frame * np.float32(slope) + np.float32(intercept)
            slices.append(frame)
            pos3 = None if position is None else (position[0], position[1], position[2])
            refs.append(FrameRef(str(ds.SOPInstanceUID), i + 1, pos3))
            orientations.append(orientation)
            keys.append((0.0, instance_number, str(ds.SOPInstanceUID), i + 1))

    normal: npt.NDArray[np.float64] | None = None
    first = orientations[0]
    if (
        first is not None
        and all(o is not None and np.allclose(o, first, atol=1e-3) for o in orientations)
        and all(r.position is not None for r in refs)
    ):
        row_dir = np.array(first[:3], dtype=np.float64)
        col_dir = np.array(first[3:], dtype=np.float64)
        normal = np.cross(row_dir, col_dir)
    if normal is not None:
        distances = [float(np.dot(normal, np.array(r.position))) for r in refs]
        keys = [(d, k[1], k[2], k[3]) for d, k in zip(distances, keys, strict=True)]
    order = sorted(range(len(refs)), key=lambda j: keys[j])

    slice_spacing: float | None = None
    if normal is not None and len(order) > 1:
        steps = np.diff([keys[j][0] for j in order])
        if steps.size and float(np.median(steps)) > 0:
            slice_spacing = float(np.median(steps))
    if slice_spacing is None:
        for name in ("SpacingBetweenSlices", "SliceThickness"):
            value = images[0].get(name)
            if value not in (None, ""):
                slice_spacing = float(value)
                break

    first_ds = images[0]
    return SeriesVolume(
        pixels=np.stack([slices[j] for j in order]).astype(np.float32, copy=False),
        frames=tuple(refs[j] for j in order),
        study_instance_uid=str(first_ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(first_ds.get("SeriesInstanceUID", "")),
        modality=str(first_ds.get("Modality", "")),
        pixel_spacing=_pixel_spacing(first_ds),
        slice_spacing=slice_spacing,
    )


def fetch_series_datasets(
    dicomweb_url: str,
    study_instance_uid: str,
    series_instance_uid: str,
    access_token: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 120.0,
    media_types: tuple[str | tuple[str, str], ...] | None = None,
) -> list[Dataset]:
    """All instances of the series (WADO-RS ``GET {dicomweb_url}/studies/{st}/series/{se}``)
    with ``Authorization: Bearer {access_token}``.

    ``media_types`` defaults to dicomweb-client's default (``application/dicom``, which a
    conformant server sends as Explicit VR Little Endian). dicomweb-client's own retries are
    switched off: the job runner owns retries. Failures are typed like the inference call's:
    401/403/404 and other 4xx -> :class:`PermanentError`; 408/429/5xx, connection and
    timeout -> :class:`TransientError`; an undecodable answer -> :class:`MalformedResponse`.
    """
    for label, uid in (("study", study_instance_uid), ("series", series_instance_uid)):
        if not is_uid(uid):
            raise PermanentError(f"the {label} instance UID {uid!r} is not a DICOM UID")
    # A fresh session per fetch: DICOMwebClient writes its headers (our token) into the
    # session, and a token is valid for one study only.
    with requests.Session() as session:
        client = DICOMwebClient(
            url=dicomweb_url.rstrip("/"),
            session=session,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=(connect_timeout, read_timeout),
        )
        client.set_http_retry_params(retry=False)
        where = f"DICOMweb {dicomweb_url} series {series_instance_uid}"
        try:
            datasets = client.retrieve_series(study_instance_uid, series_instance_uid, media_types=media_types)
        except requests.exceptions.HTTPError as exc:
            response = exc.response
            status = None if response is None else response.status_code
            body = b"" if response is None else response.content
            if status is not None and (status in (408, 429) or status >= 500):
                raise TransientError(f"{where}: answered {status}", status=status, body_excerpt=excerpt(body)) from exc
            raise PermanentError(f"{where}: answered {status}", status=status, body_excerpt=excerpt(body)) from exc
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"{where}: TLS failure: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"{where}: {exc}") from exc
        except (ValueError, KeyError, EOFError, InvalidDicomError) as exc:
            raise MalformedResponse(f"{where}: undecodable answer: {exc}") from exc
    if not datasets:
        raise PermanentError(f"{where}: the series has no instances", status=200)
    return datasets


def fetch_series_volume(
    dicomweb_url: str,
    study_instance_uid: str,
    series_instance_uid: str,
    access_token: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 120.0,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    media_types: tuple[str | tuple[str, str], ...] | None = None,
) -> tuple[SeriesVolume, list[Dataset]]:
    """:func:`fetch_series_datasets` then :func:`volume_from_datasets`; returns both (the
    datasets are what a caller needs to build DICOM results referencing the source)."""
    datasets = fetch_series_datasets(
        dicomweb_url,
        study_instance_uid,
        series_instance_uid,
        access_token,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        media_types=media_types,
    )
    volume = volume_from_datasets(datasets, max_voxels=max_voxels)
    if volume.series_instance_uid != series_instance_uid:
        raise MalformedResponse(f"DICOMweb returned series {volume.series_instance_uid}, not {series_instance_uid}")
    return volume, datasets
