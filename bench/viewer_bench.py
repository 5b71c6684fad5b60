"""OHIF in headless Chromium: time to the first rendered image and to a fully loaded 48-slice MR
series, with HTJ2K frames versus uncompressed frames, and a bare Orthanc for reference.

    .venv/bin/python -m bench.viewer_bench [--runs 3] [--slices 48] [--networks loopback,100]
        [--variants htj2k,uncompressed,bare] [--link chrome|tcp] [--timeline] [--json]

Three variants, measured in the same run on the same study, alternating:
- ``htj2k``:        NeuroNova, the generated app-config.js (frames asked with transfer-syntax=*)
- ``uncompressed``: NeuroNova, app-config.js with acceptHeader transfer-syntax=1.2.840.10008.1.2.1
- ``bare``:         stock Orthanc + DICOMweb 1.7 at /dicom-web/ (no gate, no HTJ2K), the same OHIF
                    files served to the browser from NeuroNova (playwright proxies /ohif/)
Each run opens a fresh browser context ("cold": OHIF's files downloaded too) and then opens the
study again in the same context ("warm": OHIF's immutable files come from the browser cache).
Times are the page's own clock (performance.now(), from navigation start): the first viewport
canvas with an image, and the moment every image of the series is decoded in cornerstone's cache.
Networks: ``loopback`` (no limit) and N = N Mbit/s with 2 ms latency: Chrome's emulation
(``--link chrome``, the default) or a throttled TCP proxy on loopback (``--link tcp``,
bench/viewer_link.py: the server's writes meet the link's back-pressure, as on a real network).
The ``uncompressed`` and ``bare`` variants intercept requests (playwright routes), which turns
Chromium's HTTP cache off for their context: their "warm" loads download OHIF again.

``--timeline`` prints, for the ``htj2k`` variant, what happened before the first image (the
page's own Resource Timing entries: OHIF's files, app-config.js, QIDO, metadata, frames), with
one line of milestones first (see :func:`milestones`).
``--json`` keeps the report and prints as its very last line one JSON object:
``{"first_image_s": {network: {"cold": s, "warm": s}}, "full_series_s": {...}, "variants": {...}}``
(the top-level figures are those of the ``htj2k`` variant, NeuroNova's default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.common import start_bare, start_gated
from bench.viewer_link import Link
from neuronova.viewer.settings import ACCEPT_ANY, ACCEPT_UNCOMPRESSED
from tests.support.browser import ARTIFACTS, Browser, Page, missing_tools
from tests.support.dicom_factory import to_bytes
from tests.support.viewer_data import make_mr_series

SECRET = "viewer-bench-secret-0123456789abcdefghijklmnop"
VARIANTS = ("htj2k", "uncompressed", "bare")

FIRST_IMAGE_JS = """() => {
  for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas, .viewport-element canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let lit = 0;
    for (let i = 0; i < data.length; i += 64) if (data[i] > 8) lit++;
    if (lit / (data.length / 64) > 0.02) return performance.now();
  }
  return false;
}"""

ALL_LOADED_JS = """(count) => {
  const cs = window.cornerstone;
  if (!cs || !cs.getEnabledElements) return false;
  const enabled = cs.getEnabledElements().find((e) => e.viewport && e.viewport.getImageIds);
  if (!enabled) return false;
  const ids = enabled.viewport.getImageIds();
  if (ids.length < count || !ids.every((id) => cs.cache.getImage(id))) return false;
  return performance.now();
}"""


# The page's own timeline: the navigation and every resource (same origin: full timings).
TIMELINE_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0] || {};
  return {
    nav: {end: nav.responseEnd || 0, ttfb: nav.responseStart || 0, dcl: nav.domContentLoadedEventEnd || 0,
          transfer: nav.transferSize || 0},
    resources: performance.getEntriesByType('resource').map((e) => ({
      url: e.name, start: e.startTime, ttfb: e.responseStart, end: e.responseEnd,
      transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
    })),
  };
}"""
# Enough room for OHIF's files, every frame and the DICOMweb requests of one load.
BUFFER_JS = "() => performance.setResourceTimingBufferSize(2000)"


@dataclass
class Load:
    first_ms: float
    full_ms: float
    frames: int
    frame_bytes: int
    syntaxes: set[str] = field(default_factory=set)
    encodings: set[str] = field(default_factory=set)
    timeline: dict[str, Any] = field(default_factory=dict)


def measure(page: Page, url: str, slices: int) -> Load:
    page.goto(url, waitUntil="commit")
    with contextlib.suppress(Exception):  # a navigation in progress: the default buffer is used
        page.evaluate(BUFFER_JS)
    first = float(page("waitForFunction", expression=FIRST_IMAGE_JS, timeout=120000, polling=20))
    full = float(page("waitForFunction", expression=ALL_LOADED_JS, arg=slices, timeout=180000, polling=20))
    timeline = dict(page.evaluate(TIMELINE_JS))
    frames = [e for e in page.network(clear=True) if "/frames/" in e["url"]]
    bad = [(e["status"], e["url"]) for e in frames if e["status"] != 200]
    if bad:
        raise RuntimeError(f"frame requests failed: {bad[:3]}")
    return Load(
        first, full, len(frames),
        sum(e["contentLength"] if e.get("contentLength", -1) >= 0 else e.get("bytes", 0) for e in frames),
        {e.get("part", {}).get("content-type", "?").split("transfer-syntax=")[-1] for e in frames},
        {e.get("contentEncoding") or "identity" for e in frames},
        timeline,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--networks", default="loopback,100", help="loopback and/or Mbit/s values, comma-separated")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="a comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--link", choices=("chrome", "tcp"), default="chrome",
                        help="how a Mbit/s network is made: Chrome's emulation or a throttled TCP proxy")
    parser.add_argument("--timeline", action="store_true", help="print what the htj2k loads did before the first image")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the very last line")
    args = parser.parse_args()
    variants = tuple(v for v in VARIANTS if v in {x.strip() for x in args.variants.split(",")})
    if not variants:
        raise SystemExit(f"--variants: choose among {', '.join(VARIANTS)}")
    problem = missing_tools()
    if problem:
        raise SystemExit(problem)

    study = make_mr_series(slices=args.slices, patient_id="BENCH", patient_name="BENCH^VIEWER")
    files = [to_bytes(ds) for ds in study.instances]
    print(f"study: {args.slices} x 484x484 MR slices, {sum(map(len, files)) / 1e6:.1f} MB")

    gated, folder = start_gated(env={"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "bench admin"})
    bare = start_bare()
    browser: Browser | None = None
    try:
        for blob in files:
            assert requests.post(gated.base + "/instances", data=blob, auth=gated.admin, timeout=60).ok
            assert requests.post(bare.base + "/instances", data=blob, timeout=60).ok
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = requests.get(f"{gated.base}/neuronova/htj2k/studies/{study.study_uid}", auth=gated.admin,
                                  timeout=30).json()
            if status.get("counts", {}).get("done", 0) >= args.slices:
                break
            time.sleep(0.25)
        print(f"HTJ2K renditions: {status.get('counts')}")
        stats = requests.get(gated.base + "/neuronova/htj2k/stats", auth=gated.admin, timeout=30).json()
        print(f"  original pixel bytes {stats.get('original_pixel_bytes')}, rendition bytes "
              f"{stats.get('rendition_bytes')} (ratio {stats.get('compression_ratio')})")

        import jwt

        token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 7200, "realm_access": {"roles": ["admin"]}},
                           SECRET, algorithm="HS256")
        config = requests.get(gated.base + "/ohif/app-config.js", timeout=30).text
        assert ACCEPT_ANY in config
        uncompressed_config = config.replace(ACCEPT_ANY, ACCEPT_UNCOMPRESSED)
        path = f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}&token={token}"

        browser = Browser()
        print(f"browser: Chromium {browser.version} (headless, Debian), playwright-core")
        results: dict[tuple[str, str, str], list[Load]] = {}
        networks = [n.strip() for n in args.networks.split(",") if n.strip()]
        for network in networks:
            links: list[Link] = []
            bases = {"gated": gated.base, "bare": bare.base}
            if network != "loopback" and args.link == "tcp":
                # One link per server, shared by every load of this network (as one line would be).
                for name, server_base in list(bases.items()):
                    links.append(Link(int(server_base.rsplit(":", 1)[1]), float(network), latency_ms=2))
                    bases[name] = f"http://127.0.0.1:{links[-1].port}"
            try:
                for run in range(args.runs):
                    shift = run % len(variants)
                    order = variants[shift:] + variants[:shift]
                    for variant in order:
                        page = browser.page(ARTIFACTS / "bench")
                        try:
                            if network != "loopback" and args.link == "chrome":
                                page("throttle", downloadMbit=float(network), latencyMs=2)
                            base = bases["gated"]
                            if variant == "uncompressed":
                                page("route", pattern="/ohif/app-config.js", body=uncompressed_config)
                            elif variant == "bare":
                                base = bases["bare"]
                                page("proxy", prefix=base + "/ohif/", target=gated.base + "/ohif/")
                            for phase in ("cold", "warm"):
                                load = measure(page, base + path, args.slices)
                                results.setdefault((network, variant, phase), []).append(load)
                            if run == 0:
                                page.screenshot(f"viewer-bench-{network}-{variant}")
                        finally:
                            page.close()
                    print(f"  {network}: run {run + 1}/{args.runs} done")
            finally:
                for link in links:
                    link.close()
        report(results, networks, variants)
        if args.timeline:
            timelines(results, networks)
        if args.json:
            print(json.dumps({**summary(results, networks, variants), "link": args.link}, sort_keys=True))
    finally:
        if browser is not None:
            browser.close()
        gated.stop()
        bare.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the gated server's data (the bare one removes its own)


def report(results: dict[tuple[str, str, str], list[Load]], networks: list[str],
           variants: tuple[str, ...] = VARIANTS) -> None:
    print()
    print("medians; first = first rendered image, full = every slice decoded (ms since navigation start)")
    header = (f"{'network':>9} {'variant':>13} {'phase':>5} {'first':>8} {'full':>8} {'frames':>6} "
              f"{'frame MB':>9}  frame syntax / encoding")
    print(header)
    for network in networks:
        for variant in variants:
            for phase in ("cold", "warm"):
                loads = results.get((network, variant, phase), [])
                if not loads:
                    continue
                syntaxes = ",".join(sorted(set().union(*(load.syntaxes for load in loads))))
                encodings = ",".join(sorted(set().union(*(load.encodings for load in loads))))
                print(f"{network:>9} {variant:>13} {phase:>5} {median([x.first_ms for x in loads]):8.0f} "
                      f"{median([x.full_ms for x in loads]):8.0f} {median([x.frames for x in loads]):6.0f} "
                      f"{median([x.frame_bytes for x in loads]) / 1e6:9.2f}  {syntaxes} / {encodings}")
    print()
    if set(variants) != set(VARIANTS):
        return
    for network in networks:
        for phase in ("cold", "warm"):
            def m(variant: str, key: str, phase: str = phase, network: str = network) -> float:
                loads: list[Any] = results.get((network, variant, phase), [])
                return median([getattr(x, key) for x in loads])

            first = m("htj2k", "first_ms") / m("uncompressed", "first_ms")
            print(f"{network} {phase}: HTJ2K/uncompressed first {first:.2f}x,"
                  f" full {m('htj2k', 'full_ms') / m('uncompressed', 'full_ms'):.2f}x,"
                  f" bytes {m('htj2k', 'frame_bytes') / m('uncompressed', 'frame_bytes'):.2f}x;"
                  f" NeuroNova HTJ2K/bare full {m('htj2k', 'full_ms') / m('bare', 'full_ms'):.2f}x")


def summary(results: dict[tuple[str, str, str], list[Load]], networks: list[str],
            variants: tuple[str, ...]) -> dict[str, Any]:
    """The medians in seconds, per variant, network and phase (the JSON line)."""
    def seconds(variant: str, network: str, key: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for phase in ("cold", "warm"):
            loads = results.get((network, variant, phase), [])
            out[phase] = round(median([getattr(x, key) for x in loads]) / 1000, 3) if loads else None
        return out

    by_variant = {variant: {
        "first_image_s": {network: seconds(variant, network, "first_ms") for network in networks},
        "full_series_s": {network: seconds(variant, network, "full_ms") for network in networks},
    } for variant in variants}
    main_variant = "htj2k" if "htj2k" in variants else variants[0]
    return {"variant": main_variant, **by_variant[main_variant], "variants": by_variant}


def kind(url: str) -> str:
    """What a request of the viewer is, for the timeline."""
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    path = path.partition("?")[0]
    if path.endswith("ohif/app-config.js"):
        return "app-config.js"
    if path.startswith("ohif/"):
        return "OHIF files"
    if "/frames/" in path:
        return "frames"
    if path.endswith("/metadata"):
        return "metadata"
    if path.endswith(("/thumbnail", "/rendered")):
        return "thumbnails"
    if path.endswith("/series") or path.endswith("dicom-web/studies"):
        return "QIDO"
    return "other"


def milestones(load: Load) -> dict[str, float]:
    """Where one load's time went, in ms since navigation start: ``bundle`` (app.bundle's last
    byte), ``dcl`` (DOMContentLoaded: the bundle ran), ``chunks`` (the last OHIF file that began
    before the first DICOMweb request: OHIF's start-up waves done), ``qido`` (first study query),
    ``metadata`` (series metadata's last byte), ``frame`` (first frame request and ``frame_end``
    its last byte), ``image`` (first image). Missing milestones are left out."""
    resources = sorted(load.timeline.get("resources", []), key=lambda e: e["start"])
    found: dict[str, float] = {}

    def first(what: str, pick: str = "start") -> None:
        entries = [e for e in resources if kind(e["url"]) == what and e["start"] <= load.first_ms]
        if entries:
            found[what if pick == "start" else f"{what}_end"] = float(entries[0][pick])

    bundle = [e for e in resources if "/app.bundle." in e["url"] and e["url"].endswith(".js")]
    if bundle:
        found["bundle"] = float(bundle[0]["end"])
    found["dcl"] = float(load.timeline.get("nav", {}).get("dcl", 0))
    first("QIDO")
    if "QIDO" in found:
        ohif = [e["end"] for e in resources if kind(e["url"]) == "OHIF files" and e["start"] < found["QIDO"]]
        if ohif:
            found["chunks"] = float(max(ohif))
    first("metadata", "end")
    first("frames")
    first("frames", "end")
    found["image"] = load.first_ms
    names = {"QIDO": "qido", "metadata_end": "metadata", "frames": "frame", "frames_end": "frame_end"}
    order = ("bundle", "dcl", "chunks", "qido", "metadata", "frame", "frame_end", "image")
    renamed = {names.get(k, k): v for k, v in found.items()}
    return {k: renamed[k] for k in order if k in renamed}


def timelines(results: dict[tuple[str, str, str], list[Load]], networks: list[str]) -> None:
    """What each htj2k load did before its first image (the first run of each network and phase)."""
    for network in networks:
        for phase in ("cold", "warm"):
            loads = results.get((network, "htj2k", phase), [])
            if not loads or not loads[0].timeline:
                continue
            load = loads[0]
            nav = load.timeline.get("nav", {})
            print()
            print(f"timeline htj2k {network} {phase}: first image at {load.first_ms:.0f} ms; index.html ttfb "
                  f"{nav.get('ttfb', 0):.0f} end {nav.get('end', 0):.0f}, DOMContentLoaded {nav.get('dcl', 0):.0f}")
            for label, loads_of_phase in (("first run", loads[:1]), ("every run", loads)):
                marks = [milestones(x) for x in loads_of_phase]
                keys = [k for k in marks[0] if all(k in m for m in marks)]
                print(f"  milestones, {label} (median ms): " + ", ".join(
                    f"{k} {median([m[k] for m in marks]):.0f}" for k in keys))
            before = [r for r in load.timeline.get("resources", []) if r["start"] <= load.first_ms]
            groups: dict[str, list[dict[str, Any]]] = {}
            for entry in before:
                groups.setdefault(kind(entry["url"]), []).append(entry)
            print(f"  {'what':>14} {'n':>4} {'cached':>6} {'first start':>11} {'last end':>8} {'sum(ms)':>8} "
                  f"{'sent KB':>8} {'body KB':>8}")
            for name in ("OHIF files", "app-config.js", "QIDO", "metadata", "thumbnails", "frames", "other"):
                entries = groups.get(name, [])
                if not entries:
                    continue
                print(f"  {name:>14} {len(entries):4d} {sum(1 for e in entries if e['transfer'] == 0):6d} "
                      f"{min(e['start'] for e in entries):11.0f} {max(e['end'] for e in entries):8.0f} "
                      f"{sum(e['end'] - e['start'] for e in entries):8.0f} "
                      f"{sum(e['transfer'] for e in entries) / 1e3:8.0f} "
                      f"{sum(e['decoded'] for e in entries) / 1e3:8.0f}")
            print("  requests that began before the first image (start, ttfb, end ms; sent/body KB):")
            for entry in sorted(before, key=lambda e: e["start"])[:150]:
                name = entry["url"].split("://", 1)[-1].split("/", 1)[-1].split("?")[0][-70:]
                print(f"    {entry['start']:6.0f} {entry['ttfb']:6.0f} {entry['end']:6.0f}  "
                      f"{entry['transfer'] / 1e3:7.1f}/{entry['decoded'] / 1e3:7.1f}  {name}")


if __name__ == "__main__":
    main()
