"""The OHIF chunks a first image needs, named in index.html so that they load at once.

OHIF's bundler runtime (rspack) asks for its chunks in waves: the ``app.bundle`` must be
downloaded and run before it asks for the viewer's chunks, which ask for the next ones, and
so on (five waves before the first image, ``bench.viewer_bench --timeline``): each wave waits
for the network on a first visit and for a task of its own on a later one. Here index.html
loads those chunks itself with ``<script async>``. A chunk only registers its modules (it is
``(globalThis["rspackChunk"] ||= []).push([[id], {...}])``; the runtime takes the pushed
entries when it starts, in any order), so running it early changes nothing but the timing;
when the runtime later wants the chunk it is installed already, or its loader finds the
``<script>`` of the same ``src`` and waits for it instead of adding another. Stylesheet chunks
get ``<link rel="preload" as="style">`` (fetched early, applied when OHIF adds them), the font
``as="font" crossorigin`` (fonts are fetched in CORS mode). Web workers' scripts are left out:
a worker does not take a document's preload, so it would be fetched twice.

Only files that exist in the dist are named, so another OHIF pin loses the hints (the bench
shows it), never gains broken ones. ``fetchpriority="low"``: the bundle comes first.
"""

from __future__ import annotations

import html
from pathlib import Path

# OHIF 3.13.2, the viewer route on a one-series MR study: every chunk requested before the
# first image (bench.viewer_bench --timeline, cold, loopback), in request order.
FIRST_IMAGE_FILES = (
    "1673.bundle.76779c7722e8c6c0.js", "6938.bundle.34415aaeea5935b3.js", "6489.bundle.95cb243641a61a2f.js",
    "6495.bundle.8e8306fedff44999.js", "8478.bundle.4520037e6185b95f.js", "89.bundle.b327bf3664812958.js",
    "6214.css", "2779.bundle.4621e305af9e2c6a.js", "2623.css", "2623.bundle.44c0c8ec6fa40d03.js",
    "6749.bundle.2a95108fde2dedb6.js", "5696.bundle.292d30e7e9e1fab1.js", "1483.bundle.256a358f0af21ca9.js",
    "9383.bundle.40008913697b48b8.js", "7499.bundle.796480e788eda09a.js", "8492.css",
    "8492.bundle.f30e427e47ad3932.js", "9290.bundle.90bacace23d695b0.js", "4683.bundle.d4913bffd8e587b7.js",
    "1180.bundle.762993518ea30ae3.js", "7248.bundle.e874b288ff479513.js", "3833.css", "781.css",
    "781.bundle.54774b486e83a5e1.js", "9415.css", "9415.bundle.95b6a277cf9bd823.js",
    "3500.bundle.e96688cc0e82b35f.js", "9116.bundle.391de9ce46a7ca19.js", "100.bundle.cb02411ce321d4e4.js",
    "5406.bundle.4dcfa7c697973300.js", "3760.css", "3760.bundle.dc948e0d7fbed387.js",
    "9068.bundle.e1d5946c370fd4ee.js", "899.bundle.3ea5c8d021b1e60d.js", "5448.bundle.ac180bf858959dd5.js",
    "5910.css", "5910.bundle.f969465957013c3e.js", "7463.css", "7463.bundle.40668aa8d083d077.js",
    "1206.bundle.786e5b556f903028.js", "a34f9d1faa5f3315.woff2",
)


def hinted(root: Path | None, mode: str = "scripts") -> list[str]:
    """The files of :data:`FIRST_IMAGE_FILES` that ``root`` holds (none without a root)."""
    if root is None or mode == "none":
        return []
    return [name for name in FIRST_IMAGE_FILES if (root / name).is_file()]


def add_hints(page: str, prefix: str, root: Path | None, mode: str = "scripts") -> str:
    """``page`` (index.html, already rewritten for the prefix) naming each file (``mode``:
    ``scripts``, ``preload`` (chunks fetched early, run when OHIF asks) or ``none``)."""
    names = hinted(root, mode)
    if not names or "</head>" not in page:
        return page
    base = prefix.rstrip("/") + "/"
    return page.replace("</head>", "".join(_tag(base + name, mode) for name in names) + "</head>", 1)


def _tag(url: str, mode: str) -> str:
    href = html.escape(url)
    if url.endswith(".js") and mode == "preload":
        return f'<link rel="preload" as="script" href="{href}" fetchpriority="low">'
    if url.endswith(".js"):
        return f'<script async src="{href}" fetchpriority="low"></script>'
    if url.endswith(".css"):
        return f'<link rel="preload" as="style" href="{href}" fetchpriority="low">'
    return f'<link rel="preload" as="font" type="font/woff2" href="{href}" crossorigin fetchpriority="low">'
