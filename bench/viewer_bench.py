"""OHIF in headless Chromium: time to the first rendered image and to a fully loaded 48-slice MR
series, with HTJ2K frames versus uncompressed frames, and a bare Orthanc for reference.

    .venv/bin/python -m bench.viewer_bench [--runs 3] [--slices 48] [--networks loopback,100]
        [--variants htj2k,uncompressed,bare] [--link chrome|tcp] [--timeline] [--json]
        [--viewer KEY=VALUE ...] [--against KEY=VALUE ...] [--trace DIR]

Three variants, measured in the same run on the same study, alternating:
- ``htj2k``:        NeuroNova, the generated app-config.js (frames asked with transfer-syntax=*)
- ``uncompressed``: NeuroNova, app-config.js with acceptHeader transfer-syntax=1.2.840.10008.1.2.1
- ``bare``:         stock Orthanc + DICOMweb 1.7 at /dicom-web/ (no gate, no HTJ2K), the same OHIF
                    files served to the browser from NeuroNova (playwright proxies /ohif/)
- ``htj2k-b``:      with ``--against KEY=VALUE`` (repeatable): a second NeuroNova server whose
                    ``NeuroNova.Viewer`` settings differ by these, interleaved with ``htj2k`` (A/B)
``--viewer KEY=VALUE`` sets ``NeuroNova.Viewer`` settings of the NeuroNova servers (both).
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
``--trace DIR`` adds one traced cold and warm ``htj2k`` load per network (not counted) and
prints where their time went (bench/viewer_trace.py); the Chrome traces stay in DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import start_bare, start_gated
from bench.viewer_link import Link
from bench.viewer_timeline import median, milestones, timelines
from bench.viewer_trace import summarize
from neuronova.viewer.settings import ACCEPT_ANY, ACCEPT_UNCOMPRESSED
from tests.support.browser import ARTIFACTS, Browser, BrowserError, Page, missing_tools
from tests.support.dicom_factory import to_bytes
from tests.support.orthanc_server import OrthancServer
from tests.support.viewer_data import make_mr_series

SECRET = "viewer-bench-secret-0123456789abcdefghijklmnop"
VARIANTS = ("htj2k", "uncompressed", "bare")
AGAINST = "htj2k-b"  # the A/B variant: another NeuroNova server, other Viewer settings

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
    parser.add_argument("--viewer", action="append", default=[], metavar="KEY=VALUE",
                        help="a NeuroNova.Viewer setting of the NeuroNova servers (VALUE: JSON or text)")
    parser.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                        help=f"add variant {AGAINST}: a second NeuroNova server with these Viewer settings")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="trace one more cold and warm htj2k load per network into DIR and summarise them")
    args = parser.parse_args()
    wanted = {x.strip() for x in args.variants.split(",")} | ({AGAINST} if args.against else set())
    variants = tuple(v for v in (*VARIANTS, AGAINST) if v in wanted)
    if AGAINST in variants and not args.against:
        raise SystemExit(f"variant {AGAINST} needs --against KEY=VALUE")
    if not variants:
        raise SystemExit(f"--variants: choose among {', '.join(VARIANTS)}")
    problem = missing_tools()
    if problem:
        raise SystemExit(problem)

    study = make_mr_series(slices=args.slices, patient_id="BENCH", patient_name="BENCH^VIEWER")
    files = [to_bytes(ds) for ds in study.instances]
    print(f"study: {args.slices} x 484x484 MR slices, {sum(map(len, files)) / 1e6:.1f} MB")

    env = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "bench admin"}
    viewer = settings_of(args.viewer)
    gated, folder = start_gated(env=env, overlay={"NeuroNova": {"Viewer": viewer}})
    other: tuple[OrthancServer, Path] | None = None
    if AGAINST in variants:
        other = start_gated(env=env, overlay={"NeuroNova": {"Viewer": {**viewer, **settings_of(args.against)}}})
        print(f"{AGAINST}: Viewer settings {settings_of(args.against)} (htj2k: {viewer or 'defaults'})")
    bare = start_bare()
    browser: Browser | None = None
    try:
        neuronovas = [gated] + ([other[0]] if other else [])
        for blob in files:
            for server in neuronovas:
                assert requests.post(server.base + "/instances", data=blob, auth=server.admin, timeout=60).ok
            assert requests.post(bare.base + "/instances", data=blob, timeout=60).ok
        for server in neuronovas:
            status = wait_for_renditions(server, study.study_uid, args.slices)
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
        traced: list[str] = []
        networks = [n.strip() for n in args.networks.split(",") if n.strip()]
        for network in networks:
            links: list[Link] = []
            bases = {"gated": gated.base, "bare": bare.base, **({"other": other[0].base} if other else {})}
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
                            base = bases["other" if variant == AGAINST else "gated"]
                            if variant == "uncompressed":
                                page("route", pattern="/ohif/app-config.js", body=uncompressed_config)
                            elif variant == "bare":
                                base = bases["bare"]
                                page("proxy", prefix=base + "/ohif/", target=gated.base + "/ohif/")
                            for phase in ("cold", "warm"):
                                try:
                                    load = measure(page, base + path, args.slices)
                                except BrowserError as exc:
                                    page.screenshot(f"viewer-bench-failed-{network}-{variant}-{phase}")
                                    raise SystemExit(f"{network} {variant} {phase}: {exc}\nconsole: "
                                                     f"{page.console()[-8:]}") from exc
                                results.setdefault((network, variant, phase), []).append(load)
                            if run == 0:
                                page.screenshot(f"viewer-bench-{network}-{variant}")
                        finally:
                            page.close()
                    print(f"  {network}: run {run + 1}/{args.runs} done")
                if args.trace is not None:
                    traced.extend(trace_loads(browser, network, bases["gated"] + path, args, args.trace))
            finally:
                for link in links:
                    link.close()
        report(results, networks, variants)
        for line in traced:
            print(line)
        if args.timeline:
            timelines(results, networks, [v for v in ("htj2k", AGAINST) if v in variants])
        if args.json:
            print(json.dumps({**summary(results, networks, variants), "link": args.link}, sort_keys=True))
    finally:
        if browser is not None:
            browser.close()
        gated.stop()
        bare.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the gated server's data (the bare one removes its own)
        if other is not None:
            other[0].stop()
            shutil.rmtree(other[1], ignore_errors=True)


def trace_loads(browser: Browser, network: str, url: str, args: argparse.Namespace, folder: Path) -> list[str]:
    """One traced cold and one traced warm load (as the runs' htj2k ones); the report's lines."""
    folder.mkdir(parents=True, exist_ok=True)
    page = browser.page(ARTIFACTS / "bench")
    lines: list[str] = []
    try:
        if network != "loopback" and args.link == "chrome":
            page("throttle", downloadMbit=float(network), latencyMs=2)
        for phase in ("cold", "warm"):
            path = folder / f"viewer-{network}-{phase}.trace.json"
            page("startTracing", path=str(path))
            try:
                load = measure(page, url, args.slices)
            finally:
                page("stopTracing")
            marks = milestones(load)
            lines.append(f"\ntraced htj2k {network} {phase} ({path}): first image at {load.first_ms:.0f} ms")
            lines.extend(summarize(path, marks))
    finally:
        page.close()
    return lines


def settings_of(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as NeuroNova.Viewer settings (a VALUE that parses as JSON is taken so)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"not KEY=VALUE: {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def wait_for_renditions(server: OrthancServer, study_uid: str, slices: int) -> dict[str, Any]:
    """The study's HTJ2K status once every slice has its rendition (or after 120 s)."""
    deadline = time.monotonic() + 120
    while True:
        status: dict[str, Any] = requests.get(f"{server.base}/neuronova/htj2k/studies/{study_uid}",
                                              auth=server.admin, timeout=30).json()
        if status.get("counts", {}).get("done", 0) >= slices or time.monotonic() > deadline:
            return status
        time.sleep(0.25)


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
    if AGAINST in variants:
        for network in networks:
            for phase in ("cold", "warm"):
                a = [x.first_ms for x in results.get((network, "htj2k", phase), [])]
                b = [x.first_ms for x in results.get((network, AGAINST, phase), [])]
                print(f"{network} {phase}: {AGAINST}/htj2k first image {median(b) / median(a):.2f}x"
                      f" (htj2k {' '.join(f'{v:.0f}' for v in a)}; {AGAINST} {' '.join(f'{v:.0f}' for v in b)} ms)")
    if not set(VARIANTS) <= set(variants):
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


if __name__ == "__main__":
    main()
