"""The TID 1500 Measurement Report (Comprehensive 3D SR) of an AI job, built with highdicom."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .. import __version__
from .codes import (
    AI_MARKER,
    BRAIN,
    CODING_SCHEME,
    CONFIDENCE,
    CUBIC_MILLIMETER,
    FINDING_TYPES,
    MANUFACTURER,
    NO_UNITS,
    PROCEDURE_REPORTED,
    RISK_SCORE,
    SR_SERIES_NUMBER,
    VOLUME,
)
from .geometry import check_sources, mask_stack, voxel_volume_mm3
from .inputs import AiResult, result_uid, series_description


def build_report(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    segmentation: Dataset | None = None,
    segmented: Sequence[Dataset] | None = None,
    series_number: int = SR_SERIES_NUMBER,
) -> Dataset:
    """A Comprehensive 3D SR, TID 1500 Measurement Report, with:

    - a TID 1501 group "NeuroNova {model} score": risk score and confidence (and
      ``extra_measurements``), finding site Brain, referencing every source image;
    - with ``segmentation``: a TID 1411 group referencing its segment 1 and the source
      series, with the segment volume in mm3 when the source geometry gives voxel sizes.
      ``segmented`` (default ``sources``) are the images the SEG covers.
    """
    check_sources(sources)
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
        covered = list(segmented or sources)
        volume_measurements = []
        voxel = voxel_volume_mm3(covered, spacing_from=sources)
        if voxel is not None:
            volume = float(np.count_nonzero(mask_stack(covered, result.masks))) * voxel
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
        series_description=series_description(result.model_type, "report"),
        manufacturer_model_name=AI_MARKER,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = CODING_SCHEME
    scheme.CodingSchemeName = "NeuroNova local codes for AI results"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    sr.SoftwareVersions = f"NeuroNova {__version__}"
    return sr
