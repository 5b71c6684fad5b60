"""Reading an original instance's pixels: which layouts get a rendition, and its frames.

The rendition must carry exactly the values the original decodes to, so decoding is left
to pydicom (its plugins, Bits Stored masking, sign handling, J2K precision quirks) and this
module only decides what is encodable and normalises the arrays pydicom returns.

What gets a rendition (anything else raises :class:`NotEncodable`):

- Bits Allocated 8 or 16, signed or unsigned (HTJ2K could go further; DICOM viewers and
  the HTJ2K decoders they ship are only dependable up to 16 bits).
- One sample: MONOCHROME1, MONOCHROME2, PALETTE COLOR (kept as they are).
- Three samples whose decoded form is RGB: RGB (either Planar Configuration), and the
  JPEG 2000 YBR_RCT / YBR_ICT that every J2K decoder returns as RGB. The rendition applies
  the reversible colour transform and says YBR_RCT (PS3.5 8.2.4), which decoders also return
  as RGB, so a viewer using the original's metadata sees the same RGB values.
- Not YBR_FULL / YBR_FULL_422 / YBR_PARTIAL_*: converting them to RGB rounds (the stored
  values could not be recovered), and keeping them as YCbCr components would contradict the
  RGB a viewer decodes HTJ2K to. They are served from the original.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import get_expected_length, iter_pixels, pack_bits, pixel_array
from pydicom.uid import UID

from . import jpeg_decoder, syntaxes
from .errors import NotEncodable

jpeg_decoder.register()

MONOCHROME = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
#: Colour models that decode to RGB in every JPEG 2000 / HTJ2K decoder.
RGB_DECODED = ("RGB", "YBR_RCT", "YBR_ICT")
ENCODABLE_BITS = (8, 16)

FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)  # Float / Double Float Pixel Data

Frame = NDArray[np.integer]


@dataclass(frozen=True)
class PixelLayout:
    """The Image Pixel attributes that matter for encoding, as read from the original."""

    transfer_syntax: str
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar_configuration: int
    sop_instance_uid: str = ""  # recorded with the result (read here: the data set is parsed already)
    study_instance_uid: str = ""  # whose metadata advertises the rendition (dicomweb/metadata.py)

    @property
    def dtype(self) -> np.dtype[np.integer]:
        """Native-endian integer type of one sample (what imagecodecs reads)."""
        return np.dtype(f"{'i' if self.signed else 'u'}{self.bits_allocated // 8}")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        if self.samples == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.samples)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one decoded frame (what a viewer would otherwise download)."""
        return self.rows * self.columns * self.samples * self.bits_allocated // 8


def read_dataset(dicom_bytes: bytes) -> Dataset:
    """Parse a Part 10 file held in memory, or a bare data set as Orthanc stores it.

    Orthanc accepts a data set without the Part 10 header (no preamble, no ``DICM``, no file
    meta: what older modalities send) and stores those bytes as they came. Such a data set is
    Implicit VR Little Endian by default (PS3.5 10.1); pydicom reads it only when forced, so
    the file meta the rendition needs (its syntax, SOP class and instance) is filled in here.
    """
    try:
        if dicom_bytes[128:132] == b"DICM":
            return dcmread(io.BytesIO(dicom_bytes))
        return _bare_dataset(dicom_bytes)
    except MemoryError:
        raise
    except NotEncodable:
        raise
    except Exception as exc:  # pydicom raises many types on malformed files
        raise NotEncodable(f"not a readable DICOM Part 10 file: {exc}") from exc


def _bare_dataset(dicom_bytes: bytes) -> Dataset:
    ds = dcmread(io.BytesIO(dicom_bytes), force=True)
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise NotEncodable("not a readable DICOM Part 10 file, nor a data set with SOP Class and Instance UIDs")
    implicit, little_endian = ds.original_encoding
    if not little_endian:
        raise NotEncodable("not a readable DICOM Part 10 file, nor a little endian data set")
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(syntaxes.IMPLICIT_VR_LITTLE_ENDIAN if implicit is not False
                                 else syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    return ds


def transfer_syntax_of(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = None if meta is None else meta.get("TransferSyntaxUID")
    if not ts:
        raise NotEncodable("the file meta has no Transfer Syntax UID")
    return str(ts)


def number_of_frames(ds: Dataset) -> int:
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise NotEncodable(f"invalid Number of Frames {ds.get('NumberOfFrames')!r}") from exc
    if frames < 1:
        raise NotEncodable(f"invalid Number of Frames {frames}")
    return frames


def layout_of(ds: Dataset) -> PixelLayout:
    """The original's layout if it can have a rendition, else :class:`NotEncodable`."""
    if "PixelData" not in ds:
        if any(tag in ds for tag in FLOAT_PIXEL_TAGS):
            raise NotEncodable("float pixel data has no lossless HTJ2K form")
        raise NotEncodable("no Pixel Data")
    ts = transfer_syntax_of(ds)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1))
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
    except (AttributeError, TypeError, ValueError) as exc:
        raise NotEncodable(f"incomplete or invalid Image Pixel attributes: {exc}") from exc
    frames = number_of_frames(ds)
    if bits_allocated not in ENCODABLE_BITS:
        raise NotEncodable(f"Bits Allocated {bits_allocated}: only 8 and 16 are encoded")
    if not 1 <= bits_stored <= bits_allocated:
        raise NotEncodable(f"Bits Stored {bits_stored} with Bits Allocated {bits_allocated}")
    if rows < 1 or columns < 1:
        raise NotEncodable(f"empty image ({columns}x{rows})")
    if samples == 1 and photometric not in MONOCHROME:
        raise NotEncodable(f"Photometric Interpretation {photometric!r} with one sample")
    if samples == 3 and photometric not in RGB_DECODED:
        raise NotEncodable(f"Photometric Interpretation {photometric!r}: only RGB-decoded colour is encoded")
    if samples not in (1, 3):
        raise NotEncodable(f"Samples per Pixel {samples}")
    if samples == 3 and signed:
        raise NotEncodable("signed colour samples")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:  # e.g. video syntaxes: pydicom has no decoder class
        raise NotEncodable(f"no pixel data decoder for transfer syntax {ts}") from exc
    if not decoder.is_available:
        raise NotEncodable(f"no pixel data decoder installed for transfer syntax {ts}")
    return PixelLayout(
        transfer_syntax=ts,
        rows=rows,
        columns=columns,
        frames=frames,
        samples=samples,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=signed,
        photometric=photometric,
        planar_configuration=planar,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
    )


def iter_frames(ds: Dataset, layout: PixelLayout) -> Iterator[Frame]:
    """Decode the frames one at a time (memory stays at one frame, not the whole object),
    as C-contiguous native-endian arrays of ``layout.dtype`` and ``layout.frame_shape``."""
    count = 0
    decoded = iter_pixels(ds)
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            break
        except MemoryError:
            raise
        except Exception as exc:  # decoder plugins raise anything: RuntimeError, ValueError...
            raise NotEncodable(f"pixel data cannot be decoded: {exc}") from exc
        count += 1
        if count > layout.frames:
            break  # pydicom may find more JPEG frames than declared; the declared ones count
        yield normalise(frame, layout)
    if count < layout.frames:
        raise NotEncodable(f"pixel data holds {count} frames, Number of Frames says {layout.frames}")


def normalise(frame: NDArray[np.generic], layout: PixelLayout) -> Frame:
    """``frame`` as ``layout.dtype`` in native byte order, refusing any change of value."""
    if frame.shape != layout.frame_shape:
        raise NotEncodable(f"decoded frame has shape {frame.shape}, expected {layout.frame_shape}")
    if frame.dtype.kind not in "iu":
        raise NotEncodable(f"decoded samples are {frame.dtype}, not integers")
    target = layout.dtype
    if frame.dtype != target:
        # e.g. big-endian '>u2' from Explicit VR Big Endian, or uint8 from a J2K codestream of
        # precision 8 inside Bits Allocated 16: same values, other container.
        converted = frame.astype(target)
        if not np.array_equal(converted, frame):
            raise NotEncodable(f"decoded values do not fit {target} (Bits Allocated)")
        frame = converted
    return np.ascontiguousarray(frame)


def uncompressed_frame(dicom_bytes: bytes, number: int) -> bytes:
    """Frame ``number`` (1-based) as Explicit VR Little Endian pixel bytes, from any syntax.

    - Native little-endian originals (Implicit/Explicit VR LE, Deflated): the stored bytes,
      untouched (unused high bits included), as any DICOMweb server returns them.
    - Big endian and compressed originals: decoded by pydicom, written little-endian in the
      original's Bits Allocated; colour in the original's Planar Configuration. YCbCr-coded
      JPEG colour comes out as RGB, like every transcoder (DCMTK, Orthanc) produces it.
    - Bits Allocated 1: the frame's bits, packed little-endian bit order, padded to a byte.

    Only the header and the requested frame are read (pydicom decodes one frame from a
    file-like source), so serving frame after frame of a large multi-frame original does not
    parse or copy the whole Pixel Data each time.

    Third-party decoders run here: never call this inside Orthanc's process (issue 9). The
    server asks Orthanc's own decoders instead (:mod:`.orthanc_decoding`); this is the
    reference of what a frame holds, for tests and for work outside Orthanc.
    """
    fp = io.BytesIO(dicom_bytes)
    try:
        ds = dcmread(fp, stop_before_pixels=True)
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises many types on malformed files
        raise NotEncodable(f"not a readable DICOM Part 10 file: {exc}") from exc
    ts = transfer_syntax_of(ds)
    frames = number_of_frames(ds)
    if not 1 <= number <= frames:
        raise IndexError(f"frame {number} does not exist (the instance has {frames})")
    if ts in syntaxes.NATIVE_LITTLE_ENDIAN and ts != syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # Not deflated: file positions are positions in dicom_bytes.
        raw = _raw_native_frame(dicom_bytes, fp.tell(), ds, ts, number, frames)
        if raw is not None:
            return raw
    elif ts == syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        inflated = read_dataset(dicom_bytes)  # deflate: the whole data set must be inflated
        if "PixelData" not in inflated:
            raise NotEncodable("no Pixel Data (float pixel data is not served as frames)")
        raw = _frame_slice(inflated.PixelData, ds, number, frames)
        if raw is not None:
            return raw
    try:
        arr = pixel_array(io.BytesIO(dicom_bytes), index=number - 1)
    except MemoryError:
        raise
    except Exception as exc:  # same reason as in iter_frames
        raise NotEncodable(f"pixel data cannot be decoded: {exc}") from exc
    bits_allocated = int(ds.BitsAllocated)
    if bits_allocated == 1:
        return pack_bits(arr, pad=False)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    out = arr.astype(dtype, copy=False)
    if out.ndim == 3 and int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        out = out.transpose(2, 0, 1)  # colour-by-plane, as the metadata says
    return np.ascontiguousarray(out).tobytes()


def _raw_native_frame(data: bytes, position: int, ds: Dataset, ts: str, number: int, frames: int) -> bytes | None:
    """The stored bytes of a native little-endian frame, read from the Pixel Data element
    that starts at ``position`` in ``data`` (where pydicom stopped before pixels)."""
    start, length = _pixel_data_value(data, position, ts)
    return _frame_slice(memoryview(data)[start : start + length], ds, number, frames)


def _pixel_data_value(data: bytes, position: int, ts: str) -> tuple[int, int]:
    """(start, length) of the native Pixel Data value whose element starts at ``position``."""
    if data[position : position + 4] != b"\xe0\x7f\x10\x00":
        raise NotEncodable("no Pixel Data (float pixel data is not served as frames)")
    if ts == syntaxes.IMPLICIT_VR_LITTLE_ENDIAN:
        return position + 8, int.from_bytes(data[position + 4 : position + 8], "little")
    # explicit VR OB/OW: tag, VR, 2 reserved bytes, 4-byte length
    return position + 12, int.from_bytes(data[position + 8 : position + 12], "little")


@dataclass(frozen=True)
class NativeFrames:
    """Where the frames of a native little-endian original are: frame n (1-based) is
    ``data[start + (n - 1) * size : start + n * size]`` — a slice, no parsing."""

    start: int
    size: int
    count: int

    def frame(self, data: bytes, number: int) -> bytes:
        if not 1 <= number <= self.count:
            raise IndexError(f"frame {number} does not exist (the instance has {self.count})")
        offset = self.start + (number - 1) * self.size
        return data[offset : offset + self.size]


def native_frames(dicom_bytes: bytes) -> NativeFrames | None:
    """The frame layout of a native (not deflated) little-endian original whose frames are
    whole bytes, or None: such frames are then decoded by Orthanc (:mod:`.orthanc_decoding`).
    Computed once per instance by the server, so repeated frame requests only slice."""
    fp = io.BytesIO(dicom_bytes)
    try:
        ds = dcmread(fp, stop_before_pixels=True)
        ts = transfer_syntax_of(ds)
        if ts not in syntaxes.NATIVE_LITTLE_ENDIAN or ts == syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            return None
        frames = number_of_frames(ds)
        start, length = _pixel_data_value(dicom_bytes, fp.tell(), ts)
        total = get_expected_length(ds, "bytes")
    except Exception:  # noqa: BLE001 - anything unusual goes the general way
        return None
    samples = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    whole_bytes = int(ds.BitsAllocated) != 1 or (total // frames) * 8 == samples
    if total % frames or min(length, len(dicom_bytes) - start) < total or not whole_bytes:
        return None
    return NativeFrames(start, total // frames, frames)


def _frame_slice(pixel_data: bytes | memoryview, ds: Dataset, number: int, frames: int) -> bytes | None:
    """Frame ``number`` of native Pixel Data, or None when frames are not byte-aligned
    (Bits Allocated 1 with a frame size that is not a whole number of bytes)."""
    total = get_expected_length(ds, "bytes")
    if total % frames:
        return None
    size = total // frames
    samples = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    if int(ds.BitsAllocated) == 1 and size * 8 != samples:
        return None
    if len(pixel_data) < total:
        raise NotEncodable(f"Pixel Data holds {len(pixel_data)} bytes, {total} expected")
    start = (number - 1) * size
    return bytes(pixel_data[start : start + size])
