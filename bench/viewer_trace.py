"""``bench.viewer_bench --trace DIR``: where a viewer load's time goes, from a Chrome trace.

One extra cold and warm load of the ``htj2k`` variant (not counted in the figures: tracing
slows the page) is traced (``devtools.timeline``, ``v8``); then, for each interval between the
load's milestones (:func:`bench.viewer_timeline.milestones`), how long the page's main thread
and its web workers were busy, and what took the main thread's time. A main thread busy all
along means the load is bound by the browser's CPU (OHIF's own work), not by the network or
the server.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

# Main-thread events worth naming (top-level work; RunTask only counts as "busy").
_NAMED = frozenset({"FunctionCall", "EvaluateScript", "v8.compile", "ParseHTML", "Layout", "UpdateLayoutTree",
                    "Paint", "Commit", "MajorGC", "MinorGC", "V8.GC_MC_INCREMENTAL", "v8.produceCache"})


def _events(path: Path) -> list[dict[str, Any]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return list(raw["traceEvents"] if isinstance(raw, dict) else raw)


def summarize(path: Path, marks: dict[str, float]) -> list[str]:
    """Lines describing the trace at ``path`` of a load with these milestones (ms)."""
    events = _events(path)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    sends = sorted((e for e in events if e.get("name") == "ResourceSendRequest"
                    and "/frames/" in json.dumps(e.get("args", {}))), key=lambda e: e["ts"])
    if not sends or "frame" not in marks:
        return ["  (no frame request in the trace: nothing to anchor the milestones to)"]
    pid = sends[0]["pid"]
    origin = sends[0]["ts"] - marks["frame"] * 1000  # the trace's clock at navigation start
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e and e.get("pid") == pid]

    def on(thread: str) -> list[dict[str, Any]]:
        return [e for e in spans if threads.get((pid, e["tid"]), "").startswith(thread)]

    main, workers = on("CrRendererMain"), on("DedicatedWorker")
    lines = [f"  {'interval':>24} {'ms':>6} {'main busy':>9} {'workers':>7}  main thread's largest items"]
    previous_name, previous = "navigation", 0.0
    for name, at in marks.items():
        if at <= previous:
            continue
        a, b = origin + previous * 1000, origin + at * 1000

        def busy(items: list[dict[str, Any]], a: float = a, b: float = b) -> float:
            return float(sum(max(0.0, min(e["ts"] + e["dur"], b) - max(e["ts"], a))
                             for e in items if e["name"] == "RunTask")) / 1000

        top: collections.Counter[str] = collections.Counter()
        for e in main:
            if e["name"] in _NAMED:
                data = e.get("args", {}).get("data") or {}
                label = " ".join(x for x in (e["name"], str(data.get("functionName", "")),
                                             str(data.get("url", "")).rsplit("/", 1)[-1][:24]) if x)
                top[label] += max(0.0, min(e["ts"] + e["dur"], b) - max(e["ts"], a))
        items = ", ".join(f"{label} {us / 1000:.0f}" for label, us in top.most_common(3) if us >= 5000)
        lines.append(f"  {previous_name + ' -> ' + name:>24} {at - previous:6.0f} {busy(main):9.0f} "
                     f"{busy(workers):7.0f}  {items}")
        previous_name, previous = name, at
    return lines
