"""DICOM SEG and TID 1500 SR built from real MR datasets and the reference analysis, read
back with pydicom and highdicom."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_client import InferenceResult, volume_from_datasets
from ai_client.reference_service import infer_volume
from ai_client.testing import mr_head_series, mr_small
from neuronova.ai.codes import (
    AI_MARKER,
    CONFIDENCE,
    HYPERINTENSITY_BURDEN,
    RISK_SCORE,
    SEGMENTS,
    WHITE_MATTER_HYPERINTENSITY,
    segment_for_label,
)
from neuronova.ai.geometry import voxel_volume_mm3
from neuronova.ai.inputs import AiResult, FrameMask, NumericMeasurement, result_uid
from neuronova.ai.recognition import is_ai_result
from neuronova.ai.results import build_results, to_part10
from neuronova.ai.seg import build_segmentation
from neuronova.ai.sr import build_report


@pytest.fixture(scope="module")
def head() -> list[Dataset]:
    return mr_head_series()


@pytest.fixture(scope="module")
def inference(head: list[Dataset]) -> InferenceResult:
    return infer_volume(volume_from_datasets(head), "stroke_risk", job_id="job-7f3a")


def _ai_result(inference: InferenceResult, **changes: Any) -> AiResult:
    values: dict[str, Any] = {
        "job_id": inference.job_id,
        "model_type": "stroke_risk",
        "risk_score": inference.risk_score,
        "confidence": inference.confidence,
        "masks": inference.segmentation_frames,  # ai_client frames fit FrameMaskLike
        "model_version": inference.model_version or "",
        "segment": segment_for_label(inference.segmentation_label),
        "extra_measurements": [
            NumericMeasurement(HYPERINTENSITY_BURDEN, float(inference.details["burden"]), codes.UCUM.NoUnits)
        ],
    }
    values.update(changes)
    return AiResult(**values)


def _content_items(items: Any) -> Iterator[Dataset]:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _content_items(item.ContentSequence)


def _num(sr: Dataset, code: Any) -> float:
    values = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in _content_items(sr.ContentSequence)
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == code.value
    ]
    assert len(values) == 1
    return values[0]


def test_seg_and_sr_read_back(head: list[Dataset], inference: InferenceResult) -> None:
    objects = build_results(head, _ai_result(inference))
    assert objects.segmentation is not None
    seg_bytes, sr_bytes = objects.part10()
    assert seg_bytes[128:132] == b"DICM" and sr_bytes[128:132] == b"DICM"

    # ---- SEG
    seg = pydicom.dcmread(io.BytesIO(seg_bytes))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY" and seg.BitsAllocated == 1
    assert seg.StudyInstanceUID == head[0].StudyInstanceUID
    assert seg.SeriesInstanceUID != head[0].SeriesInstanceUID
    assert seg.PatientID == head[0].PatientID and seg.FrameOfReferenceUID == head[0].FrameOfReferenceUID
    assert (seg.Manufacturer, seg.ManufacturerModelName, seg.ContentLabel) == ("NeuroNova", AI_MARKER, AI_MARKER)
    assert seg.SeriesDescription == "NeuroNova AI stroke_risk Hyperintensity"
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == head[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in head
    }
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Hyperintensity" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "NeuroNova stroke_risk"
    # per-frame references (what OHIF uses to place each frame) carry the right pixels
    hd_seg = hd.seg.segread(io.BytesIO(seg_bytes))
    for frame in inference.segmentation_frames:
        pixels = hd_seg.get_pixels_by_source_instance([frame.sop_instance_uid], segment_numbers=[1])
        assert np.array_equal(pixels[0, :, :, 0].astype(bool), frame.mask)
    empty = [f for f in inference.segmentation_frames if not f.mask.any()]
    assert seg.NumberOfFrames == len(inference.segmentation_frames) - len(empty)  # empty frames omitted

    # ---- SR
    sr = pydicom.dcmread(io.BytesIO(sr_bytes))
    assert sr.Modality == "SR" and sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert sr.StudyInstanceUID == head[0].StudyInstanceUID and sr.SeriesInstanceUID not in (
        head[0].SeriesInstanceUID,
        seg.SeriesInstanceUID,
    )
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert sr.SeriesDescription == "NeuroNova AI stroke_risk report" and sr.ManufacturerModelName == AI_MARKER
    assert _num(sr, RISK_SCORE) == pytest.approx(inference.risk_score)
    assert _num(sr, CONFIDENCE) == pytest.approx(inference.confidence)
    assert _num(sr, HYPERINTENSITY_BURDEN) == pytest.approx(float(inference.details["burden"]))
    assert _num(sr, codes.SCT.Volume) == pytest.approx(float(inference.details["hyperintense_volume_mm3"]))
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99NEURONOVA"
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {ds.SOPInstanceUID for ds in head} | {seg.SOPInstanceUID}
    segment_refs = [
        item.ReferencedSOPSequence[0]
        for item in _content_items(sr.ContentSequence)
        if item.ValueType == "IMAGE" and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]
    ]
    assert [r.ReferencedSOPInstanceUID for r in segment_refs] == [seg.SOPInstanceUID]
    source_series = [
        item.UID
        for item in _content_items(sr.ContentSequence)
        if item.ValueType == "UIDREF" and item.ConceptNameCodeSequence[0].CodeValue == "121232"
    ]
    assert source_series == [head[0].SeriesInstanceUID]

    report = hd.sr.srread(io.BytesIO(sr_bytes))
    content = report.content
    assert isinstance(content, hd.sr.MeasurementReport)
    (volumetric,) = content.get_volumetric_roi_measurement_groups()
    assert volumetric.reference_type == codes.DCM.ReferencedSegment
    score_groups = content.get_image_measurement_groups()
    assert len(score_groups) == 1
    assert {m.name.value for m in score_groups[0].get_measurements()} == {"NN-0001", "NN-0002", "NN-0003"}


def test_uids_are_stable_per_job(head: list[Dataset], inference: InferenceResult) -> None:
    first = build_results(head, _ai_result(inference))
    again = build_results(head, _ai_result(inference))
    other = build_results(head, _ai_result(inference, job_id="job-other"))
    assert first.segmentation is not None and again.segmentation is not None and other.segmentation is not None
    assert (
        first.segmentation.SOPInstanceUID
        == again.segmentation.SOPInstanceUID
        == result_uid("job-7f3a", "seg", "instance")
    )
    assert first.report.SOPInstanceUID == again.report.SOPInstanceUID
    assert other.segmentation.SOPInstanceUID != first.segmentation.SOPInstanceUID
    assert len(first.report.SOPInstanceUID) <= 64 and first.report.SOPInstanceUID.startswith("2.25.")


def test_is_ai_result(head: list[Dataset], inference: InferenceResult) -> None:
    objects = build_results(head, _ai_result(inference))
    for ds in objects.datasets():
        assert is_ai_result(ds)
        assert is_ai_result(pydicom.dcmread(io.BytesIO(to_part10(ds))))
        # Orthanc series MainDicomTags, /tags?short, /tags and DICOM JSON shapes
        assert is_ai_result(
            {"Manufacturer": ds.Manufacturer, "SeriesDescription": ds.SeriesDescription, "Modality": ds.Modality}
        )
        assert is_ai_result({"0008,103E": str(ds.SeriesDescription)})
        assert is_ai_result({"0008,1090": {"Name": "ManufacturerModelName", "Type": "String", "Value": AI_MARKER}})
        assert is_ai_result({"00080070": {"vr": "LO", "Value": ["NeuroNova"]}})
    assert not is_ai_result(head[0])
    assert not is_ai_result(mr_small())
    assert not is_ai_result({"Manufacturer": "SIEMENS", "SeriesDescription": "t2_flair_tra", "Modality": "MR"})
    assert not is_ai_result({})


def test_single_mr_small_instance() -> None:
    ds = mr_small()
    inference = infer_volume(volume_from_datasets([ds]), "tumor_detection", job_id="job-small")
    objects = build_results([ds], _ai_result(inference, model_type="tumor_detection", extra_measurements=()))
    assert objects.segmentation is not None
    seg = hd.seg.segread(io.BytesIO(to_part10(objects.segmentation)))
    pixels = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID)], segment_numbers=[1])
    assert np.array_equal(pixels[0, :, :, 0].astype(bool), inference.segmentation_frames[0].mask)
    assert _num(objects.report, RISK_SCORE) == pytest.approx(inference.risk_score)
    finding = [
        item.ConceptCodeSequence[0].CodeValue
        for item in _content_items(objects.report.ContentSequence)
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == "121071"
    ]
    assert "108369006" in finding  # Neoplasm for tumor_detection
    assert voxel_volume_mm3([ds]) == pytest.approx(0.3125 * 0.3125 * 0.8)


def test_all_empty_masks_still_make_a_seg(head: list[Dataset]) -> None:
    masks = [FrameMask(str(ds.SOPInstanceUID), 1, np.zeros((64, 64), dtype=bool)) for ds in head]
    result = AiResult("job-empty", "stroke_risk", 0.01, 0.9, masks=masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "reverting to encoding all frames" warning
        seg = build_segmentation(head, result)
    assert seg is not None and seg.NumberOfFrames == len(head)
    sr = build_report(head, result, segmentation=seg)
    assert _num(sr, codes.SCT.Volume) == 0.0


def test_no_masks_means_report_only(head: list[Dataset]) -> None:
    objects = build_results(head, AiResult("job-score-only", "stroke_risk", 0.7, 0.6))
    assert objects.segmentation is None and len(objects.datasets()) == 1
    assert _num(objects.report, RISK_SCORE) == pytest.approx(0.7)
    assert not any(
        item.ValueType == "IMAGE" and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]
        for item in _content_items(objects.report.ContentSequence)
    )


def test_invalid_inputs(head: list[Dataset], inference: InferenceResult) -> None:
    with pytest.raises(ValueError, match="risk_score"):
        AiResult("j", "stroke_risk", 1.2, 0.5)
    with pytest.raises(ValueError, match="job_id"):
        AiResult("", "stroke_risk", 0.2, 0.5)
    stray = FrameMask("1.2.3.4", 1, np.zeros((64, 64), dtype=bool))
    with pytest.raises(ValueError, match="not a source frame"):
        build_segmentation(head, AiResult("j", "stroke_risk", 0.2, 0.5, masks=[stray]))
    wrong_shape = FrameMask(str(head[0].SOPInstanceUID), 1, np.zeros((32, 32), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        build_segmentation(head, AiResult("j", "stroke_risk", 0.2, 0.5, masks=[wrong_shape]))
    with pytest.raises(ValueError, match="one series"):
        build_report([*head, mr_small()], _ai_result(inference))
    with pytest.raises(ValueError, match="no source"):
        build_report([], _ai_result(inference))


def test_segment_for_label() -> None:
    assert segment_for_label(None) is SEGMENTS["hyperintensity"]
    assert segment_for_label(" White matter HYPERINTENSITY ") is WHITE_MATTER_HYPERINTENSITY
    custom = segment_for_label("Edema")
    assert custom.label == "Edema" and custom.property_type == codes.SCT.Lesion
