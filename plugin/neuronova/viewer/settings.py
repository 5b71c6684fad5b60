"""Configuration of the viewer front: the ``NeuroNova.Viewer`` section.

OHIF is served same-origin under :data:`PREFIX` (Orthanc 1.10.1 sends no CORS headers), and
its ``app-config.js`` is generated from these settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import option, section
from ..errors import ConfigError

# Fixed, so that the gate's public rule for OHIF's static files is one strict prefix.
PREFIX = "/ohif"

# What OHIF asks for frames by default (DESIGN.md, measured with 3.13.2): any transfer syntax,
# so the plugin can answer HTJ2K and label each part with its real transfer syntax.
ACCEPT_ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*"
# Explicit uncompressed frames (explicit VR little endian), e.g. for comparison.
ACCEPT_UNCOMPRESSED = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
# scripts: the chunks run as <script async>; preload: fetched early only; none: OHIF as built.
CHUNK_HINTS = ("scripts", "preload", "none")
# How OHIF draws the study browser's thumbnails: "thumbnail", the gate's DICOMweb /thumbnail
# (a JPEG rendered by Orthanc: the browser decodes no frame for it, so the first image's frame
# has OHIF's decoder to itself), or "wadors" (a frame fetched and decoded in the browser).
THUMBNAIL_RENDERINGS = ("thumbnail", "wadors")


@dataclass(frozen=True)
class OidcSettings:
    authority: str  # the issuer URL, e.g. https://idp.example/realms/neuronova
    client_id: str
    scope: str
    redirect_path: str  # under PREFIX, e.g. /callback
    post_logout_redirect_path: str
    extra_query_params: Mapping[str, str]


@dataclass(frozen=True)
class Settings:
    enabled: bool
    ohif_root: str  # folder holding OHIF's dist/ (index.html, app.bundle...js)
    accept_header: str
    cache_bytes: int
    show_study_list: bool
    explorer_extension: bool
    oidc: OidcSettings | None
    friendly_name: str
    chunk_hints: str = "none"  # how index.html names the first image's chunks (preload.py)
    thumbnail_rendering: str = "thumbnail"  # one of THUMBNAIL_RENDERINGS


def _oidc(raw: Mapping[str, Any]) -> OidcSettings | None:
    authority = option(raw, "Authority", str, "").strip().rstrip("/")
    client_id = option(raw, "ClientId", str, "").strip()
    if not authority and not client_id:
        return None  # e.g. both ${VAR}s unset: no OpenID Connect login
    if not authority or not client_id:
        raise ConfigError("Viewer.Oidc needs both Authority and ClientId (or neither)")
    if not authority.startswith(("https://", "http://")):
        raise ConfigError("Viewer.Oidc.Authority must be an http(s) URL")
    extra = raw.get("ExtraQueryParams", {})
    if not isinstance(extra, Mapping) or not all(isinstance(v, str) for v in extra.values()):
        raise ConfigError("Viewer.Oidc.ExtraQueryParams must map names to strings")
    paths = {}
    for key, default in (("RedirectPath", "/callback"), ("PostLogoutRedirectPath", "/logout-redirect")):
        value = option(raw, key, str, default)
        if not value.startswith("/") or value.startswith("//"):
            raise ConfigError(f"Viewer.Oidc.{key} must be a path starting with one /")
        paths[key] = value
    return OidcSettings(
        authority=authority,
        client_id=client_id,
        scope=option(raw, "Scope", str, "openid profile"),
        redirect_path=paths["RedirectPath"],
        post_logout_redirect_path=paths["PostLogoutRedirectPath"],
        extra_query_params=dict(extra),
    )


def parse(raw: Mapping[str, Any]) -> Settings:
    accept = option(raw, "AcceptHeader", str, ACCEPT_ANY).strip()
    if not accept.startswith("multipart/related"):
        raise ConfigError("Viewer.AcceptHeader must be a multipart/related media type (WADO-RS frames)")
    if any(c in accept for c in "'\"\\\r\n<>"):
        raise ConfigError("Viewer.AcceptHeader must not contain quotes, backslashes or line breaks")
    hints = option(raw, "ChunkHints", str, "none")
    if hints not in CHUNK_HINTS:
        raise ConfigError(f"Viewer.ChunkHints must be one of {', '.join(CHUNK_HINTS)}")
    thumbnails = option(raw, "ThumbnailRendering", str, "thumbnail")
    if thumbnails not in THUMBNAIL_RENDERINGS:
        raise ConfigError(f"Viewer.ThumbnailRendering must be one of {', '.join(THUMBNAIL_RENDERINGS)}")
    cache_mb = option(raw, "CacheMegabytes", int, 128)
    if not 0 <= cache_mb <= 4096:
        raise ConfigError("Viewer.CacheMegabytes must be between 0 and 4096")
    return Settings(
        enabled=option(raw, "Enabled", bool, True),
        ohif_root=option(raw, "OhifRoot", str, ""),
        accept_header=accept,
        cache_bytes=cache_mb * 1024 * 1024,
        show_study_list=option(raw, "ShowStudyList", bool, True),
        explorer_extension=option(raw, "ExplorerExtension", bool, True),
        oidc=_oidc(section(raw, "Oidc")),
        friendly_name=option(raw, "FriendlyName", str, "NeuroNova PACS"),
        chunk_hints=hints,
        thumbnail_rendering=thumbnails,
    )
