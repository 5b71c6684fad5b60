"""The viewer front: OHIF served same-origin under ``/ohif``, its generated ``app-config.js``,
and the JavaScript that NeuroNova adds to Orthanc Explorer.

The gate classifies every GET below ``/ohif`` as public (static files and the generated
configuration carry no patient data); all data goes through the gate's DICOMweb front.
"""

from __future__ import annotations

import html
import re
import threading

from ..host import Host
from ..http import Request, Response, error_response
from . import explorer, ohif_config, preload
from .settings import PREFIX, Settings
from .static import COMMON_HEADERS, REVALIDATE, OhifLayoutError, StaticFiles, make_asset

APP_CONFIG = "/app-config.js"
_REFERENCED = re.compile(r'(?:src|href)="' + re.escape(PREFIX) + r'/([^"?#]+\.(?:js|css))"')


class ViewerService:
    def __init__(self, settings: Settings, host: Host, orthanc_compresses: bool = False) -> None:
        """``orthanc_compresses``: Orthanc's ``HttpCompressionEnabled``. When on, Orthanc gzips
        answers itself (under the GIL) and would gzip coded bytes a second time, so the viewer
        then sends every file as it is."""
        self.settings = settings
        self.host = host
        self.codings_allowed = not orthanc_compresses
        self.problem = ""
        self.files: StaticFiles | None = None
        self.app_config = make_asset(
            ohif_config.render(settings).encode(), "application/javascript; charset=utf-8",
            {"Cache-Control": REVALIDATE, **COMMON_HEADERS})
        if not settings.enabled:
            self.problem = "the viewer is disabled (NeuroNova.Viewer.Enabled)"
            return
        if not settings.ohif_root:
            self.problem = "NeuroNova.Viewer.OhifRoot is not set"
        else:
            files = StaticFiles(settings.ohif_root, PREFIX, settings.cache_bytes, settings.chunk_hints)
            try:
                files.check()
                self.files = files
                host.log_warning(f"NeuroNova: OHIF Viewer served at {PREFIX}/ from {files.root}")
                if files.precompressed.problem:
                    host.log_warning(f"NeuroNova: {files.precompressed.problem}")
                if orthanc_compresses:
                    host.log_warning("NeuroNova: HttpCompressionEnabled is on: OHIF's files are sent "
                                     "unencoded (Orthanc gzips them under the GIL on every request)")
            except (OhifLayoutError, OSError, UnicodeDecodeError) as exc:
                self.problem = f"OHIF is not available: {exc}"
        if self.problem:
            # Not a security problem: the PACS works without its web viewer, so the gate
            # stays armed; /ohif answers 503 with the reason, and health lists it.
            host.log_warning(f"NeuroNova: {self.problem}")

    def handle(self, request: Request) -> Response:
        """Everything below ``/ohif`` (Orthanc hands the full URI)."""
        if request.method != "GET":
            return error_response(405, "the viewer is read-only")
        path = request.path[len(PREFIX):]
        if self.files is None:
            return Response(503, _UNAVAILABLE.format(reason=html.escape(self.problem)).encode(),
                            "text/html; charset=utf-8", {"Cache-Control": "no-store", **COMMON_HEADERS})
        if path == APP_CONFIG:
            return self.app_config.answer(request.headers, self.codings_allowed)
        asset = self.files.get(path)
        if asset is None:
            return error_response(404, "no such file")
        return asset.answer(request.headers, self.codings_allowed)

    def first_visit_files(self) -> list[str]:
        """index.html, what it loads (the bundle, the stylesheet) and what it preloads."""
        files = self.files
        if files is None:
            return []
        index = files.get("/index.html")
        referenced = _REFERENCED.findall(index.data.decode("utf-8", "replace")) if index else []
        names = ["index.html", *referenced, *preload.hinted(files.root, files.hints)]
        # app-config.js is generated (self.app_config): the dist's own is never served.
        return [name for name in dict.fromkeys(names) if "/" + name != APP_CONFIG]

    def warm_in_background(self) -> threading.Thread | None:
        """Load the first visit's files into memory now, so that the first visitor does not wait
        for disk reads, rewrites and (without the install step's folder) compression."""
        if self.files is None:
            return None

        def warm() -> None:
            try:
                files = self.files
                if files is not None:
                    files.warm(self.first_visit_files())
            except Exception as exc:  # noqa: BLE001 - warming is an optimisation: requests load on demand
                self.host.log_warning(f"NeuroNova: warming the viewer's files failed: {exc!r}")

        thread = threading.Thread(target=warm, name="neuronova-viewer-warm", daemon=True)
        thread.start()
        return thread

    def explorer_javascript(self) -> str | None:
        return explorer.script() if self.settings.explorer_extension else None

    def health(self) -> dict[str, object]:
        files = self.files
        return {
            "ohif": "ok" if files is not None else self.problem,
            "oidc": self.settings.oidc.authority if self.settings.oidc else None,
            "cache": None if files is None else {
                "bytes": files.cached_bytes, "hits": files.hits, "misses": files.misses},
            "precompressed": None if files is None else (files.precompressed.problem or "ok"),
            "codings": self.codings_allowed,
        }


_UNAVAILABLE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Viewer unavailable</title>
<body style="font-family:sans-serif"><h1>The viewer is not available</h1><p>{reason}</p>
<p>DICOMweb and Orthanc Explorer keep working.</p></body></html>
"""
