"""Recognising NeuroNova's own AI results, so that storing them never triggers a job.

Pure and light (no highdicom): ``rules.py`` runs this on every series of every stable study.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset

from .. import dicom_json
from .codes import AI_MARKER, MANUFACTURER, SERIES_DESCRIPTION_PREFIX

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
