"""Where DICOMweb lives: the public root the gate serves and the internal root of the
DICOMweb plugin, which only the plugin itself reaches (internal REST calls)."""

PUBLIC_ROOT = "/dicom-web"
INTERNAL_ROOT = "/dicom-web-internal"
WADO_URI_ROOT = "/wado"


def route_label(tail: str) -> str:
    """``/frames/1,2`` -> ``/frames``; used to label audit rows without per-request detail."""
    parts = [p for p in tail.split("/") if p and not p[0].isdigit()]
    return "/" + "/".join(parts) if parts else ""
