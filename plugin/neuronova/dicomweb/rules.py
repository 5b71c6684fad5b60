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

__all__ = ["MAX_ANSWER_BYTES", "MAX_FRAMES", "MAX_VIEWPORT", "allowed_methods", "check_answer_size",
           "core_rendering_query", "frame_list", "json_accepted", "rendered_media_type", "rendering_query"]

_SEARCHES = ("/series", "/instances")
JSON_TYPES = frozenset({"application/dicom+json", "application/json", "application/*", "*/*"})
PNG, JPEG = "image/png", "image/jpeg"

# Bounds of one request's work (docs/configuration.md, "Bounds"): a frame list is at most
# MAX_FRAMES distinct numbers (duplicates are answered once) and one answer at most
# MAX_ANSWER_BYTES (413 beyond); a rendered image at most MAX_VIEWPORT pixels a side.
MAX_FRAMES = 1000
MAX_ANSWER_BYTES = 256 * 1024 * 1024
MAX_VIEWPORT = 4096
_MAX_WINDOW = 1e7  # window centre and width, in modality units (16-bit data spans 65536)
_WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")


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


def frame_list(numbers: tuple[int, ...]) -> tuple[int, ...]:
    """The distinct frame numbers of a request, in the order first asked; 400 when none, one
    is below 1, or more than :data:`MAX_FRAMES` are distinct.

    >>> frame_list((3, 1, 3, 3, 1))
    (3, 1)
    """
    distinct = tuple(dict.fromkeys(numbers))
    if not distinct or min(distinct) < 1:
        raise HttpError(400, "frame numbers start at 1")
    if len(distinct) > MAX_FRAMES:
        raise HttpError(400, f"at most {MAX_FRAMES} distinct frames in one request")
    return distinct


def check_answer_size(size: int) -> None:
    """413 when one answer would exceed :data:`MAX_ANSWER_BYTES` (ask for fewer frames)."""
    if size > MAX_ANSWER_BYTES:
        raise HttpError(413, f"the answer would exceed {MAX_ANSWER_BYTES // (1024 * 1024)} MiB: "
                             "ask for fewer frames per request")


def _integer(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError as exc:
        raise HttpError(400, f"{what} must be an integer") from exc
    if not low <= value <= high:
        raise HttpError(400, f"{what} must be between {low} and {high}")
    return value


def _real(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError as exc:
        raise HttpError(400, f"{what} must be a number") from exc
    if not -_MAX_WINDOW <= value <= _MAX_WINDOW:  # also refuses nan and inf
        raise HttpError(400, f"{what} must be between {-_MAX_WINDOW:g} and {_MAX_WINDOW:g}")
    return value


def rendering_query(query: dict[str, str]) -> dict[str, str]:
    """The PS3.18 rendering parameters of a /rendered or /thumbnail request, checked and
    bounded before Orthanc sees them (400 otherwise), written back in a canonical form;
    other parameters are left out. ``viewport=vw,vh[,sx,sy,sw,sh]`` with 1 <= vw, vh <=
    :data:`MAX_VIEWPORT`; ``window=center,width[,function]`` with width > 0 and function one
    of linear, linear-exact, sigmoid; ``quality`` 1..100.

    >>> rendering_query({"viewport": "64, 48", "window": "40,400,LINEAR", "quality": "90", "x": "1"})
    {'viewport': '64,48', 'window': '40,400,linear', 'quality': '90'}
    """
    checked: dict[str, str] = {}
    if "viewport" in query:
        values = query["viewport"].split(",")
        if len(values) not in (2, 6):
            raise HttpError(400, "viewport is vw,vh or vw,vh,sx,sy,sw,sh")
        sizes = [_integer(v, 1, MAX_VIEWPORT, "viewport width and height") for v in values[:2]]
        region = [_integer(v, -65535, 65535, "viewport region") for v in values[2:]]
        checked["viewport"] = ",".join(str(v) for v in sizes + region)
    if "window" in query:
        values = query["window"].split(",")
        if len(values) not in (2, 3):
            raise HttpError(400, "window is center,width[,function]")
        center, width = _real(values[0], "window center"), _real(values[1], "window width")
        if width <= 0:
            raise HttpError(400, "window width must be positive")
        function = values[2].strip().lower() if len(values) == 3 else ""
        if function and function not in _WINDOW_FUNCTIONS:
            raise HttpError(400, f"window function must be one of {', '.join(_WINDOW_FUNCTIONS)}")
        checked["window"] = ",".join([_number(center), _number(width), *([function] if function else [])])
    if "quality" in query:
        checked["quality"] = str(_integer(query["quality"], 1, 100, "quality"))
    return checked


def core_rendering_query(query: dict[str, str]) -> dict[str, str]:
    """PS3.18 rendering parameters as Orthanc's ``/instances/{id}/frames/{n}/rendered`` takes
    them: ``viewport=vw,vh[,...]`` -> width/height, ``window=center,width[,function]`` ->
    window-center/window-width. Values that are not numbers raise ``HttpError(400)``
    (DICOMweb 1.24 refuses them too); other parameters (quality, annotation) are left out.

    >>> core_rendering_query({"viewport": "64,48", "window": "40,400,linear", "quality": "90"})
    {'width': '64', 'height': '48', 'window-center': '40', 'window-width': '400'}
    """
    checked = rendering_query(query)  # bounded first: Orthanc never renders 60000x60000
    core: dict[str, str] = {}
    if "viewport" in checked:
        width, height = checked["viewport"].split(",")[:2]
        core.update(width=width, height=height)
    if "window" in checked:
        center, span = checked["window"].split(",")[:2]
        core.update({"window-center": center, "window-width": span})
    return core


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
