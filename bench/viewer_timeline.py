"""The ``--timeline`` report of bench.viewer_bench: what a viewer load did before its first
image, from the page's own Resource Timing entries (see :func:`milestones`)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.viewer_bench import Load


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


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


def timelines(results: dict[tuple[str, str, str], list[Load]], networks: list[str],
              variants: list[str]) -> None:
    """What each load of these variants did before its first image (the first run of each
    network and phase); the requests themselves only with one variant (an A/B compares the
    milestones)."""
    for network in networks:
        for phase in ("cold", "warm"):
            for variant in variants:
                loads = results.get((network, variant, phase), [])
                if loads and loads[0].timeline:
                    timeline(variant, network, phase, loads, requests=len(variants) == 1)


def timeline(variant: str, network: str, phase: str, loads: list[Load], requests: bool) -> None:
    load = loads[0]
    nav = load.timeline.get("nav", {})
    print()
    print(f"timeline {variant} {network} {phase}: first image at {load.first_ms:.0f} ms; index.html ttfb "
          f"{nav.get('ttfb', 0):.0f} end {nav.get('end', 0):.0f}, DOMContentLoaded {nav.get('dcl', 0):.0f}")
    for label, loads_of_phase in (("first run", loads[:1]), ("every run", loads)):
        marks = [milestones(x) for x in loads_of_phase]
        keys = [k for k in marks[0] if all(k in m for m in marks)]
        print(f"  milestones, {label} (median ms): " + ", ".join(
            f"{k} {median([m[k] for m in marks]):.0f}" for k in keys))
    if not requests:
        return
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
