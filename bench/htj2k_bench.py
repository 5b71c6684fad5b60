"""HTJ2K renditions: encode speed, ingest with HTJ2K on versus bare Orthanc, bytes served.

    .venv/bin/python -m bench.htj2k_bench [--slices 200] [--noise 0]

The study is the issue's recipe: N slices of a real 512x512 16-bit CT (pydicom-data's
693_UNCR) with new UIDs; ``--noise 8`` adds Gaussian noise (sigma 8) per slice, which is
closer to raw scanner output and much harder to compress. Both servers run here; the
upload uses 4 concurrent HTTP clients on loopback.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from bench.common import start_bare, start_gated
from neuronova.htj2k.codec import encode_rendition
from neuronova.multipart import parse as parse_multipart
from tests.support.dicom_factory import make_study, to_bytes


def build(slices: int, noise: float) -> tuple[list[bytes], int, object]:
    study = make_study("693_UNCR.dcm", patient_id="BENCH", patient_name="BENCH^HTJ2K", slices=slices)
    rng = np.random.default_rng(0)
    for ds in study.instances:
        if noise:
            pixels = ds.pixel_array.astype(np.int32) + rng.normal(0, noise, ds.pixel_array.shape).astype(np.int32)
            ds.PixelData = pixels.clip(-32768, 32767).astype(ds.pixel_array.dtype).tobytes()
    files = [to_bytes(ds) for ds in study.instances]
    pixel_bytes = sum(int(ds.Rows) * int(ds.Columns) * 2 for ds in study.instances)
    return files, pixel_bytes, study


def encode_speed(files: list[bytes], pixel_bytes: int, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode_rendition, files))
    return pixel_bytes / 1e6 / (time.perf_counter() - started)


def upload(base: str, files: list[bytes], auth: tuple[str, str] | None) -> float:
    session = requests.Session()
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for answer in pool.map(lambda blob: session.post(base + "/instances", data=blob, auth=auth, timeout=120),
                               files):
            answer.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    files, pixel_bytes, study = build(args.slices, args.noise)
    mb = pixel_bytes / 1e6
    print(f"{args.slices} slices 512x512x16 ({mb:.0f} MB of pixels), noise sigma {args.noise}, {cores} cores\n")
    encode_rendition(files[0])  # load the codecs
    one = encode_speed(files, pixel_bytes, 1)
    every = encode_speed(files, pixel_bytes, cores)
    print(f"encode+verify+package, in process: {one:6.1f} MB/s on 1 thread, {every:6.1f} MB/s on {cores} threads "
          f"({every / cores:.1f} MB/s per core)")

    bare = start_bare()
    gated, _ = start_gated({"NEURONOVA_JWT_SECRET": "bench-secret-0123456789abcdefghijklmnopq",
                            "NEURONOVA_ADMIN_PASSWORD": "bench-admin"})
    try:
        bare_seconds = upload(bare.base, files, None)
        started = time.perf_counter()
        gated_seconds = upload(gated.base, files, gated.admin)
        while True:
            stats = requests.get(gated.base + "/neuronova/htj2k/stats", auth=gated.admin, timeout=30).json()
            if stats["queued"] == 0 and stats["with_rendition"] + stats["failed"] + stats["skipped"] >= args.slices:
                break
            time.sleep(0.05)
        all_done = time.perf_counter() - started
        print(f"ingest, bare Orthanc:              {args.slices / bare_seconds:7.1f} instances/s "
              f"({mb / bare_seconds:6.1f} MB/s)")
        print(f"ingest, NeuroNova + HTJ2K:         {args.slices / gated_seconds:7.1f} instances/s "
              f"({mb / gated_seconds:6.1f} MB/s)  ratio {bare_seconds / gated_seconds:.2f}x bare")
        print(f"ingest until every rendition done: {args.slices / all_done:7.1f} instances/s "
              f"({mb / all_done:6.1f} MB/s end to end, {mb / all_done / cores:.1f} MB/s per core)  "
              f"ratio {bare_seconds / all_done:.2f}x bare")
        print(f"renditions: {stats['with_rendition']} done, {stats['failed']} failed, {stats['skipped']} skipped, "
              f"ratio {stats['compression_ratio']}:1, average encode {stats['average_encode_ms']} ms in a process")
        print(f"average wall time per stage (ms): {stats['average_stage_ms']}")

        s, se = study.study_uid, study.series_uids[0]  # type: ignore[attr-defined]
        sizes: dict[str, int] = {"htj2k": 0, "uncompressed": 0}
        for sop in study.sop_uids[:20]:  # type: ignore[attr-defined]
            path = f"{gated.base}/dicom-web/studies/{s}/series/{se}/instances/{sop}/frames/1"
            for label, ts in (("htj2k", "*"), ("uncompressed", "1.2.840.10008.1.2.1")):
                answer = requests.get(path, auth=gated.admin, timeout=30, headers={
                    "Accept": f'multipart/related; type="application/octet-stream"; transfer-syntax={ts}'})
                (part,) = parse_multipart(answer.content, answer.headers["Content-Type"])
                sizes[label] += len(part.body)
        print(f"bytes per frame served: HTJ2K {sizes['htj2k'] / 20:,.0f}, "
              f"uncompressed {sizes['uncompressed'] / 20:,.0f} ({sizes['uncompressed'] / sizes['htj2k']:.2f}x fewer)")
    finally:
        bare.stop()
        gated.stop()


if __name__ == "__main__":
    main()
