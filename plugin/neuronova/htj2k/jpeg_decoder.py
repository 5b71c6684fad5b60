"""A pydicom decoder plugin that decodes JPEG Lossless and 12-bit JPEG with imagecodecs.

Why: JPEG Lossless (.57, .70) is what many modalities send, but pydicom decodes it only with
pylibjpeg-libjpeg or GDCM, and Pillow cannot decode 12-bit JPEG Extended (.51). imagecodecs
(already needed for HTJ2K) bundles libjpeg-turbo 3, which decodes both, so registering it as
one more pydicom plugin covers these syntaxes without another dependency. pydicom keeps its
own post-processing (Bits Stored masking, sign, colour handling), so the decoded values are
exactly what pydicom would produce with its own plugins.

:func:`register` is idempotent and runs when :mod:`.pixels` is imported (module import is
serialised by the import lock; ``add_plugin`` itself is not thread-safe).
"""

from __future__ import annotations

import threading

import imagecodecs
import numpy as np
from pydicom import uid
from pydicom.pixels.decoders.base import DecodeRunner, get_decoder

LABEL = "neuronova-imagecodecs"

#: pydicom's plugin contract: what the plugin would need for each syntax.
DECODER_DEPENDENCIES = {
    uid.JPEGLossless: ("imagecodecs",),
    uid.JPEGLosslessSV1: ("imagecodecs",),
    uid.JPEGExtended12Bit: ("imagecodecs",),
}

_lock = threading.Lock()
_registered = False


def is_available(transfer_syntax: str) -> bool:
    """pydicom's plugin contract: can this plugin decode ``transfer_syntax`` here?"""
    return transfer_syntax in DECODER_DEPENDENCIES and imagecodecs.JPEG8.available


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom's plugin contract: one encoded frame -> its raw decoded bytes.

    Raw means no colour conversion (pydicom converts YBR to RGB itself when asked), in the
    byte size of the data set's Bits Allocated, colour-by-pixel.
    """
    samples = runner.samples_per_pixel
    if runner.transfer_syntax == uid.JPEGExtended12Bit and samples != 1:
        # Lossy colour JPEG is YCbCr with subsampling: leave it to Pillow/pylibjpeg.
        raise NotImplementedError("colour JPEG Extended is not decoded by this plugin")
    if samples == 3:
        # Same colour space in and out: libjpeg-turbo then returns the stored components.
        arr = imagecodecs.jpeg8_decode(src, colorspace=imagecodecs.JPEG8.CS.RGB, outcolorspace=imagecodecs.JPEG8.CS.RGB)
    else:
        arr = imagecodecs.jpeg8_decode(src)
    if arr.shape[:2] != (runner.rows, runner.columns):
        raise ValueError(
            f"decoded JPEG is {arr.shape[1]}x{arr.shape[0]}, the data set says {runner.columns}x{runner.rows}"
        )
    container = np.dtype(f"<u{(runner.bits_allocated + 7) // 8}")
    if arr.dtype.itemsize > container.itemsize:
        raise ValueError(f"JPEG precision exceeds (0028,0100) Bits Allocated {runner.bits_allocated}")
    if samples > 1:
        runner.set_option("planar_configuration", 0)  # we return colour-by-pixel
    # Unsigned container: pydicom reinterprets it with Pixel Representation and sign-extends
    # per Bits Stored (JPEG itself has no notion of sign).
    return np.ascontiguousarray(arr, dtype=container).tobytes()


def register() -> None:
    """Add this plugin to pydicom's decoders for the syntaxes it covers (once)."""
    global _registered
    with _lock:
        if _registered:
            return
        for transfer_syntax in DECODER_DEPENDENCIES:
            get_decoder(transfer_syntax).add_plugin(LABEL, (__name__, "decode_frame"))
        _registered = True
