"""Where DICOMweb lives, and the one parser of DICOMweb paths.

The public root is served by the gate's front; the DICOMweb plugin is mounted at an internal
root that only the plugin itself reaches (internal REST calls).

>>> p = parse("/studies/1.2/series/3.4/instances/5.6/frames/1,2/rendered")
>>> (p.level, p.study, p.series, p.instance, p.frames, p.tail)
('instance', '1.2', '3.4', '5.6', (1, 2), '/frames/1,2/rendered')
>>> p.action
'rendered'
>>> parse("/studies/1.2/metadata").action
'metadata'
>>> parse("/studies/1.2").action
'retrieve'
>>> parse("/studies/1.2/series").action
'search'
>>> parse("/studies") is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["INTERNAL_ROOT", "PUBLIC_ROOT", "UID", "UID_RE", "WADO_URI_ROOT", "DicomWebPath", "parse",
           "route_label"]

PUBLIC_ROOT = "/dicom-web"
INTERNAL_ROOT = "/dicom-web-internal"
WADO_URI_ROOT = "/wado"

#: A DICOM UID as it may appear in a route: digits in dot-separated components.
UID = r"[0-9]+(?:\.[0-9]+)*"
UID_RE = re.compile(f"^{UID}$")

_TREE = re.compile(
    rf"^/studies/(?P<study>{UID})"
    rf"(?:/series/(?P<series>{UID})(?:/instances/(?P<instance>{UID}))?)?"
    r"(?P<tail>/.*)?$"
)
# What may follow a study, series or instance (PS3.18 10.4 and 10.6); anything else is not
# a DICOMweb resource the gate knows, hence admin-only.
_COMMON = r"|/metadata|/rendered|/thumbnail|/bulk/[0-9A-Fa-f./]+"
_FRAMES = r"/frames/(?P<frames>[0-9]+(?:,[0-9]+)*)"
_TAIL_BY_LEVEL = {
    "study": re.compile(rf"^(?:{_COMMON}|/series|/instances)$"),
    "series": re.compile(rf"^(?:{_COMMON}|/instances)$"),
    "instance": re.compile(rf"^(?:{_COMMON}|{_FRAMES}(?:/rendered|/thumbnail)?)$"),
}


@dataclass(frozen=True)
class DicomWebPath:
    """A path below a DICOMweb root that names a study, series or instance."""

    level: str  # "study", "series" or "instance"
    study: str
    series: str
    instance: str
    tail: str  # what follows the resource: "", "/metadata", "/frames/1,2", "/series", ...
    frames: tuple[int, ...] = ()  # frame numbers, as asked (duplicates kept)

    @property
    def action(self) -> str:
        """retrieve, metadata, rendered, thumbnail, bulk, frames or search (QIDO below a study)."""
        if not self.tail:
            return "retrieve"
        if self.tail in ("/series", "/instances"):
            return "search"
        last = self.tail.rsplit("/", 1)[-1]
        if last in ("metadata", "rendered", "thumbnail"):
            return last
        return "bulk" if self.tail.startswith("/bulk/") else "frames"

    @property
    def resource(self) -> str:
        """The path of the resource itself, without the tail."""
        path = f"/studies/{self.study}"
        if self.series:
            path += f"/series/{self.series}"
        if self.instance:
            path += f"/instances/{self.instance}"
        return path


def parse(rest: str) -> DicomWebPath | None:
    """Parse a path below the DICOMweb root (``rest`` starts with ``/studies/``); None when it
    is not a resource path that DICOMweb defines."""
    match = _TREE.match(rest)
    if match is None:
        return None
    study, series, instance, tail = match.group("study", "series", "instance", "tail")
    level = "instance" if instance else "series" if series else "study"
    tail = tail or ""
    shape = _TAIL_BY_LEVEL[level].match(tail) if tail else None
    if tail and shape is None:
        return None
    listed = shape.groupdict().get("frames") if shape else None
    frames = tuple(int(n) for n in listed.split(",")) if listed else ()
    return DicomWebPath(level, study, series or "", instance or "", tail, frames)


def route_label(tail: str) -> str:
    """``/frames/1,2`` -> ``/frames``; used to label audit rows without per-request detail."""
    parts = [p for p in tail.split("/") if p and not p[0].isdigit()]
    return "/" + "/".join(parts) if parts else ""
