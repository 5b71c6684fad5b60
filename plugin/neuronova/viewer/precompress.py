"""OHIF's files precompressed once (gzip and brotli), so that no request compresses anything.

``scripts/install`` runs ``python -m neuronova.viewer.precompress DIST`` after fetching OHIF.
It writes ``DIST/.precompressed/<name>.gz`` and ``.br`` and a ``manifest.json`` that maps each
file to the SHA-256 of its bytes *as served* (after the prefix rewrites of :mod:`.static`) and
the codings made. The viewer uses a coded file only when that digest is the one of the bytes
it serves, so a stale folder (another OHIF pin, another rewrite) is ignored, never served. The
folder's name starts with a dot: :func:`.static.safe_relative` never serves it directly.

Why at install time: brotli at a useful quality is slow (the 17 MB ``app.bundle`` takes 2.7 s
at quality 9 and 38 s at 11, measured here), and Orthanc's own ``HttpCompressionEnabled``
gzips under the GIL on every request (docs/runtime-facts.md). Without this folder the viewer
gzips each file once when it first loads it (quality 6, zlib releases the GIL), and keeps it.

Measured on OHIF 3.13.2's ``app.bundle`` (17.4 MB): gzip -9 3.33 MB, brotli q9/lgwin 24
2.67 MB, brotli q11 2.45 MB. Quality 9 with a 16 MiB window is the trade-off taken here.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = ".precompressed"
MANIFEST = "manifest.json"
SUFFIX = {"gzip": ".gz", "br": ".br"}
MIN_BYTES = 1024  # below this the coding's overhead eats the gain
KEEP_RATIO = 0.95  # a coding that saves less than 5 % is not worth a Vary
# Formats that are compressed already.
INCOMPRESSIBLE = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".woff", ".woff2", ".gz", ".br", ".zip"})
BROTLI_QUALITY = 9
BROTLI_WINDOW = 24
GZIP_LEVEL = 9
GZIP_LEVEL_AT_LOAD = 6  # the viewer's own fallback: quick, in the plugin process
VERSION = 1


def digest(body: bytes) -> str:
    """The identity bytes' digest that names a file's representations (128 bits of SHA-256)."""
    return hashlib.sha256(body).hexdigest()[:32]


def compressible(name: str, size: int) -> bool:
    return size >= MIN_BYTES and os.path.splitext(name)[1].lower() not in INCOMPRESSIBLE


def gzip_bytes(body: bytes, level: int) -> bytes:
    return gzip.compress(body, compresslevel=level, mtime=0)


def _brotli() -> Any | None:
    """The brotli module (requirements.txt pins Brotli), or None: then gzip only."""
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


@dataclass(frozen=True)
class Entry:
    digest: str
    codings: tuple[str, ...]


class Precompressed:
    """The precompressed folder of one dist, as the viewer reads it."""

    def __init__(self, root: Path) -> None:
        self.folder = root / FOLDER
        self.problem = ""
        self.entries: dict[str, Entry] = {}
        path = self.folder / MANIFEST
        if not path.is_file():
            self.problem = f"{path} does not exist (scripts/install makes it): files are gzipped at first use"
            return
        try:
            self.entries = parse_manifest(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self.problem = f"{path} is unreadable ({exc}): files are gzipped at first use"

    def codings(self, name: str, body_digest: str, identity_size: int) -> dict[str, bytes]:
        """The coded bytes of ``name`` whose identity bytes hash to ``body_digest``; empty when
        the folder has none, or has them for other bytes."""
        entry = self.entries.get(name)
        if entry is None or entry.digest != body_digest:
            return {}
        out: dict[str, bytes] = {}
        for coding in entry.codings:
            file = (self.folder / (name + SUFFIX[coding])).resolve()
            try:
                if not file.is_relative_to(self.folder.resolve()) or file.stat().st_size >= identity_size:
                    continue
                out[coding] = file.read_bytes()
            except OSError:
                continue
        return out


def parse_manifest(raw: Any) -> dict[str, Entry]:
    if not isinstance(raw, Mapping) or raw.get("version") != VERSION or not isinstance(raw.get("files"), Mapping):
        raise ValueError("not a manifest of this version")
    entries: dict[str, Entry] = {}
    for name, item in raw["files"].items():
        codings = tuple(c for c in item["codings"] if c in SUFFIX)
        entries[str(name)] = Entry(str(item["digest"]), codings)
    return entries


# -- the builder (scripts/install) ------------------------------------------------------------

def _served(root: Path, name: str, prefix: str) -> bytes:
    from .static import served_body  # the same rewrites as the viewer's

    return served_body(name, (root / name).read_bytes(), prefix, root)


def _compress_one(root: str, name: str, prefix: str) -> tuple[str, str, tuple[str, ...]]:
    """Write the codings of one file; its name, digest and the codings kept."""
    folder = Path(root) / FOLDER
    body = _served(Path(root), name, prefix)
    made: dict[str, bytes] = {"gzip": gzip_bytes(body, GZIP_LEVEL)}
    brotli = _brotli()
    if brotli is not None:
        made["br"] = brotli.compress(body, quality=BROTLI_QUALITY, lgwin=BROTLI_WINDOW)
    kept: list[str] = []
    for coding, data in made.items():
        target = folder / (name + SUFFIX[coding])
        if len(data) > KEEP_RATIO * len(body):
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        kept.append(coding)
    return name, digest(body), tuple(kept)


def _candidates(root: Path) -> list[str]:
    names = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() or path.is_symlink():
            continue
        if compressible(path.name, path.stat().st_size):
            names.append(relative.as_posix())
    return names


def build(root: Path, prefix: str, jobs: int) -> tuple[int, int]:
    """Bring ``root``'s precompressed folder up to date; (files coded now, files up to date)."""
    from .static import OhifLayoutError

    if not (root / "index.html").is_file():
        raise OhifLayoutError(f"{root}/index.html does not exist")
    folder = root / FOLDER
    folder.mkdir(exist_ok=True)
    want_brotli = _brotli() is not None
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        # Files coded without brotli are coded again once brotli is there.
        old = parse_manifest(raw) if raw.get("brotli") or not want_brotli else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        old = {}
    entries: dict[str, Entry] = {}
    todo: list[str] = []
    for name in _candidates(root):
        entry = old.get(name)
        fresh = (entry is not None and entry.digest == digest(_served(root, name, prefix))
                 and all((folder / (name + SUFFIX[c])).is_file() for c in entry.codings))
        if fresh and entry is not None:
            entries[name] = entry
        else:
            todo.append(name)
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for name, body_digest, codings in pool.map(
                    _compress_one, [str(root)] * len(todo), todo, [prefix] * len(todo)):
                entries[name] = Entry(body_digest, codings)
    manifest = {"version": VERSION, "prefix": prefix, "brotli": want_brotli, "files": {
        name: {"digest": e.digest, "codings": list(e.codings)} for name, e in sorted(entries.items())}}
    partial = folder / (MANIFEST + ".part")
    partial.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    partial.replace(folder / MANIFEST)
    return len(todo), len(entries) - len(todo)


def main(argv: list[str] | None = None) -> int:
    from .settings import PREFIX

    parser = argparse.ArgumentParser(description="precompress OHIF's dist/ for the NeuroNova viewer")
    parser.add_argument("dist", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    coded, kept = build(args.dist.resolve(), PREFIX, args.jobs)
    codings = "gzip and brotli" if _brotli() is not None else "gzip only (no brotli module)"
    print(f"[precompress] {coded} files coded ({codings}), {kept} up to date, "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
