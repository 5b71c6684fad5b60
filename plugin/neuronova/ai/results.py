"""DICOM result objects of an AI job: a Segmentation (SEG) and a TID 1500 Measurement Report.

Pure: no ``orthanc`` import, no I/O. Given the pydicom datasets of the series the model
analysed and the job's result, :func:`build_results` returns a binary SEG (one segment,
referencing every source instance, same study, new series) and a Comprehensive 3D SR
(TID 1500) carrying the risk score and confidence as numeric measurements (and the segment
volume, referencing the SEG), both built with highdicom; :func:`to_part10` gives the bytes to
store. :func:`is_ai_result` recognises these objects so that storing them never triggers a
new job.

Coded concepts (see also ``docs`` in the report of this module's author):

=============================  ==========================================================
what                           code
=============================  ==========================================================
risk score (NUM)               (NN-0001, 99NEURONOVA, "AI risk score"), unit (1, UCUM, "no units")
confidence (NUM)               (NN-0002, 99NEURONOVA, "AI model confidence"), unit UCUM "1"
segment volume (NUM, TID 1411) (118565006, SCT, "Volume"), unit (mm3, UCUM, "cubic millimeter")
procedure reported             (363679005, SCT, "Imaging procedure")
finding site                   (12738006, SCT, "Brain")
finding type, stroke_risk      (230690007, SCT, "Cerebrovascular accident (disorder)")
finding type, tumor_detection  (108369006, SCT, "Neoplasm")
algorithm family (SEG)         (123110, DCM, "Artificial Intelligence") (CID 7162)
observer                       device (121007, DCM, "Device"), manufacturer NeuroNova
segment "Hyperintensity"       category (49755003, SCT, "Morphologically Abnormal Structure"),
                               type (52988006, SCT, "Lesion")
segment "Brain"                category (91723000, SCT, "Anatomical Structure"),
                               type (12738006, SCT, "Brain")
segment "White matter          category (49755003, SCT), type (110702, DCM,
hyperintensity"                "White Matter T2 Hyperintensity")
=============================  ==========================================================

99NEURONOVA is a private coding scheme (PS3.3 8.2: "99" prefix), declared in the SR's
Coding Scheme Identification Sequence. DICOM has no standard concept for "AI risk score";
the nearest standard ones (DCM 122157 "Probability", DCM 111012 "Certainty of Finding") have
narrower meanings, so they are not borrowed.

UIDs are derived from the job id (name-based UUIDs under the 2.25 root), so building the
results of one job twice gives the same SOP Instance UIDs: a retried job stores the same
instances again instead of duplicates.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .. import __version__, dicom_json

# --------------------------------------------------------------------------- markers

MANUFACTURER = "NeuroNova"
#: ManufacturerModelName of every result object, and ContentLabel of the SEG.
AI_MARKER = "NEURONOVA_AI"
SERIES_DESCRIPTION_PREFIX = "NeuroNova AI "
SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902

# --------------------------------------------------------------------------- codes

CODING_SCHEME = "99NEURONOVA"
RISK_SCORE = Code("NN-0001", CODING_SCHEME, "AI risk score")
CONFIDENCE = Code("NN-0002", CODING_SCHEME, "AI model confidence")
HYPERINTENSITY_BURDEN = Code("NN-0003", CODING_SCHEME, "Hyperintensity burden")
NO_UNITS: Code = codes.UCUM.NoUnits
VOLUME: Code = codes.SCT.Volume
CUBIC_MILLIMETER: Code = codes.UCUM.CubicMillimeter
BRAIN: Code = codes.SCT.Brain
PROCEDURE_REPORTED: Code = codes.SCT.ImagingProcedure

#: Finding type of the score group, per model type (others get none).
FINDING_TYPES: dict[str, Code] = {
    "stroke_risk": codes.SCT.CerebrovascularAccident,
    "tumor_detection": codes.SCT.Neoplasm,
}

_NAMESPACE = uuid.UUID("5f0d5a3e-6c1b-4f3e-9a57-4e6575726f4e")  # fixed: keeps UIDs stable


@dataclass(frozen=True)
class SegmentSpec:
    """What the mask shows, in codes (segment label <= 64 characters)."""

    label: str
    category: Code
    property_type: Code
    display_rgb: tuple[int, int, int]


HYPERINTENSITY = SegmentSpec(
    "Hyperintensity", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, (255, 64, 64)
)
BRAIN_SEGMENT = SegmentSpec("Brain", codes.SCT.AnatomicalStructure, codes.SCT.Brain, (64, 160, 255))
WHITE_MATTER_HYPERINTENSITY = SegmentSpec(
    "White matter hyperintensity",
    codes.SCT.MorphologicallyAbnormalStructure,
    codes.DCM.WhiteMatterT2Hyperintensity,
    (255, 200, 0),
)
#: Segment specs by (case-insensitive) label, for mapping a service's ``segmentation_label``.
SEGMENTS: dict[str, SegmentSpec] = {
    s.label.lower(): s for s in (HYPERINTENSITY, BRAIN_SEGMENT, WHITE_MATTER_HYPERINTENSITY)
}


def segment_for_label(label: str | None) -> SegmentSpec:
    """The spec of a service's ``segmentation_label``: a known one by name, else the
    Hyperintensity codes under the service's own label (None gives Hyperintensity)."""
    if not label:
        return HYPERINTENSITY
    known = SEGMENTS.get(label.strip().lower())
    if known is not None:
        return known
    return SegmentSpec(
        label.strip()[:64], HYPERINTENSITY.category, HYPERINTENSITY.property_type, HYPERINTENSITY.display_rgb
    )


# --------------------------------------------------------------------------- inputs


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


@dataclass(frozen=True)
class ResultObjects:
    segmentation: Dataset | None
    report: Dataset

    def datasets(self) -> list[Dataset]:
        return [d for d in (self.segmentation, self.report) if d is not None]

    def part10(self) -> list[bytes]:
        return [to_part10(d) for d in self.datasets()]


# --------------------------------------------------------------------------- helpers


def result_uid(job_id: str, *parts: str) -> str:
    """A stable UID for one object of one job (``2.25.<name-based UUID>``)."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, "/".join((job_id, *parts))).int)


def _series_description(model_type: str, what: str) -> str:
    return f"{SERIES_DESCRIPTION_PREFIX}{model_type} {what}"[:64]


def _check_sources(sources: Sequence[Dataset]) -> None:
    if not sources:
        raise ValueError("no source datasets")
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in sources}
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in sources}
    if len(studies) != 1 or len(series) != 1:
        raise ValueError("the source datasets must be the instances of one series")


def _number_of_frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _mask_stack(sources: Sequence[Dataset], masks: Sequence[FrameMaskLike]) -> npt.NDArray[np.bool_]:
    """The (frames, rows, columns) array highdicom expects, aligned with ``sources``: one
    frame per single-frame source, or the frames of the one multi-frame source. Frames
    without a mask are empty; a mask for an unknown instance/frame is an error."""
    multi = [ds for ds in sources if _number_of_frames(ds) > 1]
    if multi and len(sources) > 1:
        raise ValueError("a SEG can reference several single-frame images or one multi-frame image")
    slots: dict[tuple[str, int], int] = {}
    shapes: list[tuple[int, int]] = []
    for ds in sources:
        for frame in range(1, _number_of_frames(ds) + 1):
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


def _slice_spacing(sources: Sequence[Dataset]) -> float | None:
    if len(sources) > 1 and all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds for ds in sources):
        iop = np.array([float(v) for v in sources[0].ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        distances = sorted(float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in sources)
        steps = np.diff(distances)
        if steps.size and float(np.median(steps)) > 0:
            return float(np.median(steps))
    first = sources[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = first.get(keyword)
        if value not in (None, ""):
            return float(value)
    shared = first.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            for keyword in ("SpacingBetweenSlices", "SliceThickness"):
                value = measures[0].get(keyword)
                if value not in (None, ""):
                    return float(value)
    return None


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    value = ds.get("PixelSpacing")
    if value is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        measures = shared[0].get("PixelMeasuresSequence") if shared else None
        value = measures[0].get("PixelSpacing") if measures else None
    if value is None or len(value) != 2:
        return None
    return float(value[0]), float(value[1])


def voxel_volume_mm3(sources: Sequence[Dataset]) -> float | None:
    """Volume of one voxel of the source series in mm3, when its geometry says so."""
    spacing = _pixel_spacing(sources[0])
    thickness = _slice_spacing(sources)
    if spacing is None or thickness is None:
        return None
    return spacing[0] * spacing[1] * thickness


# --------------------------------------------------------------------------- builders


def build_segmentation(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    series_number: int = SEG_SERIES_NUMBER,
) -> Dataset | None:
    """A binary DICOM SEG of ``result.masks`` over ``sources`` (None when there are no masks).

    highdicom fills what OHIF v3 needs to overlay it: ReferencedSeriesSequence, per-frame
    DerivationImageSequence/SourceImageSequence, Plane Position/Orientation, Pixel Measures.
    Empty frames are omitted unless every frame is empty (then all are kept, so that the SEG
    still states "nothing found")."""
    _check_sources(sources)
    if not result.masks:
        return None
    stack = _mask_stack(sources, result.masks)
    spec = result.segment
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"NeuroNova {result.model_type}"[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=(result.model_version or "unknown")[:64],
        source=MANUFACTURER,
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=spec.label[:64],
        segmented_property_category=spec.category,
        segmented_property_type=spec.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=result_uid(result.job_id, "segment", "1"),
        tracking_id=f"NeuroNova {result.model_type} {spec.label}"[:64],
        anatomic_regions=[BRAIN],
        display_color=hd.color.CIELabColor.from_rgb(*spec.display_rgb),
    )
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=result_uid(result.job_id, "seg", "series"),
        series_number=series_number,
        sop_instance_uid=result_uid(result.job_id, "seg", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=AI_MARKER,
        software_versions=f"NeuroNova {__version__}",
        device_serial_number=AI_MARKER,
        content_label=AI_MARKER,
        content_description=f"NeuroNova AI {result.model_type} {spec.label}"[:64],
        content_creator_name="NeuroNova^AI",
        omit_empty_frames=bool(stack.any()),
        series_description=_series_description(result.model_type, spec.label),
    )
    return seg


def build_report(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    segmentation: Dataset | None = None,
    series_number: int = SR_SERIES_NUMBER,
) -> Dataset:
    """A Comprehensive 3D SR, TID 1500 Measurement Report, with:

    - a TID 1501 group "NeuroNova {model} score": risk score and confidence (and
      ``extra_measurements``), finding site Brain, referencing every source image;
    - with ``segmentation``: a TID 1411 group referencing its segment 1 and the source
      series, with the segment volume in mm3 when the source geometry gives voxel sizes.
    """
    _check_sources(sources)
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"NeuroNova {result.model_type}"[:64], version=(result.model_version or "unknown")[:64]
    )
    measurements = [
        hd.sr.Measurement(name=RISK_SCORE, value=float(result.risk_score), unit=NO_UNITS, algorithm_id=algorithm),
        hd.sr.Measurement(name=CONFIDENCE, value=float(result.confidence), unit=NO_UNITS, algorithm_id=algorithm),
    ]
    measurements += [
        hd.sr.Measurement(name=m.name, value=float(m.value), unit=m.unit, algorithm_id=algorithm)
        for m in result.extra_measurements
    ]
    groups: list[Any] = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=result_uid(result.job_id, "sr", "score"),
                identifier=f"NeuroNova {result.model_type} score"[:64],
            ),
            finding_type=FINDING_TYPES.get(result.model_type),
            finding_sites=[hd.sr.FindingSite(BRAIN)],
            algorithm_id=algorithm,
            measurements=measurements,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds in sources],
        )
    ]
    evidence = list(sources)
    if segmentation is not None:
        volume_measurements = []
        voxel = voxel_volume_mm3(sources)
        if voxel is not None:
            volume = float(np.count_nonzero(_mask_stack(sources, result.masks))) * voxel
            volume_measurements.append(
                hd.sr.Measurement(name=VOLUME, value=volume, unit=CUBIC_MILLIMETER, algorithm_id=algorithm)
            )
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=result_uid(result.job_id, "segment", "1"),
                    identifier=f"NeuroNova {result.model_type} {result.segment.label}"[:64],
                ),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=str(segmentation.SOPClassUID),
                    sop_instance_uid=str(segmentation.SOPInstanceUID),
                    segment_number=1,
                    source_series=hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID)),
                ),
                finding_type=result.segment.property_type,
                finding_sites=[hd.sr.FindingSite(BRAIN)],
                algorithm_id=algorithm,
                measurements=volume_measurements or None,
            )
        )
        evidence.append(segmentation)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid("device", result.model_type),
            name=f"NeuroNova AI {result.model_type}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=AI_MARKER,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_REPORTED,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=result_uid(result.job_id, "sr", "series"),
        series_number=series_number,
        sop_instance_uid=result_uid(result.job_id, "sr", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=_series_description(result.model_type, "report"),
        manufacturer_model_name=AI_MARKER,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = CODING_SCHEME
    scheme.CodingSchemeName = "NeuroNova local codes for AI results"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    sr.SoftwareVersions = f"NeuroNova {__version__}"
    return sr


def build_results(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    seg_series_number: int = SEG_SERIES_NUMBER,
    sr_series_number: int = SR_SERIES_NUMBER,
) -> ResultObjects:
    """The SEG (when there are masks) and the SR referencing it."""
    seg = build_segmentation(sources, result, series_number=seg_series_number)
    sr = build_report(sources, result, segmentation=seg, series_number=sr_series_number)
    return ResultObjects(seg, sr)


def to_part10(ds: Dataset) -> bytes:
    """The DICOM Part 10 file (preamble, DICM, file meta) of ``ds``."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --------------------------------------------------------------------------- recognition

_TAGS = {
    "Manufacturer": ("Manufacturer", "0008,0070", "00080070"),
    "ManufacturerModelName": ("ManufacturerModelName", "0008,1090", "00081090"),
    "SeriesDescription": ("SeriesDescription", "0008,103e", "0008103e"),
    "ContentLabel": ("ContentLabel", "0070,0080", "00700080"),
}


def _lookup(tags: Mapping[str, Any], name: str) -> str:
    lowered = {str(k).lower().strip("()").replace(" ", ""): v for k, v in tags.items()}
    for key in _TAGS[name]:
        if key.lower() in lowered:
            return dicom_json.text(lowered[key.lower()])
    return ""


def is_ai_result(dataset_or_tags: Dataset | Mapping[str, Any]) -> bool:
    """Whether an instance or series is a NeuroNova AI result (never start a job on it).

    Accepts a pydicom Dataset or a mapping of tags keyed by keyword (Orthanc's
    ``MainDicomTags`` / ``simplified-tags``) or by tag (``"0008,0070"``, ``"00080070"``;
    values may be Orthanc ``/tags`` or DICOM JSON entries). True when ANY of: Manufacturer
    is "NeuroNova"; ManufacturerModelName or ContentLabel is "NEURONOVA_AI"; SeriesDescription
    starts with "NeuroNova AI ". Any one suffices on purpose: a false positive skips one
    series, a false negative would feed the AI its own output forever. Orthanc keeps
    Manufacturer and SeriesDescription among a series' main tags, so the series level is
    enough.
    """
    if isinstance(dataset_or_tags, Dataset):

        def get(name: str) -> str:
            return dicom_json.text(dataset_or_tags.get(name, ""))
    else:
        tags = dataset_or_tags

        def get(name: str) -> str:
            return _lookup(tags, name)

    if get("Manufacturer").lower() == MANUFACTURER.lower():
        return True
    if AI_MARKER in (get("ManufacturerModelName").upper(), get("ContentLabel").upper()):
        return True
    return get("SeriesDescription").lower().startswith(SERIES_DESCRIPTION_PREFIX.lower())
