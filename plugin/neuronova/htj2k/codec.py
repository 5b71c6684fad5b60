"""The public entry points of the HTJ2K codec: original bytes in, verified rendition out.

    rendition = encode_rendition(original_part10_bytes)   # NotEncodable / VerificationError
    rendition.data                    # the Part 10 file to store beside the instance
    rendition.frames[n - 1]           # FrameSpan(offset, length) of frame n in .data
    frame_spans(stored_bytes)         # the same spans, recomputed from a stored file
    uncompressed_frame(original, n)   # Explicit VR Little Endian bytes of frame n (reference
                                      # decoder: never called in Orthanc's process, see serving)

Pure: no Orthanc, no files; everything heavy (decoding, encoding, verification) happens in
pydicom's decoders and imagecodecs. Third-party decoders read stored data here, so these
entry points run outside Orthanc's process (the encoder processes of :mod:`.service`);
serving delegates decoding to Orthanc itself (:mod:`.orthanc_decoding`, issue 9).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydicom.encaps import generate_frames
from pydicom.uid import UID

from . import syntaxes
from .encapsulation import FrameSpan, build_file, frame_spans
from .encoder import encode_frame
from .errors import NotEncodable, VerificationError
from .lossy import lossy_method
from .pixels import PixelLayout, iter_frames, layout_of, read_dataset, uncompressed_frame
from .splice import splice_rendition

__all__ = [
    "FrameSpan",
    "NotEncodable",
    "Rendition",
    "VerificationError",
    "encode_rendition",
    "frame_spans",
    "uncompressed_frame",
]


@dataclass(frozen=True)
class Rendition:
    """A verified lossless HTJ2K rendition of one instance."""

    data: bytes  # the Part 10 file (transfer syntax .202)
    frames: tuple[FrameSpan, ...]  # codestream of frame n: data[offset:offset + length]
    transfer_syntax: str  # always syntaxes.RENDITION_TRANSFER_SYNTAX
    rows: int
    columns: int
    bits_allocated: int
    samples_per_pixel: int
    photometric_interpretation: str  # the rendition's (YBR_RCT for colour)
    source_transfer_syntax: str  # the original's
    original_pixel_bytes: int  # decoded size of all frames: what uncompressed would cost
    source_pixel_bytes: int  # the original's Pixel Data value as stored
    encoded_bytes: int  # sum of the codestreams
    encode_seconds: float  # wall time of the whole call (decode, encode, verify, write)
    sop_instance_uid: str = ""  # the original's
    study_instance_uid: str = ""  # the original's

    @property
    def number_of_frames(self) -> int:
        return len(self.frames)

    @property
    def compression_ratio(self) -> float:
        """Decoded pixel bytes per codestream byte."""
        return self.original_pixel_bytes / max(self.encoded_bytes, 1)

    def frame(self, number: int) -> memoryview:
        """The codestream of frame ``number`` (1-based, as in DICOMweb URLs), no copy."""
        if not 1 <= number <= len(self.frames):
            raise IndexError(f"frame {number} does not exist (1..{len(self.frames)})")
        offset, length = self.frames[number - 1]
        return memoryview(self.data)[offset : offset + length]


def encode_rendition(dicom_bytes: bytes) -> Rendition:
    """Encode every frame of the original losslessly as HTJ2K (.202) and verify it.

    Raises :class:`NotEncodable` when the instance has no rendition by design (see
    :mod:`.pixels` for what is encoded) and :class:`VerificationError` when an encoded
    frame would not give back exactly the original pixels; never returns a wrong rendition.
    """
    started = time.perf_counter()
    spliced = splice_rendition(dicom_bytes, encode_frame)
    if spliced is not None:
        data, spans, layout, codestreams = spliced
        _check_spans(data, spans, codestreams)
        pixel_bytes = layout.frame_bytes * layout.frames
        return Rendition(
            data=data, frames=spans, transfer_syntax=syntaxes.RENDITION_TRANSFER_SYNTAX, rows=layout.rows,
            columns=layout.columns, bits_allocated=layout.bits_allocated, samples_per_pixel=layout.samples,
            photometric_interpretation=layout.photometric, source_transfer_syntax=layout.transfer_syntax,
            original_pixel_bytes=pixel_bytes, source_pixel_bytes=pixel_bytes,
            encoded_bytes=sum(len(c) for c in codestreams), encode_seconds=time.perf_counter() - started,
            sop_instance_uid=layout.sop_instance_uid, study_instance_uid=layout.study_instance_uid,
        )
    ds = read_dataset(dicom_bytes)
    layout = layout_of(ds)
    source_pixel_bytes = len(ds.PixelData)
    method = _lossy_method(ds.PixelData, layout)
    codestreams = [encode_frame(frame) for frame in iter_frames(ds, layout)]
    original_pixel_bytes = layout.frame_bytes * layout.frames
    data = build_file(
        ds,
        layout,
        codestreams,
        lossy_method=method,
        lossy_ratio=original_pixel_bytes / max(source_pixel_bytes, 1),
    )
    spans = frame_spans(data)
    _check_spans(data, spans, codestreams)
    return Rendition(
        data=data,
        frames=spans,
        transfer_syntax=syntaxes.RENDITION_TRANSFER_SYNTAX,
        rows=layout.rows,
        columns=layout.columns,
        bits_allocated=layout.bits_allocated,
        samples_per_pixel=layout.samples,
        photometric_interpretation=str(ds.PhotometricInterpretation),
        source_transfer_syntax=layout.transfer_syntax,
        original_pixel_bytes=original_pixel_bytes,
        source_pixel_bytes=source_pixel_bytes,
        encoded_bytes=sum(len(c) for c in codestreams),
        encode_seconds=time.perf_counter() - started,
        sop_instance_uid=layout.sop_instance_uid,
        study_instance_uid=layout.study_instance_uid,
    )


def _check_spans(data: bytes, spans: tuple[FrameSpan, ...], codestreams: list[bytes]) -> None:
    view = memoryview(data)
    for number, (span, codestream) in enumerate(zip(spans, codestreams, strict=True), 1):
        if view[span.offset : span.offset + span.length] != codestream:
            raise VerificationError(f"frame {number} is not where its span says in the file")


def _lossy_method(pixel_data: bytes, layout: PixelLayout) -> str | None:
    """Evidence of lossy coding in the original's own codestreams (see :mod:`.lossy`)."""
    if not UID(layout.transfer_syntax).is_encapsulated:
        return None
    try:
        encoded = generate_frames(pixel_data, number_of_frames=layout.frames)
        return lossy_method(layout.transfer_syntax, encoded)
    except (ValueError, IndexError, EOFError):
        return None  # unreadable fragments: decoding reports it with a clear reason
