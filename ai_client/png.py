"""Binary masks as PNG, and PNG as base64 text (how the JSON contract carries masks).

Encoding: 8-bit greyscale, 0 = background, 255 = foreground, same rows x columns as the
image it belongs to. Decoding accepts any PNG a service may produce (1-bit, 8/16-bit grey,
palette, RGB(A)): a pixel is foreground when any colour sample is non-zero (alpha ignored).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Refuse to decode masks larger than this (a decompression-bomb guard; 16k x 16k).
MAX_MASK_PIXELS = 16384 * 16384


class MaskDecodeError(ValueError):
    """The text is not base64, not a PNG, or not a decodable image."""


def encode_mask_png(mask: npt.NDArray[np.bool_]) -> bytes:
    """PNG bytes of a 2-D boolean mask (8-bit greyscale, 0/255)."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, not shape {mask.shape}")
    pixels = np.where(mask, np.uint8(255), np.uint8(0)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def decode_mask_png(data: bytes, *, max_pixels: int = MAX_MASK_PIXELS) -> npt.NDArray[np.bool_]:
    """The boolean mask stored in PNG ``data`` (see module doc for what counts as foreground)."""
    if not data.startswith(PNG_SIGNATURE):
        raise MaskDecodeError("not a PNG (bad signature)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
            width, height = image.size
            if width * height > max_pixels:
                raise MaskDecodeError(f"mask of {width}x{height} pixels is too large")
            image.load()
            arr = np.asarray(image)
    except MaskDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        raise MaskDecodeError(f"undecodable PNG: {exc}") from exc
    if arr.ndim == 3:
        # colour: ignore alpha (LA keeps one grey sample, RGBA three colour samples)
        colour = arr[..., :1] if arr.shape[2] == 2 else arr[..., :3]
        return np.asarray(colour.any(axis=2), dtype=np.bool_)
    if arr.ndim != 2:
        raise MaskDecodeError(f"unexpected PNG array shape {arr.shape}")
    return np.asarray(arr != 0, dtype=np.bool_)


def mask_to_base64(mask: npt.NDArray[np.bool_]) -> str:
    return base64.b64encode(encode_mask_png(mask)).decode("ascii")


def mask_from_base64(text: str, *, max_pixels: int = MAX_MASK_PIXELS) -> npt.NDArray[np.bool_]:
    """Decode base64 (standard alphabet, padding required, no whitespace) then PNG."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MaskDecodeError(f"not valid base64: {exc}") from exc
    return decode_mask_png(data, max_pixels=max_pixels)
