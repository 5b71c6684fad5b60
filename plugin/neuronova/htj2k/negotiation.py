"""PS3.18 content negotiation for WADO-RS frames and instances (pure: strings in, choice out).

The caller says what it can serve (:class:`Available`); :func:`negotiate_frames` and
:func:`negotiate_instance` read the ``Accept`` header and return a :class:`Choice` (which
representation to send, the Content-Type of each part including its ``transfer-syntax``
label, single part or ``multipart/related``) or raise :class:`NotAcceptable` (HTTP 406).

Rules (the label sent is always one the client accepted; a body is never mislabelled):

- HTJ2K rendition, for frames: ``transfer-syntax=*``, ``image/jphc``, or a
  ``transfer-syntax`` of .202, .201 or .203. The rendition's codestreams meet the
  constraints of all three (.202 = lossless .201 + RPCL + TLM; .203 allows any HTJ2K), so a
  frame is labelled with the UID the client asked for (``*`` gets .202; ``image/jphc``
  without a parameter means its PS3.18 default, .201).
- HTJ2K rendition, for instances: ``transfer-syntax=*`` or .202 only: the Part 10 file's
  meta says .202, so it cannot be offered under another UID.
- Uncompressed: ``application/octet-stream`` without ``transfer-syntax`` (PS3.18: it then
  means Explicit VR Little Endian) or with 1.2.840.10008.1.2.1; for instances
  ``application/dicom`` without a parameter or with 1.2.840.10008.1.2.1.
- Original as stored: its own transfer syntax asked explicitly (or ``*`` without a
  rendition), under ``application/octet-stream`` or the media type PS3.18 gives that syntax
  (``image/jp2``, ``image/jls``, ``image/jpeg``, ``image/dicom-rle``, ``image/jphc``).
- ``*/*`` (or no ``Accept``): the PS3.18 default, uncompressed in ``multipart/related``;
  if that cannot be produced, the original as stored.
- Among acceptable answers the highest ``q`` wins (``q=0`` excludes); at equal ``q`` the
  smaller one: HTJ2K, then the original as stored (when compressed), then uncompressed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import HttpError
from . import syntaxes

OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
MULTIPART = "multipart/related"


class Representation(enum.Enum):
    HTJ2K = "htj2k"  # the stored rendition (codestreams or its Part 10 file)
    ORIGINAL = "original"  # the original's bytes as stored, in its own syntax
    UNCOMPRESSED = "uncompressed"  # Explicit VR Little Endian, decoded if needed


#: At equal q, the order of preference (fewest bytes on the wire first).
_RANK = {Representation.HTJ2K: 0, Representation.ORIGINAL: 1, Representation.UNCOMPRESSED: 2}


class NotAcceptable(HttpError):
    """No representation matches the ``Accept`` header (HTTP 406)."""

    def __init__(self, message: str) -> None:
        super().__init__(406, message)


@dataclass(frozen=True)
class Available:
    """What the server can send for the requested instance or frames."""

    original_transfer_syntax: str
    has_htj2k: bool  # a verified rendition is stored
    can_uncompress: bool  # Explicit VR Little Endian can be produced (decoder available)


@dataclass(frozen=True)
class Choice:
    representation: Representation
    transfer_syntax: str  # the label: what the bytes are
    media_type: str  # of each part (or of the single body)
    multipart: bool  # wrap in multipart/related; False: the body is the single part

    @property
    def part_content_type(self) -> str:
        """Content-Type of each part (OHIF reads the transfer syntax from here only)."""
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


@dataclass(frozen=True)
class MediaRange:
    """One element of an ``Accept`` header."""

    media_type: str  # lower case, e.g. "multipart/related", "*/*"
    params: dict[str, str] = field(default_factory=dict)  # lower-case names, unquoted
    q: float = 1.0


def parse_accept(header: str | None) -> list[MediaRange]:
    """Split an ``Accept`` header into media ranges (quoted strings respected). A missing
    or blank header means ``*/*``; a range with an invalid ``q`` is dropped."""
    if header is None or not header.strip():
        return [MediaRange("*/*")]
    ranges = []
    for item in _split(header, ","):
        pieces = _split(item, ";")
        media_type = pieces[0].strip().lower()
        if not media_type:
            continue
        params: dict[str, str] = {}
        q = 1.0
        valid = True
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name = name.strip().lower()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].strip()
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    valid = False
                if not 0.0 <= q <= 1.0:
                    valid = False
            elif name:
                params[name] = value.lower() if name == "type" else value
        if valid:
            ranges.append(MediaRange(media_type, params, q))
    return ranges


def negotiate_frames(accept: str | None, available: Available, *, single_part_ok: bool = False) -> Choice:
    """Choose how to send pixel data frames. ``single_part_ok``: exactly one frame was
    asked, so a non-multipart ``Accept`` (e.g. ``image/jphc``) may be honoured."""
    return _best(
        accept,
        available,
        lambda r: _frame_options(r, available, single_part_ok),
        what="frames",
    )


def negotiate_instance(accept: str | None, available: Available) -> Choice:
    """Choose how to send a whole instance (Part 10 in ``multipart/related`` or alone)."""
    return _best(accept, available, lambda r: _instance_options(r, available), what="instance")


def instance_refusal_status(accept: str | None) -> int:
    """The status of a refused instance retrieval: 400, as DICOMweb 1.24 answers, when no
    range of ``accept`` names a DICOM instance in a transfer syntax DICOM defines (another
    media type, or an unknown ``transfer-syntax`` UID); 406 when one does but that
    representation cannot be produced here."""
    known = syntaxes.NATIVE | set(syntaxes.MEDIA_TYPE_OF_SYNTAX) | {"*"}
    for media_range in parse_accept(accept):
        if media_range.q <= 0:
            continue
        inner = media_range.params.get("type", DICOM) if media_range.media_type == MULTIPART else media_range.media_type
        if inner in (DICOM, "*/*") and media_range.params.get("transfer-syntax", "*") in known:
            return 406
    return 400


def _best(
    accept: str | None,
    available: Available,
    options: Callable[[MediaRange], Iterator[Choice]],
    *,
    what: str,
) -> Choice:
    best: tuple[float, int, int] | None = None
    chosen: Choice | None = None
    for order, media_range in enumerate(parse_accept(accept)):
        if media_range.q <= 0.0:
            continue
        for choice in options(media_range):
            key = (-media_range.q, _RANK[choice.representation], order)
            if best is None or key < best:
                best, chosen = key, choice
    if chosen is None:
        raise NotAcceptable(f"cannot send the {what} as {accept!r}; available: {_describe(available, what)}")
    return chosen


def _frame_options(media_range: MediaRange, available: Available, single_part_ok: bool) -> Iterator[Choice]:
    if media_range.media_type == "*/*":
        yield from _default(available, OCTET_STREAM, frames=True)
        return
    if media_range.media_type == MULTIPART:
        multipart = True
        media_type = media_range.params.get("type", OCTET_STREAM)
    elif single_part_ok:
        multipart = False
        media_type = media_range.media_type
    else:
        return
    requested = media_range.params.get("transfer-syntax")
    original = available.original_transfer_syntax
    original_is_compressed = original not in syntaxes.NATIVE
    if media_type == OCTET_STREAM:
        if requested in (None, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN) and available.can_uncompress:
            yield Choice(
                Representation.UNCOMPRESSED,
                syntaxes.EXPLICIT_VR_LITTLE_ENDIAN,
                OCTET_STREAM,
                multipart,
            )
        if requested is None:
            return
        if available.has_htj2k and requested in ("*", *syntaxes.HTJ2K_FRAME_LABELS):
            label = syntaxes.RENDITION_TRANSFER_SYNTAX if requested == "*" else requested
            yield Choice(Representation.HTJ2K, label, OCTET_STREAM, multipart)
        if original_is_compressed and requested in ("*", original):
            yield Choice(Representation.ORIGINAL, original, OCTET_STREAM, multipart)
        if requested == "*" and available.can_uncompress:
            yield Choice(
                Representation.UNCOMPRESSED,
                syntaxes.EXPLICIT_VR_LITTLE_ENDIAN,
                OCTET_STREAM,
                multipart,
            )
        return
    default = syntaxes.DEFAULT_SYNTAX_OF_MEDIA_TYPE.get(media_type)
    if default is None or media_type in (OCTET_STREAM, DICOM):
        return  # not a pixel data media type we know
    label = requested or default
    if media_type == "image/jphc" and available.has_htj2k:
        if label == "*":
            label = syntaxes.RENDITION_TRANSFER_SYNTAX
        if label in syntaxes.HTJ2K_FRAME_LABELS:
            yield Choice(Representation.HTJ2K, label, media_type, multipart)
    if syntaxes.MEDIA_TYPE_OF_SYNTAX.get(original) == media_type and label in ("*", original):
        yield Choice(Representation.ORIGINAL, original, media_type, multipart)


def _instance_options(media_range: MediaRange, available: Available) -> Iterator[Choice]:
    if media_range.media_type == "*/*":
        yield from _default(available, DICOM, frames=False)
        return
    if media_range.media_type == MULTIPART:
        multipart = True
        media_type = media_range.params.get("type", DICOM)
    else:
        multipart = False
        media_type = media_range.media_type
    if media_type != DICOM:
        return
    requested = media_range.params.get("transfer-syntax")
    original = available.original_transfer_syntax
    if available.has_htj2k and requested in ("*", syntaxes.RENDITION_TRANSFER_SYNTAX):
        yield Choice(Representation.HTJ2K, syntaxes.RENDITION_TRANSFER_SYNTAX, DICOM, multipart)
    if requested in ("*", original) or (requested is None and original == syntaxes.EXPLICIT_VR_LITTLE_ENDIAN):
        yield Choice(Representation.ORIGINAL, original, DICOM, multipart)
    if (
        requested in (None, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)
        and original != syntaxes.EXPLICIT_VR_LITTLE_ENDIAN
        and available.can_uncompress
    ):
        yield Choice(Representation.UNCOMPRESSED, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, DICOM, multipart)


def _default(available: Available, media_type: str, *, frames: bool) -> Iterator[Choice]:
    """``*/*``: PS3.18's default (Explicit VR Little Endian, multipart), else as stored."""
    original = available.original_transfer_syntax
    if original == syntaxes.EXPLICIT_VR_LITTLE_ENDIAN and not frames:
        yield Choice(Representation.ORIGINAL, original, media_type, True)
    elif available.can_uncompress:
        yield Choice(Representation.UNCOMPRESSED, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, media_type, True)
    elif not frames or original not in syntaxes.NATIVE:
        part_type = media_type if not frames else syntaxes.MEDIA_TYPE_OF_SYNTAX.get(original, media_type)
        yield Choice(Representation.ORIGINAL, original, part_type, True)


def _describe(available: Available, what: str) -> str:
    offers = []
    inner = OCTET_STREAM if what == "frames" else DICOM
    if available.has_htj2k:
        offers.append(f"{syntaxes.RENDITION_TRANSFER_SYNTAX} (HTJ2K)")
    if available.original_transfer_syntax not in syntaxes.NATIVE or what == "instance":
        offers.append(f"{available.original_transfer_syntax} (as stored)")
    if available.can_uncompress:
        offers.append(f"{syntaxes.EXPLICIT_VR_LITTLE_ENDIAN} (uncompressed)")
    return f'{MULTIPART}; type="{inner}" with transfer-syntax ' + ", ".join(offers)


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
