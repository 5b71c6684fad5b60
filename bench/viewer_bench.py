"""OHIF in headless Chromium: time to the first rendered image and to a fully loaded 48-slice MR
series, with HTJ2K frames versus uncompressed frames, and a bare Orthanc for reference.

    .venv/bin/python -m bench.viewer_bench [--runs 3] [--slices 48] [--networks loopback,100]

Three variants, measured in the same run on the same study, alternating:
- ``htj2k``:        NeuroNova, the generated app-config.js (frames asked with transfer-syntax=*)
- ``uncompressed``: NeuroNova, app-config.js with acceptHeader transfer-syntax=1.2.840.10008.1.2.1
- ``bare``:         stock Orthanc + DICOMweb 1.7 at /dicom-web/ (no gate, no HTJ2K), the same OHIF
                    files served to the browser from NeuroNova (playwright proxies /ohif/)
Each run opens a fresh browser context ("cold": OHIF's files downloaded too) and then opens the
study again in the same context ("warm": OHIF's immutable files come from the browser cache).
Times are the page's own clock (performance.now(), from navigation start): the first viewport
canvas with an image, and the moment every image of the series is decoded in cornerstone's cache.
Networks: ``loopback`` (no limit) and N = N Mbit/s with 2 ms latency (Chrome's emulation).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.common import start_bare, start_gated
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


@dataclass
class Load:
    first_ms: float
    full_ms: float
    frames: int
    frame_bytes: int
    syntaxes: set[str] = field(default_factory=set)
    encodings: set[str] = field(default_factory=set)


def measure(page: Page, url: str, slices: int) -> Load:
    page.goto(url, waitUntil="commit")
    first = float(page("waitForFunction", expression=FIRST_IMAGE_JS, timeout=120000, polling=20))
    full = float(page("waitForFunction", expression=ALL_LOADED_JS, arg=slices, timeout=180000, polling=20))
    frames = [e for e in page.network(clear=True) if "/frames/" in e["url"]]
    bad = [(e["status"], e["url"]) for e in frames if e["status"] != 200]
    if bad:
        raise RuntimeError(f"frame requests failed: {bad[:3]}")
    return Load(
        first, full, len(frames),
        sum(e["contentLength"] if e.get("contentLength", -1) >= 0 else e.get("bytes", 0) for e in frames),
        {e.get("part", {}).get("content-type", "?").split("transfer-syntax=")[-1] for e in frames},
        {e.get("contentEncoding") or "identity" for e in frames},
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--networks", default="loopback,100", help="loopback and/or Mbit/s values, comma-separated")
    args = parser.parse_args()
    problem = missing_tools()
    if problem:
        raise SystemExit(problem)

    study = make_mr_series(slices=args.slices, patient_id="BENCH", patient_name="BENCH^VIEWER")
    files = [to_bytes(ds) for ds in study.instances]
    print(f"study: {args.slices} x 484x484 MR slices, {sum(map(len, files)) / 1e6:.1f} MB")

    gated, _folder = start_gated(env={"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "bench admin"})
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
            for run in range(args.runs):
                order = VARIANTS[run % 3:] + VARIANTS[:run % 3]
                for variant in order:
                    page = browser.page(ARTIFACTS / "bench")
                    try:
                        if network != "loopback":
                            page("throttle", downloadMbit=float(network), latencyMs=2)
                        base = gated.base
                        if variant == "uncompressed":
                            page("route", pattern="/ohif/app-config.js", body=uncompressed_config)
                        elif variant == "bare":
                            base = bare.base
                            page("proxy", prefix=bare.base + "/ohif/", target=gated.base + "/ohif/")
                        for phase in ("cold", "warm"):
                            load = measure(page, base + path, args.slices)
                            results.setdefault((network, variant, phase), []).append(load)
                        if run == 0:
                            page.screenshot(f"viewer-bench-{network}-{variant}")
                    finally:
                        page.close()
                print(f"  {network}: run {run + 1}/{args.runs} done")
        report(results, networks)
    finally:
        if browser is not None:
            browser.close()
        gated.stop()
        bare.stop()


def report(results: dict[tuple[str, str, str], list[Load]], networks: list[str]) -> None:
    print()
    print("medians; first = first rendered image, full = every slice decoded (ms since navigation start)")
    header = (f"{'network':>9} {'variant':>13} {'phase':>5} {'first':>8} {'full':>8} {'frames':>6} "
              f"{'frame MB':>9}  frame syntax / encoding")
    print(header)
    for network in networks:
        for variant in VARIANTS:
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


if __name__ == "__main__":
    main()
