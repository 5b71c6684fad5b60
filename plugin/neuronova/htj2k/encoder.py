"""One frame -> one HTJ2K codestream for transfer syntax .202, verified before it is kept.

imagecodecs (OpenJPH inside) encodes and decodes with the GIL released, so frames of
different instances can be encoded by a thread pool in parallel.

What imagecodecs decides for us (checked in :func:`encode_frame`, see :mod:`.codestream`):

- The codestream precision (SIZ) is the array's item size (8 or 16 bits), not Bits Stored:
  imagecodecs has no option for it. Lossless either way; 12-bit data costs nothing extra
  because HT coding skips the empty bit-planes. The DICOM Bits Stored stays the original's
  and decoders (OpenJPEG, OpenJPH, pydicom) return the same values.
- Signed data is encoded as signed components (int8/int16 arrays), so no level shift trick
  is needed and negative values round-trip.
- The progression order is OpenJPH's default, RPCL (imagecodecs exposes no option).
"""

from __future__ import annotations

import imagecodecs
import numpy as np
from numpy.typing import NDArray

from . import codestream
from .errors import VerificationError


def encode_frame(frame: NDArray[np.integer]) -> bytes:
    """Encode a (rows, columns) or (rows, columns, 3) integer array losslessly, check the
    codestream structure and that it decodes to exactly ``frame``."""
    rows, columns = frame.shape[:2]
    samples = 1 if frame.ndim == 2 else frame.shape[2]
    encoded = imagecodecs.htj2k_encode(
        frame,
        reversible=True,  # 5/3 wavelet, no quantisation: lossless
        tlm=True,  # PS3.5: TLM required for .202 (lets a client find resolution breaks)
        # one tile-part per resolution, so a prefix of the codestream is a thumbnail
        tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS,
        resolutions=codestream.decomposition_levels(rows, columns),
        # colour: reversible colour transform (RCT) on interleaved RGB; never planar
        # auto-detection, which imagecodecs applies to (3, H, W)-looking shapes
        planar=False if samples > 1 else None,
        rgb=True if samples > 1 else None,
    )
    data = bytes(encoded)
    verify(data, frame)
    return data


def verify(data: bytes, frame: NDArray[np.integer]) -> None:
    """Raise :class:`VerificationError` unless ``data`` is a .202 codestream that decodes
    bit-exactly to ``frame``."""
    rows, columns = frame.shape[:2]
    samples = 1 if frame.ndim == 2 else frame.shape[2]
    try:
        info = codestream.parse(data)
    except codestream.CodestreamError as exc:
        raise VerificationError(f"encoder output is not a codestream: {exc}") from exc
    problems = codestream.rpcl_problems(info, rows, columns, samples)
    if info.signed != (frame.dtype.kind == "i"):
        problems.append("codestream signedness differs from the pixels")
    if problems:
        raise VerificationError("; ".join(problems))
    try:
        decoded = imagecodecs.htj2k_decode(data)
    except Exception as exc:  # imagecodecs raises Htj2kError, ValueError, RuntimeError...
        raise VerificationError(f"the encoded frame does not decode: {exc}") from exc
    if decoded.shape != frame.shape or not np.array_equal(decoded, frame):
        raise VerificationError(_difference(decoded, frame))


def _difference(decoded: NDArray[np.generic], frame: NDArray[np.integer]) -> str:
    if decoded.shape != frame.shape:
        return f"decoded shape {decoded.shape} differs from the original {frame.shape}"
    wrong = int(np.count_nonzero(decoded != frame))
    return f"{wrong} of {frame.size} decoded samples differ from the original"
