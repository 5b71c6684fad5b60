"""The one reader of DICOM attribute values as Orthanc and DICOMweb hand them over.

A value may come as a plain string (Orthanc's ``MainDicomTags``, ``simplified-tags``), an
Orthanc ``/tags`` entry (``{"Name": ..., "Type": "String", "Value": "..."}``), a DICOM JSON
attribute (PS3.18 F.2: ``{"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}``), a list, or
a pydicom value (``MultiValue``, ``PersonName``).

>>> text({"vr": "UI", "Value": ["1.2.3"]})
'1.2.3'
>>> text({"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]})
'DOE^JANE'
>>> tag_value({"0020000D": {"vr": "UI", "Value": ["1.2"]}}, "0020000D")
'1.2'
>>> tag_value({}, "00100010")
''
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["tag_value", "text", "uid_attribute"]


def text(value: Any) -> str:
    """The first value as text ("" when absent or empty)."""
    if isinstance(value, Mapping):
        if "Alphabetic" in value:  # a DICOM JSON person name
            return str(value.get("Alphabetic") or "").strip()
        value = value.get("Value")
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else ""
        if isinstance(value, Mapping):
            return text(value)
    return "" if value is None else str(value).strip()


def tag_value(item: Mapping[str, Any], tag: str) -> str:
    """The first value of ``tag`` (``"0020000D"``) in a DICOM JSON dataset."""
    return text(item.get(tag))


def uid_attribute(uid: str) -> dict[str, Any]:
    """A DICOM JSON UI attribute holding one UID."""
    return {"vr": "UI", "Value": [uid]}
