"""HTJ2K encoding throughput and compression on realistic 512x512 16-bit stacks.

Two stacks of 200 slices are built from real images shipped with pydicom-data:

- MR: 512x512 windows cut at different positions out of a real 1024x1024 12-bit shoulder MR
  (MR2_UNCI.dcm), so every slice is different real anatomy with real acquisition noise.
- CT: a real 512x512 head CT slice (693_UNCI.dcm, signed), shifted by a few pixels and
  scaled by up to 2 % per slice, plus Gaussian noise of sigma 8 stored units (about what a
  clinical CT shows in HU): this phantom-like slice is unrealistically smooth on its own.

Each stack is encoded with 1 thread and with one thread per core, at three levels:
``htj2k_encode`` alone, ``encode_frame`` (encode + structure check + verifying decode), and
``encode_rendition`` (Part 10 in, decode, encode, verify, Part 10 out: what the plugin does
per instance). Throughput is MB/s of original (decoded) pixel data. Runtime is bounded
(about 40 s on 2 cores with the defaults). Not a test: it prints figures.

    python bench/htj2k_encode.py [--slices 200] [--threads N] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))

from neuronova.htj2k import codestream
from neuronova.htj2k.codec import encode_rendition
from neuronova.htj2k.encoder import encode_frame

SIZE = 512
Frame = NDArray[np.integer]


def _source(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    if path is None:
        sys.exit(f"{name} not found: install pydicom-data")
    return pydicom.dcmread(path)


def mr_stack(slices: int) -> tuple[pydicom.Dataset, list[Frame]]:
    ds = _source("MR2_UNCI.dcm")
    image = ds.pixel_array  # 1024x1024 uint16, 12 bits stored
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(slices):
        top, left = rng.integers(0, image.shape[0] - SIZE, size=2)
        frames.append(np.ascontiguousarray(image[top : top + SIZE, left : left + SIZE]))
    return ds, frames


def ct_stack(slices: int) -> tuple[pydicom.Dataset, list[Frame]]:
    ds = _source("693_UNCI.dcm")
    image = ds.pixel_array.astype(np.float64)  # 512x512 int16, 14 bits stored, signed
    rng = np.random.default_rng(2)
    frames = []
    for k in range(slices):
        shifted = np.roll(image, shift=(k % 7 - 3, k % 5 - 2), axis=(0, 1))
        scale = 1.0 + 0.02 * np.sin(k / 15.0)
        noisy = shifted * scale + rng.normal(0.0, 8.0, size=image.shape)
        frames.append(np.clip(np.rint(noisy), -8192, 8191).astype(np.int16))
    return ds, frames


def part10(template: pydicom.Dataset, frame: Frame) -> bytes:
    """One single-frame instance per slice, as a CT/MR series arrives."""
    ds = template.copy()
    ds.Rows, ds.Columns = frame.shape
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = frame.astype(frame.dtype.newbyteorder("<")).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def raw_encode(frame: Frame) -> bytes:
    return bytes(
        imagecodecs.htj2k_encode(
            frame,
            reversible=True,
            tlm=True,
            tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS,
            resolutions=codestream.decomposition_levels(*frame.shape[:2]),
        )
    )


def timed(work: Callable[[object], object], items: Sequence[object], threads: int, repeat: int) -> float:
    """Best of ``repeat`` wall times to run ``work`` over ``items`` with ``threads`` threads
    (the best, because other processes on the machine only ever add time)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        if threads == 1:
            for item in items:
                work(item)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(work, items))
        best = min(best, time.perf_counter() - started)
    return best


def report(label: str, pixel_bytes: int, seconds: dict[int, float]) -> None:
    one = seconds[1]
    for threads, elapsed in seconds.items():
        rate = pixel_bytes / elapsed / 1e6
        print(
            f"  {label:<18} {threads} thread{'s' if threads > 1 else ' '}: {elapsed:6.2f} s  "
            f"{rate:7.1f} MB/s total  {rate / threads:7.1f} MB/s per core  "
            f"speed-up x{one / elapsed:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    thread_counts = sorted({1, max(1, args.threads)})
    print(
        f"imagecodecs {imagecodecs.__version__} ({imagecodecs.htj2k_version()}), "
        f"pydicom {pydicom.__version__}, {os.cpu_count()} cores, {args.slices} slices {SIZE}x{SIZE}, "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine lowers the figures)"
    )
    for name, build in (("MR", mr_stack), ("CT", ct_stack)):
        template, frames = build(args.slices)
        pixel_bytes = sum(f.nbytes for f in frames)
        files = [part10(template, f) for f in frames]
        encoded = [raw_encode(f) for f in frames]
        ratio = pixel_bytes / sum(len(e) for e in encoded)
        print(
            f"\n{name} stack ({frames[0].dtype}, {template.BitsStored} bits stored): "
            f"{pixel_bytes / 1e6:.1f} MB of pixels, lossless ratio {ratio:.2f}:1 "
            f"(mean {sum(len(e) for e in encoded) / len(encoded) / 1024:.0f} KiB per slice)"
        )
        frame_items: list[object] = list(frames)
        file_items: list[object] = list(files)
        stages: list[tuple[str, Callable[[object], object], list[object]]] = [
            ("htj2k_encode", lambda f: raw_encode(f), frame_items),  # type: ignore[arg-type]
            ("encode_frame", lambda f: encode_frame(f), frame_items),  # type: ignore[arg-type]
            ("encode_rendition", lambda b: encode_rendition(b), file_items),  # type: ignore[arg-type]
        ]
        for label, work, items in stages:
            report(label, pixel_bytes, {t: timed(work, items, t, args.repeat) for t in thread_counts})
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
