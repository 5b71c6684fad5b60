"""Where DICOMweb lives: the public root the gate serves and the internal root of the
DICOMweb plugin, which only the plugin itself reaches (internal REST calls)."""

import re

PUBLIC_ROOT = "/dicom-web"
INTERNAL_ROOT = "/dicom-web-internal"
WADO_URI_ROOT = "/wado"

#: A DICOM UID as it may appear in a route: digits in dot-separated components.
UID = r"[0-9]+(?:\.[0-9]+)*"
UID_RE = re.compile(f"^{UID}$")


def route_label(tail: str) -> str:
    """``/frames/1,2`` -> ``/frames``; used to label audit rows without per-request detail."""
    parts = [p for p in tail.split("/") if p and not p[0].isdigit()]
    return "/" + "/".join(parts) if parts else ""
