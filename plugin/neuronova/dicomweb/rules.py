"""What DICOMweb 1.24 allows on its resource paths, as pure functions: the methods (its
``Allow`` header on 405), and the ``Accept`` values of JSON and rendered answers (it refuses
the others with 400). The front applies them before forwarding, because internal calls carry
no headers: the DICOMweb plugin never sees the caller's method or ``Accept``.

>>> allowed_methods("/studies"), allowed_methods("/studies/1.2"), allowed_methods("/studies/1.2/metadata")
('GET,POST', 'GET,POST', 'GET')
>>> allowed_methods("/studies/1.2/nothing") is None
True
>>> json_accepted("application/dicom+json"), json_accepted("application/xml"), json_accepted(None)
(True, False, True)
>>> rendered_media_type("image/png"), rendered_media_type("*/*"), rendered_media_type("image/tiff")
('image/png', 'image/jpeg', None)
"""

from __future__ import annotations

from ..errors import HttpError
from ..htj2k.negotiation import parse_accept
from .paths import parse

__all__ = ["allowed_methods", "core_rendering_query", "json_accepted", "rendered_media_type"]

_SEARCHES = ("/series", "/instances")
JSON_TYPES = frozenset({"application/dicom+json", "application/json", "application/*", "*/*"})
PNG, JPEG = "image/png", "image/jpeg"


def allowed_methods(rest: str) -> str | None:
    """DICOMweb 1.24's ``Allow`` for a path below the root (``/studies...``), or None when the
    path is not one of its resources. ``/studies`` and ``/studies/{uid}`` take STOW-RS."""
    if rest == "/studies":
        return "GET,POST"
    if rest in _SEARCHES:
        return "GET"
    path = parse(rest)
    if path is None:
        return None
    return "GET,POST" if path.level == "study" and not path.tail else "GET"


def json_accepted(accept: str | None) -> bool:
    """Whether a DICOM JSON answer (QIDO, metadata) may be sent for this ``Accept``: DICOMweb
    1.24 refuses XML (``application/dicom+xml``, ``application/xml``) and anything else that
    is not JSON with 400."""
    return any(r.q > 0 and r.media_type in JSON_TYPES for r in parse_accept(accept))


def rendered_media_type(accept: str | None) -> str | None:
    """``image/png`` or ``image/jpeg`` for a /rendered or /thumbnail answer, or None (400).

    JPEG is DICOMweb's default (``*/*``, ``image/*``, no ``Accept``). DICOMweb 1.24 takes a
    single value only (a list is refused); here a list is read as a list, highest ``q`` first.
    """
    best: tuple[float, int] | None = None
    chosen: str | None = None
    for order, media_range in enumerate(parse_accept(accept)):
        kind = media_range.media_type
        mime = kind if kind in (PNG, JPEG) else JPEG if kind in ("*/*", "image/*") else None
        if mime is None or media_range.q <= 0:
            continue
        key = (-media_range.q, order)
        if best is None or key < best:
            best, chosen = key, mime
    return chosen


def core_rendering_query(query: dict[str, str]) -> dict[str, str]:
    """PS3.18 rendering parameters as Orthanc's ``/instances/{id}/frames/{n}/rendered`` takes
    them: ``viewport=vw,vh[,...]`` -> width/height, ``window=center,width[,function]`` ->
    window-center/window-width. Values that are not numbers raise ``HttpError(400)``
    (DICOMweb 1.24 refuses them too); other parameters (quality, annotation) are left out.

    >>> core_rendering_query({"viewport": "64,48", "window": "40,400,linear", "quality": "90"})
    {'width': '64', 'height': '48', 'window-center': '40', 'window-width': '400'}
    """
    core: dict[str, str] = {}
    viewport = [v.strip() for v in query.get("viewport", "").split(",") if v.strip()]
    window = [v.strip() for v in query.get("window", "").split(",") if v.strip()]
    try:
        if viewport:
            width, height = (int(v) for v in viewport[:2])
            core.update(width=str(width), height=str(height))
        if window:
            center, span = (float(v) for v in window[:2])
            core.update({"window-center": _number(center), "window-width": _number(span)})
    except ValueError as exc:
        raise HttpError(400, "viewport is vw,vh and window is center,width[,function]") from exc
    return core


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
