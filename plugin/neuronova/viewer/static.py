"""OHIF's static files, served from memory under :data:`~.settings.PREFIX`.

OHIF's npm ``dist/`` is built for the site root: ``index.html`` says ``window.PUBLIC_URL="/"``
and references ``/app.bundle...js``, webpack's runtime loads chunks, workers and WASM codecs
from ``__webpack_require__.p = "/"``, and the stylesheet loads its font from ``url(/...)``.
Those few strings are rewritten to the prefix when a file is first read, so the pristine npm
files are served unmodified otherwise. The service worker is left out: it would cache with
root-absolute URLs, and the viewer must not outlive a revoked token in a cache.

Files are cached in memory (bounded, least recently used): a Python route holds the GIL,
so a request should cost a dictionary look-up, not a disk read. Each file is kept with its
gzip and brotli codings (read from the folder :mod:`.precompress` makes at install time, or
gzipped once when first loaded) and a strong entity tag per coding: :meth:`Asset.answer`
picks the coding from ``Accept-Encoding`` and answers 304 to a matching ``If-None-Match``.
Orthanc's ``HttpCompressionEnabled`` must be off (orthanc.json): Orthanc would gzip the
already coded bytes again; the service then sends identity only (see ``ViewerService``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..caches import Cache
from ..http import Response
from . import encoding, preload
from .precompress import GZIP_LEVEL_AT_LOAD, KEEP_RATIO, Precompressed, compressible, digest, gzip_bytes

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",  # lets the browser compile while downloading
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".gif": "image/gif",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".webmanifest": "application/manifest+json",
}
# Content-hashed names (app.bundle.0f6159c501addfe9.js, 5130ccb17e3f3f5b.wasm, ...) never
# change content: the browser may keep them for a year.
_HASHED = re.compile(r"(?:^|[.-])[0-9a-f]{16}\.(?:js|wasm|woff2|css)$")
# One path segment: no dot files, no "..", no separators or escapes.
_SEGMENT = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
DAILY = "public, max-age=86400"
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff"}
# The viewer page: no framing by other sites, and no Referer (its URL may carry a token).
PAGE_HEADERS = {**COMMON_HEADERS, "X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": "no-referrer"}
_SERVICE_WORKER_TAG = re.compile(r'<script[^>]*src="/init-service-worker\.js"[^>]*></script>')


class OhifLayoutError(RuntimeError):
    """The dist/ does not look like the OHIF build these rewrites were made for."""


@dataclass(frozen=True)
class Asset:
    """A file as served (rewritten for the prefix where needed), with its codings."""

    data: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    digest: str = ""  # of ``data``: names every representation (see encoding.etag)
    coded: Mapping[str, bytes] = field(default_factory=dict)  # "gzip"/"br" -> bytes

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(b) for b in self.coded.values())

    def answer(self, headers: Mapping[str, str], codings_allowed: bool = True) -> Response:
        """The answer to a GET with these (lower-case) request headers: the coding the client
        accepts best, or 304 when ``If-None-Match`` names it. Every answer of a file that has
        codings says ``Vary: Accept-Encoding``, the identity one too (a shared cache must not
        give it to a client that asked for brotli, nor the reverse)."""
        coding = (encoding.choose(headers.get("accept-encoding", ""), self.coded)
                  if codings_allowed else encoding.IDENTITY)
        out = dict(self.headers)
        if self.coded:
            out["Vary"] = "Accept-Encoding"
        if self.digest:
            out["ETag"] = encoding.etag(self.digest, coding)
            if encoding.none_match(headers.get("if-none-match", ""), out["ETag"]):
                return Response(304, b"", self.content_type, out)
        if coding == encoding.IDENTITY:
            return Response(200, self.data, self.content_type, out)
        out["Content-Encoding"] = coding
        return Response(200, self.coded[coding], self.content_type, out)


def make_asset(data: bytes, content_type: str, headers: Mapping[str, str],
               coded: Mapping[str, bytes] | None = None) -> Asset:
    """An asset with its digest. ``coded=None``: no prepared codings for these compressible
    bytes, so they are gzipped here, once (zlib releases the GIL while it works)."""
    if coded is None:
        packed = gzip_bytes(data, GZIP_LEVEL_AT_LOAD)
        coded = {"gzip": packed} if len(packed) <= KEEP_RATIO * len(data) else {}
    return Asset(data, content_type, dict(headers), digest(data), dict(coded))


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def cache_control(name: str) -> str:
    if name in ("index.html", "app-config.js"):
        return REVALIDATE
    if _HASHED.search(name):
        return IMMUTABLE
    return DAILY


def rewrite_index(html: str, prefix: str) -> str:
    """index.html for the prefix: PUBLIC_URL, root-absolute references, no service worker."""
    base = prefix.rstrip("/") + "/"
    if 'window.PUBLIC_URL="/"' not in html or 'src="/app-config.js"' not in html:
        raise OhifLayoutError("index.html does not set window.PUBLIC_URL=\"/\" or load /app-config.js")
    html = _SERVICE_WORKER_TAG.sub("", html)
    html = html.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{base}"')
    html = re.sub(r'(\b(?:href|src)=")/(?!/)', rf"\g<1>{base}", html)
    return html


def rewrite_script(text: bytes, prefix: str) -> bytes:
    """Point webpack's public path (chunks, workers, WASM) at the prefix."""
    base = prefix.rstrip("/") + "/"
    return text.replace(b'__webpack_require__.p = "/";', f'__webpack_require__.p = "{base}";'.encode())


def rewrite_stylesheet(text: bytes, prefix: str) -> bytes:
    base = prefix.rstrip("/") + "/"
    return re.sub(rb"url\(/(?!/)", b"url(" + base.encode(), text)


def served_body(name: str, body: bytes, prefix: str, root: Path | None = None, hints: str = "scripts") -> bytes:
    """A file's bytes as served under ``prefix`` (what :mod:`.precompress` codes too).
    ``root`` (the dist folder) lets index.html name the chunks that exist (``hints``: a
    :data:`.settings.CHUNK_HINTS` mode)."""
    base = name.rsplit("/", 1)[-1]
    if name == "index.html":
        html = rewrite_index(body.decode("utf-8"), prefix)
        return preload.add_hints(html, prefix, root, hints).encode("utf-8")
    if base.endswith(".js"):
        return rewrite_script(body, prefix)
    if base.endswith(".css"):
        return rewrite_stylesheet(body, prefix)
    return body


def safe_relative(path: str) -> str | None:
    """``path`` (below the prefix) as a relative file name, or None if it is not a plain one."""
    if path in ("", "/"):
        return "index.html"
    if not path.startswith("/"):
        return None
    segments = path[1:].split("/")
    if segments[-1] == "":
        segments.pop()  # a trailing slash: a directory-like SPA route
    if not segments or not all(_SEGMENT.match(s) for s in segments):
        return None
    return "/".join(segments)


class StaticFiles:
    """The files of one OHIF ``dist/`` folder, as served under ``prefix``."""

    def __init__(self, root: str, prefix: str, cache_bytes: int, hints: str = "scripts") -> None:
        self.root = Path(root).resolve()
        self.prefix = prefix
        self.hints = hints
        self.cache_bytes = cache_bytes
        self._cache: Cache[str, Asset] = Cache(max_bytes=cache_bytes, size_of=lambda asset: asset.size)
        self.precompressed = Precompressed(self.root)

    def check(self) -> None:
        """Raise :class:`OhifLayoutError` unless the folder looks like OHIF's dist/."""
        index = self.root / "index.html"
        if not index.is_file():
            raise OhifLayoutError(f"{index} does not exist (run viewer/fetch-ohif)")
        rewrite_index(index.read_text(encoding="utf-8"), self.prefix)

    def get(self, path: str) -> Asset | None:
        """The asset for a path below the prefix; SPA routes (no dot in the last segment)
        get index.html; None when there is no such file."""
        name = safe_relative(path)
        if name is None:
            return None
        asset = self._cache.get(name)
        if asset is not None:
            return asset
        asset = self._load(name)
        if asset is None and "." not in name.rsplit("/", 1)[-1]:
            return self.get("/index.html")
        if asset is not None:
            self._cache.put(name, asset)
        return asset

    def _load(self, name: str) -> Asset | None:
        file = (self.root / name).resolve()
        # Defence in depth: the segments are already plain names, but a symlink could point out.
        if not file.is_relative_to(self.root) or not file.is_file():
            return None
        base = file.name
        body = served_body(name, file.read_bytes(), self.prefix, self.root, self.hints)
        headers = {**(PAGE_HEADERS if base.endswith(".html") else COMMON_HEADERS),
                   "Cache-Control": cache_control(name)}
        coded: dict[str, bytes] | None = None
        if compressible(base, len(body)):
            coded = self.precompressed.codings(name, digest(body), len(body)) or None
        else:
            coded = {}
        return make_asset(body, content_type(base), headers, coded)

    def warm(self, names: list[str]) -> int:
        """Load these files (index.html and what it preloads) ahead of the first visitor;
        how many were loaded."""
        loaded = 0
        for name in names:
            if self.get("/" + name) is not None:
                loaded += 1
        return loaded

    @property
    def cached_bytes(self) -> int:
        return self._cache.bytes

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def misses(self) -> int:
        return self._cache.misses
