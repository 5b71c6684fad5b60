"""The viewer front: OHIF served same-origin under ``/ohif``, its generated ``app-config.js``,
and the JavaScript that NeuroNova adds to Orthanc Explorer.

The gate classifies every GET below ``/ohif`` as public (static files and the generated
configuration carry no patient data); all data goes through the gate's DICOMweb front.
"""

from __future__ import annotations

import html

from ..host import Host
from ..http import Request, Response, error_response
from . import explorer, ohif_config
from .settings import PREFIX, Settings
from .static import COMMON_HEADERS, REVALIDATE, OhifLayoutError, StaticFiles

APP_CONFIG = "/app-config.js"


class ViewerService:
    def __init__(self, settings: Settings, host: Host) -> None:
        self.settings = settings
        self.problem = ""
        self.files: StaticFiles | None = None
        self.app_config = ohif_config.render(settings).encode()
        if not settings.enabled:
            self.problem = "the viewer is disabled (NeuroNova.Viewer.Enabled)"
            return
        if not settings.ohif_root:
            self.problem = "NeuroNova.Viewer.OhifRoot is not set"
        else:
            files = StaticFiles(settings.ohif_root, PREFIX, settings.cache_bytes)
            try:
                files.check()
                self.files = files
                host.log_warning(f"NeuroNova: OHIF Viewer served at {PREFIX}/ from {files.root}")
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
            return Response(200, self.app_config, "application/javascript; charset=utf-8",
                            {"Cache-Control": REVALIDATE, **COMMON_HEADERS})
        asset = self.files.get(path)
        if asset is None:
            return error_response(404, "no such file")
        return Response(200, asset.data, asset.content_type, dict(asset.headers))

    def explorer_javascript(self) -> str | None:
        return explorer.script() if self.settings.explorer_extension else None

    def health(self) -> dict[str, object]:
        files = self.files
        return {
            "ohif": "ok" if files is not None else self.problem,
            "oidc": self.settings.oidc.authority if self.settings.oidc else None,
            "cache": None if files is None else {
                "bytes": files.cached_bytes, "hits": files.hits, "misses": files.misses},
        }


_UNAVAILABLE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Viewer unavailable</title>
<body style="font-family:sans-serif"><h1>The viewer is not available</h1><p>{reason}</p>
<p>DICOMweb and Orthanc Explorer keep working.</p></body></html>
"""
