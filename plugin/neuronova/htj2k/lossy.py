"""Whether the original's own encoding shows that the image went through lossy compression.

The rendition is lossless, but it is a copy of what the original decodes to: if that was a
lossy JPEG, the rendition must still say Lossy Image Compression "01" (PS3.3 C.7.6.1.1.5:
once lossy, always flagged). An original that has the attribute keeps its value; one that
lacks it gets "01" only on evidence read from its codestreams, never by guessing:

- JPEG baseline / extended (.50, .51): always lossy (DCT).
- JPEG-LS near-lossless (.81): lossy when a scan has NEAR > 0.
- JPEG 2000 / HTJ2K that allow loss (.91, .93, .203): lossy when the 9/7 irreversible
  wavelet is used. (A reversible codestream truncated by the sender cannot be detected.)
"""

from __future__ import annotations

from collections.abc import Iterable

from . import codestream, syntaxes

_JPEG_METHOD = "ISO_10918_1"
_JPEG_LS_METHOD = "ISO_14495_1"
_J2K_METHODS = {
    syntaxes.JPEG_2000: "ISO_15444_1",
    syntaxes.JPEG_2000_MC: "ISO_15444_2",
    syntaxes.HTJ2K: "ISO_15444_15",
}

SOI, SOS = 0xFFD8, 0xFFDA


def lossy_method(transfer_syntax: str, frames: Iterable[bytes]) -> str | None:
    """The Lossy Image Compression Method (0028,2114) term when the encoded ``frames``
    of an original in ``transfer_syntax`` are evidently lossy, else None."""
    if transfer_syntax in (syntaxes.JPEG_BASELINE_8BIT, syntaxes.JPEG_EXTENDED_12BIT):
        return _JPEG_METHOD
    if transfer_syntax == syntaxes.JPEG_LS_NEAR_LOSSLESS:
        return _JPEG_LS_METHOD if any(_jpeg_ls_near(f) > 0 for f in frames) else None
    method = _J2K_METHODS.get(transfer_syntax)
    if method is not None:
        for frame in frames:
            try:
                if codestream.irreversible(frame):
                    return method
            except codestream.CodestreamError:
                continue  # not ours to judge; the decoder already accepted it
    return None


def _jpeg_ls_near(frame: bytes) -> int:
    """Largest NEAR parameter of the scans in a JPEG-LS frame (0 = lossless)."""
    near = 0
    pos = 2 if frame[:2] == SOI.to_bytes(2, "big") else 0
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            break
        marker = int.from_bytes(frame[pos : pos + 2], "big")
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if marker == SOS:
            components = frame[pos + 4]
            near_pos = pos + 5 + 2 * components
            if near_pos < len(frame):
                near = max(near, frame[near_pos])
            # Entropy-coded data follows; later scans (non-interleaved colour) are found by
            # searching for the next SOS marker, which cannot occur inside JPEG-LS data
            # (a 0xFF byte there is always followed by a bit-stuffed byte < 0x80).
            nxt = frame.find(b"\xff\xda", pos + 2 + length)
            if nxt < 0:
                break
            pos = nxt
            continue
        pos += 2 + length
    return near
