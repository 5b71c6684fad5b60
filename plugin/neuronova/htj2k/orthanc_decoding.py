"""Pixel work delegated to Orthanc's own decoders (DCMTK, and GDCM for JPEG 2000).

Why: decoding a stored file with third-party Python codecs (pydicom's handlers, pylibjpeg,
imagecodecs) inside Orthanc's process lets one malformed or merely unusual file crash or
hang Orthanc for everybody (issue 9: pydicom's ``JPEG-lossy.dcm`` asked uncompressed killed
it with SIGSEGV). Orthanc's decoders are the ones a plain Orthanc + DICOMweb serves with, so
delegating to them also answers exactly what a plain Orthanc answers.

- :func:`uncompressed_frame`: one frame through the DICOMweb plugin's frame route without
  ``Accept`` (an internal call carries none), which is its PS3.18 default, Explicit VR Little
  Endian: a ``multipart/related`` answer with one part (one frame per call: several parts
  cannot cross an internal call, docs/runtime-facts.md).
- :func:`original_frame`: one frame as stored, from Orthanc's ``/frames/{n}/raw``.
- :func:`uncompressed_instance`: the whole instance transcoded by Orthanc
  (``/instances/{id}/file?transcode=``, Orthanc 1.12.2+; Orthanc caches transcoded files).

A refusal of Orthanc's for a frame that exists becomes HTTP 406 with the reason, never a
mislabelled body: every answer is checked to be what its label will say.
"""

from __future__ import annotations

from ..dicomweb.paths import INTERNAL_ROOT
from ..errors import HttpError, OrthancCallError
from ..host import Host
from ..multipart import parse as parse_multipart
from . import syntaxes


def uncompressed_frame(host: Host, resource: str, number: int) -> bytes:
    """Frame ``number`` (1-based) of the instance at DICOMweb path ``resource``
    (``/studies/{uid}/series/{uid}/instances/{uid}``) in Explicit VR Little Endian."""
    try:
        body = host.rest_get(f"{INTERNAL_ROOT}{resource}/frames/{number}", after_plugins=True)
    except OrthancCallError as exc:
        raise HttpError(406, f"this frame cannot be served uncompressed: Orthanc's decoder refused it "
                             f"({exc.status} {exc.message})") from exc
    return _single_part(body, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)


def original_frame(host: Host, instance_id: str, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored, in the original's own transfer syntax."""
    try:
        return host.rest_get(f"/instances/{instance_id}/frames/{number - 1}/raw")
    except OrthancCallError as exc:
        raise HttpError(406, f"this frame cannot be served as stored: Orthanc cannot read it "
                             f"({exc.status} {exc.message})") from exc


def uncompressed_instance(host: Host, instance_id: str) -> bytes:
    """The instance as a Part 10 file in Explicit VR Little Endian, transcoded by Orthanc."""
    uri = f"/instances/{instance_id}/file?transcode={syntaxes.EXPLICIT_VR_LITTLE_ENDIAN}"
    try:
        data = host.rest_get(uri)
    except OrthancCallError as exc:
        raise HttpError(406, f"this instance cannot be served uncompressed: Orthanc's transcoder refused it "
                             f"({exc.status} {exc.message})") from exc
    found = part10_transfer_syntax(data)
    if found != syntaxes.EXPLICIT_VR_LITTLE_ENDIAN:
        raise HttpError(406, f"this instance cannot be served uncompressed: Orthanc transcoded it to {found!r}")
    return data


def _single_part(body: bytes, transfer_syntax: str) -> bytes:
    """The one part of a DICOMweb plugin ``multipart/related`` answer, checked to carry
    ``transfer_syntax`` (its part Content-Type says which)."""
    first_line = body.split(b"\r\n", 1)[0]
    if not first_line.startswith(b"--") or len(first_line) > 200:
        raise HttpError(502, "the DICOMweb plugin answered a frame that is not multipart")
    boundary = first_line[2:].decode("ascii", "replace")
    try:
        parts = parse_multipart(body, f"multipart/related; boundary={boundary}")
    except ValueError as exc:
        raise HttpError(502, f"the DICOMweb plugin answered a malformed multipart body: {exc}") from exc
    if len(parts) != 1:
        raise HttpError(502, f"the DICOMweb plugin answered {len(parts)} parts for one frame")
    label = _transfer_syntax_parameter(parts[0].content_type)
    if label != transfer_syntax:
        raise HttpError(406, f"Orthanc serves this frame as {label or parts[0].content_type!r}, "
                             f"not {transfer_syntax}")
    return bytes(parts[0].body)


def _transfer_syntax_parameter(content_type: str) -> str:
    """``transfer-syntax`` of a part Content-Type (DICOMweb 1.24 also writes ``transferSyntax``)."""
    for piece in content_type.split(";")[1:]:
        name, _, value = piece.partition("=")
        if name.strip().lower() in ("transfer-syntax", "transfersyntax"):
            return value.strip().strip('"')
    return ""


def part10_transfer_syntax(data: bytes) -> str:
    """The Transfer Syntax UID of a Part 10 file's meta, read without a DICOM library
    (the meta is always Explicit VR Little Endian), or "" when there is none."""
    if data[128:132] != b"DICM":
        return ""
    pos, end = 132, min(len(data), 132 + 64 * 1024)
    while pos + 8 <= end and data[pos:pos + 2] == b"\x02\x00":
        element = int.from_bytes(data[pos + 2:pos + 4], "little")
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR"):
            length, value_at = int.from_bytes(data[pos + 8:pos + 12], "little"), pos + 12
        else:
            length, value_at = int.from_bytes(data[pos + 6:pos + 8], "little"), pos + 8
        if element == 0x0010:
            return data[value_at:value_at + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = value_at + length
    return ""
