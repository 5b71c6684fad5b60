"""Transfer syntax UIDs and the PS3.18 media types that carry them.

Plain strings (no pydicom) so that :mod:`.negotiation` stays a dependency-free module.
"""

from __future__ import annotations

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
JPEG_2000_MC_LOSSLESS = "1.2.840.10008.1.2.4.92"
JPEG_2000_MC = "1.2.840.10008.1.2.4.93"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

#: The syntax of every rendition this package writes (PS3.5 A.4.4 / 10.18): lossless,
#: RPCL progression, TLM markers, lowest resolution <= 64 pixels.
RENDITION_TRANSFER_SYNTAX = HTJ2K_LOSSLESS_RPCL

#: Syntaxes whose constraints a rendition's codestream satisfies, so that a frame can be
#: labelled with whichever of them the client asked for. .202 = .201 (lossless, reversible)
#: + RPCL + TLM + small base resolution, and .203 allows any HTJ2K, so the same bytes are a
#: conformant .201 and .203 codestream. A whole Part 10 rendition is NOT relabelled: its
#: file meta says .202.
HTJ2K_FRAME_LABELS = (HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS, HTJ2K)

#: Native (not encapsulated) syntaxes: the frames are plain pixel bytes.
NATIVE = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    }
)

#: Native little-endian syntaxes: their frame bytes already are Explicit VR Little Endian
#: frame bytes (deflate applies to the whole data set, not to the pixels once inflated).
NATIVE_LITTLE_ENDIAN = NATIVE - {EXPLICIT_VR_BIG_ENDIAN}

#: PS3.18 Table 8.7.3-5: the media type of compressed bulk data for each syntax, and the
#: syntax a media type means when it comes without a ``transfer-syntax`` parameter.
MEDIA_TYPE_OF_SYNTAX = {
    JPEG_BASELINE_8BIT: "image/jpeg",
    JPEG_EXTENDED_12BIT: "image/jpeg",
    JPEG_LOSSLESS: "image/jpeg",
    JPEG_LOSSLESS_SV1: "image/jpeg",
    JPEG_LS_LOSSLESS: "image/jls",
    JPEG_LS_NEAR_LOSSLESS: "image/jls",
    JPEG_2000_LOSSLESS: "image/jp2",
    JPEG_2000: "image/jp2",
    JPEG_2000_MC_LOSSLESS: "image/jpx",
    JPEG_2000_MC: "image/jpx",
    RLE_LOSSLESS: "image/dicom-rle",
    HTJ2K_LOSSLESS: "image/jphc",
    HTJ2K_LOSSLESS_RPCL: "image/jphc",
    HTJ2K: "image/jphc",
}
DEFAULT_SYNTAX_OF_MEDIA_TYPE = {
    "image/jpeg": JPEG_LOSSLESS_SV1,
    "image/jls": JPEG_LS_LOSSLESS,
    "image/jp2": JPEG_2000_LOSSLESS,
    "image/jpx": JPEG_2000_MC_LOSSLESS,
    "image/dicom-rle": RLE_LOSSLESS,
    "image/jphc": HTJ2K_LOSSLESS,
    # Uncompressed bulk data and whole instances default to Explicit VR Little Endian.
    "application/octet-stream": EXPLICIT_VR_LITTLE_ENDIAN,
    "application/dicom": EXPLICIT_VR_LITTLE_ENDIAN,
}
