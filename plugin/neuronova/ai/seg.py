"""The binary DICOM Segmentation (SEG) of an AI job, built with highdicom."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .. import __version__
from .codes import AI_MARKER, BRAIN, MANUFACTURER, SEG_SERIES_NUMBER
from .geometry import check_sources, mask_stack
from .inputs import AiResult, result_uid, series_description


def build_segmentation(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    series_number: int = SEG_SERIES_NUMBER,
) -> Dataset | None:
    """A binary DICOM SEG of ``result.masks`` over ``sources`` (None when there are no masks).

    ``sources`` are the images the SEG references: the whole series for per-frame masks, or
    the one instance a seed-contract mask belongs to. highdicom fills what OHIF v3 needs to
    overlay it: ReferencedSeriesSequence, per-frame DerivationImageSequence/
    SourceImageSequence, Plane Position/Orientation, Pixel Measures. Empty frames are
    omitted unless every frame is empty (then all are kept, so that the SEG still states
    "nothing found")."""
    check_sources(sources)
    if not result.masks:
        return None
    stack = mask_stack(sources, result.masks)
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
    return hd.seg.Segmentation(
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
        series_description=series_description(result.model_type, spec.label),
    )
