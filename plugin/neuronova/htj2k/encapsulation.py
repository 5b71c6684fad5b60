"""The Part 10 rendition file, and where each frame's codestream sits inside it.

The rendition is the original data set, byte-for-byte in meaning (same SOP Instance UID: it is
another representation of the same instance), with only what PS3.5 requires for encapsulated
HTJ2K changed:

- File meta Transfer Syntax UID 1.2.840.10008.1.2.4.202; the Implementation Class UID is
  pydicom's (the writer of this file), every other meta element is kept.
- Pixel Data: one fragment per frame, Basic Offset Table; when offsets would not fit the
  32-bit Basic Offset Table, an empty one plus the Extended Offset Table (PS3.3 C.7.6.3).
- Colour: Photometric Interpretation YBR_RCT (the reversible colour transform is applied,
  PS3.5 8.2.4) and Planar Configuration 0.
- Lossy Image Compression: kept when present; set to "01" (with method) only when the
  original's codestreams prove lossy coding (see :mod:`.lossy`).
- Removed: the original's Extended Offset Table (it described other fragments) and the
  retired group lengths (gggg,0000), which would be wrong now (pydicom 3 drops them all when
  writing; removing 0028 and 7FE0 here keeps that true whatever pydicom does).
- An Explicit VR Big Endian original is converted: OW/OF/OL/OD/OV values are byte-swapped;
  UN values cannot be (their structure is unknown), so such an original is refused.

Every element is then written Explicit VR Little Endian, as the transfer syntax requires.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import NamedTuple

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from . import syntaxes
from .errors import NotEncodable
from .pixels import PixelLayout, number_of_frames

#: Basic Offset Table entries are 32-bit offsets from the first fragment (PS3.5 A.4).
BOT_LIMIT = 2**32 - 1

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
REMOVED_TAGS = (
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,  # Extended Offset Table Lengths
    0x00280000,  # group length, retired
    0x7FE00000,  # group length, retired
)
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class FrameSpan(NamedTuple):
    """Where one frame's codestream is in a rendition file: ``data[offset:offset+length]``."""

    offset: int
    length: int


def build_file(
    ds: Dataset,
    layout: PixelLayout,
    codestreams: Sequence[bytes],
    *,
    lossy_method: str | None = None,
    lossy_ratio: float | None = None,
    bot_limit: int = BOT_LIMIT,
) -> bytes:
    """Turn ``ds`` (the original, modified in place) into the rendition's Part 10 bytes.

    ``bot_limit`` is the largest encapsulated size written with a Basic Offset Table; it is a
    parameter so that tests can exercise the Extended Offset Table path on small data.
    """
    if layout.transfer_syntax == syntaxes.EXPLICIT_VR_BIG_ENDIAN:
        _to_little_endian(ds)
    for tag in REMOVED_TAGS:
        if tag in ds:
            del ds[tag]
    if layout.samples == 3:
        ds.PhotometricInterpretation = "YBR_RCT"
        ds.PlanarConfiguration = 0
    if lossy_method is not None and "LossyImageCompression" not in ds:
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = lossy_method
        if lossy_ratio is not None and "LossyImageCompressionRatio" not in ds:
            ds.LossyImageCompressionRatio = f"{lossy_ratio:.4g}"[:16]

    frames = list(codestreams)
    # Each item: 8-byte header + value padded to even length; offsets count from item 1.
    encapsulated_size = sum(8 + len(f) + (len(f) & 1) for f in frames)
    if encapsulated_size <= bot_limit:
        ds.PixelData = encapsulate(frames, has_bot=True)
    else:
        pixel_data, offsets, lengths = encapsulate_extended(frames)
        ds.PixelData = pixel_data
        ds.ExtendedOffsetTable = offsets
        ds.ExtendedOffsetTableLengths = lengths
    element = ds["PixelData"]
    element.VR = "OB"
    element.is_undefined_length = True

    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = UID(syntaxes.RENDITION_TRANSFER_SYNTAX)
    # pydicom fills in its own implementation (it wrote this file) and the group length
    for keyword in ("ImplementationClassUID", "ImplementationVersionName", "FileMetaInformationGroupLength"):
        if keyword in meta:
            delattr(meta, keyword)
    ds.file_meta = meta
    out = io.BytesIO()
    try:
        dcmwrite(out, ds, enforce_file_format=True)
    except MemoryError:
        raise
    except Exception as exc:  # e.g. a malformed element pydicom read leniently (VR None)
        raise NotEncodable(f"the data set cannot be written as Explicit VR LE: {exc}") from exc
    return out.getvalue()


def frame_spans(data: bytes) -> tuple[FrameSpan, ...]:
    """The (offset, length) of each frame's codestream in a rendition file.

    Parses the data set only up to Pixel Data, then walks the item headers (not the
    codestreams), so it is cheap even for large multi-frame renditions. A pad byte added
    after a codestream's EOC marker to make the item even is not part of the span.
    Raises ValueError for a file that is not a one-fragment-per-frame encapsulated
    Explicit VR Little Endian file.
    """
    fp = io.BytesIO(data)
    try:
        ds = dcmread(fp, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, struct.error) as exc:
        raise ValueError(f"not a DICOM Part 10 file: {exc}") from exc
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None or not UID(ts).is_encapsulated or UID(ts).is_implicit_VR:
        raise ValueError(f"not an encapsulated Explicit VR Little Endian file (syntax {ts})")
    try:
        frames = number_of_frames(ds)
    except NotEncodable as exc:
        raise ValueError(exc.reason) from exc
    pos = fp.tell()
    if len(data) < pos + 12:
        raise ValueError("the file ends before Pixel Data")
    tag = _tag(data, pos)
    length = struct.unpack_from("<I", data, pos + 8)[0]
    if tag != PIXEL_DATA or length != 0xFFFFFFFF:
        raise ValueError("no encapsulated Pixel Data (undefined length) where expected")
    pos += 12
    spans: list[FrameSpan] = []
    first = True
    while True:
        if pos + 8 > len(data):
            raise ValueError("Pixel Data is truncated")
        tag = _tag(data, pos)
        length = struct.unpack_from("<I", data, pos + 4)[0]
        pos += 8
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or pos + length > len(data):
            raise ValueError(f"bad item in Pixel Data at byte {pos - 8}")
        if not first:  # the first item is the Basic Offset Table
            spans.append(FrameSpan(pos, _unpadded(data, pos, length)))
        first = False
        pos += length
    if len(spans) != frames:
        raise ValueError(f"{len(spans)} fragments for {frames} frames: not one per frame")
    return tuple(spans)


def _tag(data: bytes, pos: int) -> int:
    group, element = struct.unpack_from("<HH", data, pos)
    return int(group << 16 | element)


def _unpadded(data: bytes, pos: int, length: int) -> int:
    """Length without the 0x00 pad that follows an EOC (FFD9) at an odd length."""
    if length >= 3 and data[pos + length - 1] == 0 and data[pos + length - 3 : pos + length - 1] == (b"\xff\xd9"):
        return length - 1
    return length


def _to_little_endian(ds: Dataset) -> None:
    """Byte-swap the values pydicom keeps as raw bytes, recursively, for LE writing."""
    for element in ds:
        if element.tag == PIXEL_DATA:
            continue  # replaced by the encapsulated codestreams
        if element.VR == "SQ":
            for item in element.value:
                _to_little_endian(item)
        elif element.VR == "UN" and element.value:
            raise NotEncodable(
                f"Explicit VR Big Endian original with a UN element {element.tag}: its byte order cannot be converted"
            )
        elif element.VR in _SWAP_WIDTH and element.value:
            _swap(element, _SWAP_WIDTH[element.VR])


def _swap(element: DataElement, width: int) -> None:
    raw = bytes(element.value)
    if len(raw) % width:
        raise NotEncodable(f"{element.tag} {element.VR} value has an odd length {len(raw)}")
    swapped = bytearray(raw)
    for i in range(width):
        swapped[i::width] = raw[width - 1 - i :: width]
    element.value = bytes(swapped)
