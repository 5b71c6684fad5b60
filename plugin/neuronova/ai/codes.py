"""Markers and coded concepts of NeuroNova's AI result objects (pydicom only, no highdicom).

=============================  ==========================================================
what                           code
=============================  ==========================================================
risk score (NUM)               (NN-0001, 99NEURONOVA, "AI risk score"), unit (1, UCUM, "no units")
confidence (NUM)               (NN-0002, 99NEURONOVA, "AI model confidence"), unit UCUM "1"
hyperintensity burden (NUM)    (NN-0003, 99NEURONOVA, "Hyperintensity burden"), unit UCUM "1"
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
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

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
