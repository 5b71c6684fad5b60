"""The fast path: renditions of native Explicit VR Little Endian monochrome originals.

Most images a PACS receives are uncompressed Explicit VR Little Endian CT/MR slices. For them
the rendition differs from the original only in the file meta's Transfer Syntax UID and in
the Pixel Data element, so instead of decoding the data set with pydicom and writing it back
(about 6 ms of GIL-holding Python per 512x512 slice), the rendition is spliced: the original's
bytes before and after Pixel Data are kept verbatim, the file meta is rewritten, and the
encapsulated codestreams go in between. The pixels are read as a zero-copy NumPy view.

Only originals whose stored bytes already are the values pydicom decodes them to take this
path (no unused high bits set, no sign extension needed); anything else returns None and
goes the general way (:func:`neuronova.htj2k.codec.encode_rendition`). Unit tests check that
both ways give the same data set and the same codestreams over pydicom's test files.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from . import syntaxes
from .encapsulation import BOT_LIMIT, REMOVED_TAGS, FrameSpan
from .pixels import PixelLayout, layout_of

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"}

Encoder = Callable[[NDArray[np.integer]], bytes]


def _end_of_file_meta(data: bytes) -> int:
    """Offset of the first data set element after the (always Explicit VR LE) file meta."""
    if data[128:132] != b"DICM":
        raise ValueError("no DICM prefix")
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos


def _values_are_decoded_values(frames: NDArray[np.integer], layout: PixelLayout) -> bool:
    """True when the stored integers equal what pydicom decodes (Bits Stored semantics)."""
    if layout.bits_stored == layout.bits_allocated:
        return True
    if layout.signed:
        low, high = -(1 << (layout.bits_stored - 1)), (1 << (layout.bits_stored - 1)) - 1
        return bool(frames.min() >= low and frames.max() <= high)
    return bool(frames.max() < (1 << layout.bits_stored))


Spliced = tuple[bytes, tuple[FrameSpan, ...], PixelLayout, list[bytes]]


def splice_rendition(data: bytes, encode: Encoder) -> Spliced | None:
    """(rendition file, frame spans, layout, codestreams), or None when the fast path does not apply."""
    fp = io.BytesIO(data)
    try:
        ds = dcmread(fp, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - the general path reports what is wrong
        return None
    if str(ds.file_meta.get("TransferSyntaxUID", "")) != syntaxes.EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    if any(tag in ds for tag in REMOVED_TAGS) or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    position = fp.tell()
    header = data[position : position + 12]
    if len(header) < 12 or header[:4] != _PIXEL_DATA_TAG or header[4:6] not in (b"OB", b"OW"):
        return None
    length = struct.unpack_from("<I", header, 8)[0]
    start, end = position + 12, position + 12 + length
    if length == 0xFFFFFFFF or end > len(data):
        return None
    ds.PixelData = b""  # layout_of only checks presence; the values are read below
    try:
        layout = layout_of(ds)
    except Exception:  # noqa: BLE001 - NotEncodable and friends: the general path decides
        return None
    expected = layout.frame_bytes * layout.frames
    if length not in (expected, expected + 1):  # a pad byte may follow odd-sized 8-bit data
        return None
    frames = np.frombuffer(data, dtype=layout.dtype.newbyteorder("<"), count=expected // layout.dtype.itemsize,
                           offset=start).reshape((layout.frames, *layout.frame_shape))
    if not _values_are_decoded_values(frames, layout):
        return None
    codestreams = [encode(np.ascontiguousarray(frame)) for frame in frames]
    if sum(8 + len(c) + (len(c) & 1) for c in codestreams) > BOT_LIMIT:
        return None  # needs an Extended Offset Table: the general path writes it

    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = UID(syntaxes.RENDITION_TRANSFER_SYNTAX)
    for keyword in ("ImplementationClassUID", "ImplementationVersionName", "FileMetaInformationGroupLength"):
        if keyword in meta:
            delattr(meta, keyword)
    out = DicomBytesIO()
    out.write(data[:128] + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    out.write(data[_end_of_file_meta(data) : position])
    out.write(_PIXEL_DATA_TAG + b"OB\x00\x00\xff\xff\xff\xff")
    pixel_start = out.tell()
    encapsulated = encapsulate(codestreams, has_bot=True)
    out.write(encapsulated)
    out.write(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")  # sequence delimitation item
    out.write(data[end:])
    spans = _spans(encapsulated, pixel_start, codestreams)
    return out.getvalue(), spans, layout, codestreams


def _spans(encapsulated: bytes, base: int, codestreams: list[bytes]) -> tuple[FrameSpan, ...]:
    """Where each codestream lies: after the Basic Offset Table item, one item per frame."""
    pos = 8 + struct.unpack_from("<I", encapsulated, 4)[0]  # skip the offset table item
    spans = []
    for codestream in codestreams:
        item_length = struct.unpack_from("<I", encapsulated, pos + 4)[0]
        spans.append(FrameSpan(base + pos + 8, len(codestream)))
        pos += 8 + item_length
    return tuple(spans)
