"""HTJ2K renditions: encode speed, ingest with HTJ2K on versus bare Orthanc, bytes served.

    .venv/bin/python -m bench.htj2k_bench [--slices 200] [--noise 0] [--json]

The study is the issue's recipe: N slices of a real 512x512 16-bit CT (pydicom-data's
693_UNCR) with new UIDs; ``--noise 8`` adds Gaussian noise (sigma 8) per slice, which is
closer to raw scanner output and much harder to compress. Both servers run here; the
upload uses 4 concurrent HTTP clients on loopback. Both servers first ingest a small study
of their own (and the gated one encodes it), so neither run pays for start-up work; with
``--rounds`` the servers take turns in a rotating order (an upload's dirty pages slow the
next one's fsyncs).

The machine's limit (issue 12) is measured in the same run: ingesting and then encoding
everything one after the other, L = 1 / (1 / bare ingest MB/s + 1 / in-process
encode+verify+package MB/s on every core). ``--json`` prints, as the very last line, one
JSON object with the ratios (``end_to_end_vs_limit``, ``ingest_vs_bare``) and rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.common import BareOrthanc, OrthancServer, start_bare, start_gated
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


def cpu_seconds(session: int) -> tuple[float, float]:
    """CPU time (user + system) of Orthanc's process and of its other processes (the encoders)
    in the server's session: a figure that other load on the machine changes far less than
    wall times."""
    orthanc = others = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(fields[3]) != session:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if name == "Orthanc":
            orthanc += seconds
        else:
            others += seconds
    return orthanc, others


def upload(base: str, files: list[bytes], auth: tuple[str, str] | None) -> float:
    session = requests.Session()
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for answer in pool.map(lambda blob: session.post(base + "/instances", data=blob, auth=auth, timeout=120),
                               files):
            answer.raise_for_status()
    return time.perf_counter() - started


@dataclass
class Round:
    """One measurement on fresh data: the encoders alone, bare ingest, gated ingest and renditions."""

    encode_one: float  # MB/s, in process, one thread
    encode_every: float  # MB/s, in process, every core
    bare_seconds: float
    gated_seconds: float
    all_done_seconds: float  # from the gated upload's start until every rendition is stored
    stats: dict[str, Any]
    cpu_ms: dict[str, float]  # per instance: Orthanc's process during the ingest and after it, the encoders
    off_seconds: float | None = None  # the gated server with HTJ2K off (--gate-alone)

    @property
    def drain_seconds(self) -> float:
        """After the gated ingest: from its end until the last rendition is stored."""
        return self.all_done_seconds - self.gated_seconds

    def figures(self, mb: float) -> dict[str, float]:
        bare_rate, end_to_end = mb / self.bare_seconds, mb / self.all_done_seconds
        limit = 1 / (1 / bare_rate + 1 / self.encode_every)
        drain = self.drain_seconds  # against L's encode of the same slices
        return {"end_to_end_vs_limit": round(end_to_end / limit, 3),
                "drain_vs_encode": round(mb / self.encode_every / drain, 3) if drain > 0 else 0.0,
                "ingest_vs_bare": round(self.bare_seconds / self.gated_seconds, 3),
                "limit_mb_s": round(limit, 1), "end_to_end_mb_s": round(end_to_end, 1),
                "bare_ingest_mb_s": round(bare_rate, 1), "ingest_mb_s": round(mb / self.gated_seconds, 1),
                "encode_mb_s": round(self.encode_every, 1), "encode_mb_s_one_thread": round(self.encode_one, 1),
                **{f"cpu_ms_{key}": value for key, value in self.cpu_ms.items()},
                **({"gate_alone_ingest_vs_bare": round(self.bare_seconds / self.off_seconds, 3)}
                   if self.off_seconds else {})}


def measure(bare: BareOrthanc, gated: OrthancServer, off: OrthancServer | None, files: list[bytes],
            pixel_bytes: int, cores: int, expected: int, number: int) -> Round:
    """One round. The servers take turns in a rotating order (each upload leaves dirty pages
    that the next one's fsyncs pay for: a fixed order would favour whoever goes first); the
    gated server's renditions are all stored before the next upload starts."""
    one = encode_speed(files, pixel_bytes, 1)
    every = encode_speed(files, pixel_bytes, cores)
    seconds: dict[str, float] = {}
    gated_run: dict[str, Any] = {}

    def run_gated() -> None:
        session = gated.process.pid  # scripts/run starts a session: Orthanc and its encoders are in it
        cpu_start = cpu_seconds(session)
        started, started_at = time.perf_counter(), time.time()
        seconds["gated"] = upload(gated.base, files, gated.admin)
        cpu_ingested = cpu_seconds(session)
        at_end = requests.get(gated.base + "/neuronova/htj2k/stats", auth=gated.admin, timeout=30).json()
        print(f"when the ingest ended: {at_end['queued']} instances waiting ({at_end.get('held', 0)} encoded, "
              f"held), {at_end['in_flight']} in the encoders")
        gated_run["stats"] = stats = wait_for_renditions(gated, expected)
        # the server says when its last rendition was stored: exact, where polling is up to a poll late
        last = stats.get("last_stored_at")
        seconds["all_done"] = (last - started_at if last is not None and last > started_at
                               else time.perf_counter() - started)
        cpu_done, count = cpu_seconds(session), len(files)
        gated_run["cpu_ms"] = {
            "orthanc_ingest": round((cpu_ingested[0] - cpu_start[0]) / count * 1000, 2),
            "orthanc_renditions": round((cpu_done[0] - cpu_ingested[0]) / count * 1000, 2),
            "encoders": round((cpu_done[1] - cpu_start[1]) / count * 1000, 2),
        }

    turns: list[tuple[str, Any]] = [("bare", lambda: seconds.__setitem__("bare", upload(bare.base, files, None)))]
    if off is not None:
        turns.append(("off", lambda: seconds.__setitem__("off", upload(off.base, files, off.admin))))
    turns.append(("gated", run_gated))
    shift = (number - 1) % len(turns)
    order = turns[shift:] + turns[:shift]
    print(f"order: {', '.join(name for name, _ in order)}")
    for _, turn in order:
        turn()
    return Round(one, every, seconds["bare"], seconds["gated"], seconds["all_done"], gated_run["stats"],
                 gated_run["cpu_ms"], seconds.get("off"))


def report(number: int, result: Round, slices: int, mb: float, cores: int) -> None:
    f = result.figures(mb)
    stats = result.stats
    print(f"-- round {number}")
    print(f"encode+verify+package, in process: {f['encode_mb_s_one_thread']:6.1f} MB/s on 1 thread, "
          f"{f['encode_mb_s']:6.1f} MB/s on {cores} threads ({f['encode_mb_s'] / cores:.1f} MB/s per core)")
    print(f"ingest, bare Orthanc:              {slices / result.bare_seconds:7.1f} instances/s "
          f"({f['bare_ingest_mb_s']:6.1f} MB/s)")
    print(f"ingest, NeuroNova + HTJ2K:         {slices / result.gated_seconds:7.1f} instances/s "
          f"({f['ingest_mb_s']:6.1f} MB/s)  ratio {f['ingest_vs_bare']:.2f}x bare")
    if result.off_seconds:
        print(f"ingest, NeuroNova, HTJ2K off:      {slices / result.off_seconds:7.1f} instances/s "
              f"({mb / result.off_seconds:6.1f} MB/s)  ratio {f['gate_alone_ingest_vs_bare']:.2f}x bare "
              "(the gate alone)")
    print(f"ingest until every rendition done: {slices / result.all_done_seconds:7.1f} instances/s "
          f"({f['end_to_end_mb_s']:6.1f} MB/s end to end, {f['end_to_end_mb_s'] / cores:.1f} MB/s per core)  "
          f"ratio {result.bare_seconds / result.all_done_seconds:.2f}x bare")
    print(f"machine limit L = 1/(1/{f['bare_ingest_mb_s']:.1f} + 1/{f['encode_mb_s']:.1f}) = {f['limit_mb_s']:.1f} "
          f"MB/s; end to end = {f['end_to_end_vs_limit']:.2f} of L")
    print(f"after the ingest, until every rendition is stored: {result.drain_seconds:.2f} s, "
          f"{f['drain_vs_encode']:.2f}x the speed of the encode in process")
    print(f"renditions: {stats['with_rendition']} done, {stats['failed']} failed, {stats['skipped']} skipped, "
          f"ratio {stats['compression_ratio']}:1, average encode {stats['average_encode_ms']} ms in a process")
    print(f"average wall time per stage (ms, all rounds so far): {stats['average_stage_ms']}")
    cpu = result.cpu_ms
    print(f"CPU per instance: Orthanc's process {cpu['orthanc_ingest']} ms during the ingest, "
          f"{cpu['orthanc_renditions']} ms after it; the encoder processes {cpu['encoders']} ms; "
          f"originals read by the encoders: {stats.get('originals_read')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds on fresh data; the median round is reported")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    parser.add_argument("--gate-alone", action="store_true",
                        help="also ingest into a third server, NeuroNova with HTJ2K off: what the gate alone costs")
    parser.add_argument("--htj2k", default="{}", help='NeuroNova.Htj2k settings to try, e.g. \'{"ProcessNice": 10}\'')
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    files, pixel_bytes, study = build(args.slices, args.noise)
    mb = pixel_bytes / 1e6
    print(f"{args.slices} slices 512x512x16 ({mb:.0f} MB of pixels), noise sigma {args.noise}, {cores} cores, "
          f"{args.rounds} round(s)\n")
    encode_rendition(files[0])  # load the codecs

    secrets = {"NEURONOVA_JWT_SECRET": "bench-secret-0123456789abcdefghijklmnopq",
               "NEURONOVA_ADMIN_PASSWORD": "bench-admin"}
    servers: list[BareOrthanc | OrthancServer] = []  # stopped at the end, whatever fails
    folders: list[Path] = []  # their data (hundreds of MB a run): removed at the end
    rounds: list[Round] = []
    try:
        bare = start_bare()
        servers.append(bare)
        gated, folder = start_gated(secrets, overlay={"NeuroNova": {"Htj2k": json.loads(args.htj2k)}})
        servers.append(gated)
        folders.append(folder)
        off = None
        if args.gate_alone:
            off, folder = start_gated(secrets, overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}})
            servers.append(off)
            folders.append(folder)
        warm, _, _ = build(10, 0.0)
        upload(bare.base, warm, None)
        upload(gated.base, warm, gated.admin)
        if off is not None:
            upload(off.base, warm, off.admin)
        expected = len(warm)
        wait_for_renditions(gated, expected)
        for number in range(1, args.rounds + 1):
            if number > 1:
                files, _, _ = build(args.slices, args.noise)  # new UIDs: new instances
            expected += len(files)
            rounds.append(measure(bare, gated, off, files, pixel_bytes, cores, expected, number))
            report(number, rounds[-1], args.slices, mb, cores)
        s, se = study.study_uid, study.series_uids[0]  # type: ignore[attr-defined]
        sizes: dict[str, int] = {"htj2k": 0, "uncompressed": 0}
        for sop in study.sop_uids[:20]:  # type: ignore[attr-defined]
            path = f"{gated.base}/dicom-web/studies/{s}/series/{se}/instances/{sop}/frames/1"
            for label, ts in (("htj2k", "*"), ("uncompressed", "1.2.840.10008.1.2.1")):
                answer = requests.get(path, auth=gated.admin, timeout=30, headers={
                    "Accept": f'multipart/related; type="application/octet-stream"; transfer-syntax={ts}'})
                (part,) = parse_multipart(answer.content, answer.headers["Content-Type"])
                sizes[label] += len(part.body)
        print(f"\nbytes per frame served: HTJ2K {sizes['htj2k'] / 20:,.0f}, "
              f"uncompressed {sizes['uncompressed'] / 20:,.0f} ({sizes['uncompressed'] / sizes['htj2k']:.2f}x fewer)")
    finally:
        for server in servers:
            server.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    median = sorted(rounds, key=lambda r: r.figures(mb)["end_to_end_vs_limit"])[len(rounds) // 2]
    figures = median.figures(mb)
    print(f"median round: end to end {figures['end_to_end_vs_limit']:.2f} of the limit "
          f"({figures['end_to_end_mb_s']:.1f} of {figures['limit_mb_s']:.1f} MB/s), "
          f"ingest {figures['ingest_vs_bare']:.2f}x bare")
    if args.json:
        print(json.dumps({**figures, "rounds": [r.figures(mb) for r in rounds], "cores": cores,
                          "slices": args.slices, "noise": args.noise,
                          "average_stage_ms": median.stats["average_stage_ms"]}, separators=(",", ":")))


def wait_for_renditions(server: OrthancServer, instances: int, timeout: float = 600) -> dict[str, Any]:
    """Poll the stats until every instance has a result (bounded: ``timeout`` seconds). Every
    0.1 s: each poll costs the server ~2.5 ms of CPU, and the end time comes from the stats."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats: dict[str, Any] = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin,
                                             timeout=30).json()
        finished = stats["with_rendition"] + stats["failed"] + stats["skipped"]
        if not stats["encoding_enabled"]:  # --htj2k '{"Enabled": false}': the gate's own cost on ingest
            return stats
        if stats["queued"] == 0 and stats.get("in_flight", 0) == 0 and finished >= instances:
            return stats
        time.sleep(0.1)
    raise TimeoutError(f"renditions not done in {timeout} s")


if __name__ == "__main__":
    main()
