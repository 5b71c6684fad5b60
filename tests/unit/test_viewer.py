"""The viewer front: settings, generated app-config.js (run in node), static files, Explorer JS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from neuronova.errors import ConfigError
from neuronova.viewer import explorer, ohif_config, settings, static
from neuronova.viewer.service import ViewerService

INDEX = (
    '<!doctype html><html><head><script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link rel="icon" href="/assets/favicon.ico">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
    '<script>window.PUBLIC_URL="/"</script><script defer src="/app.bundle.0f6159c501addfe9.js"></script>'
    '<link href="/app.bundle.css" rel="stylesheet"><a href="//cdn.example/x">x</a></head><body></body></html>'
)
BUNDLE = '(() => {\n__webpack_require__.p = "/";\n})(); const s = "é";\n'


class LogHost:
    def __init__(self) -> None:
        self.logs: list[str] = []

    def log_warning(self, message: str) -> None:
        self.logs.append(message)

    log_info = log_error = log_warning


@pytest.fixture()
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "app.bundle.0f6159c501addfe9.js").write_text(BUNDLE, encoding="utf-8")
    (root / "app.bundle.css").write_text("@font-face{src:url(/a34f9d1faa5f3315.woff2)} a{b:url(//x/y)}")
    (root / "5130ccb17e3f3f5b.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00" + bytes(range(256)) * 20)
    (root / "assets" / "favicon.ico").write_bytes(b"\x00\x00\x01\x00icon")
    (root / "1602.css").write_text("a{}")
    (root / "app-config.js").write_text("window.config = {npm: true};")
    (root / ".secret").write_text("no")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the dist")
    os.symlink(outside, root / "escape.txt")
    return root


def viewer_settings(**raw: Any) -> settings.Settings:
    return settings.parse(raw)


# -- settings ---------------------------------------------------------------------------------

def test_settings_defaults_and_oidc() -> None:
    parsed = viewer_settings()
    assert parsed.enabled and parsed.accept_header == settings.ACCEPT_ANY and parsed.oidc is None
    assert parsed.cache_bytes == 128 * 1024 * 1024
    assert parsed.thumbnail_rendering == "thumbnail"
    assert viewer_settings(ThumbnailRendering="wadors").thumbnail_rendering == "wadors"
    # Both ${VAR}s unset: no OIDC, not an error.
    assert viewer_settings(Oidc={"Authority": "", "ClientId": ""}).oidc is None
    oidc = viewer_settings(Oidc={"Authority": "https://idp.example/realms/nn/", "ClientId": "ohif"}).oidc
    assert oidc is not None and oidc.authority == "https://idp.example/realms/nn" and oidc.redirect_path == "/callback"


@pytest.mark.parametrize("raw", [
    {"Oidc": {"Authority": "https://idp.example"}},
    {"Oidc": {"ClientId": "ohif"}},
    {"Oidc": {"Authority": "idp.example", "ClientId": "ohif"}},
    {"Oidc": {"Authority": "https://idp", "ClientId": "ohif", "RedirectPath": "//evil.example/cb"}},
    {"Oidc": {"Authority": "https://idp", "ClientId": "ohif", "ExtraQueryParams": {"a": 1}}},
    {"AcceptHeader": "application/json"},
    {"AcceptHeader": "multipart/related; type=\"application/octet-stream\""},
    {"AcceptHeader": "multipart/related\r\nX: y"},
    {"CacheMegabytes": -1},
    {"CacheMegabytes": "lots"},
    {"ThumbnailRendering": "jpeg"},
])
def test_settings_refuse_bad_values(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        settings.parse(raw)


# -- app-config.js ----------------------------------------------------------------------------

NODE_HARNESS = """
const vm = require('vm');
const [source, href, stored] = JSON.parse(process.argv[1]);
const url = new URL(href);
const store = new Map(stored ? [['neuronova.viewerToken', stored]] : []);
const window = {
  location: {origin: url.origin, pathname: url.pathname, search: url.search, hash: url.hash},
  sessionStorage: {getItem: (k) => store.has(k) ? store.get(k) : null, setItem: (k, v) => store.set(k, v)},
  history: {replaceState: (s, t, u) => { window.replaced = u; }},
};
vm.runInNewContext(source, {window, URLSearchParams});
console.log(JSON.stringify({config: window.config, replaced: window.replaced || null,
                            stored: store.get('neuronova.viewerToken') || null}));
"""


def run_app_config(source: str, href: str, stored: str | None = None) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed (scripts/install)"
    out = subprocess.run([node, "-e", NODE_HARNESS, json.dumps([source, href, stored])], capture_output=True,
                         text=True, check=True, timeout=30)
    return dict(json.loads(out.stdout))


def test_app_config_points_ohif_at_the_gate_on_the_same_origin() -> None:
    source = ohif_config.render(viewer_settings())
    result = run_app_config(source, "https://pacs.example/ohif/viewer?StudyInstanceUIDs=1.2.3")
    config = result["config"]
    assert config["routerBasename"] == "/ohif" and "oidc" not in config
    assert config["defaultDataSourceName"] == "neuronova"
    (source_config,) = config["dataSources"]
    c = source_config["configuration"]
    assert (c["qidoRoot"], c["wadoRoot"], c["wadoUriRoot"]) == (
        "https://pacs.example/dicom-web", "https://pacs.example/dicom-web", "https://pacs.example/wado")
    assert c["acceptHeader"] == [settings.ACCEPT_ANY] and c["imageRendering"] == "wadors"
    assert source_config["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"


def test_app_config_oidc_and_token_links() -> None:
    parsed = viewer_settings(Oidc={"Authority": "https://idp.example/realms/nn", "ClientId": "ohif",
                                   "ExtraQueryParams": {"kc_idp_hint": "hospital"}})
    source = ohif_config.render(parsed)
    plain = run_app_config(source, "https://pacs.example/ohif/")
    (client,) = plain["config"]["oidc"]
    assert client["authority"] == "https://idp.example/realms/nn" and client["client_id"] == "ohif"
    assert client["response_type"] == "code" and client["redirect_uri"] == "/callback"
    assert client["extraQueryParams"] == {"kc_idp_hint": "hospital"}
    # A link with its own token skips the provider, and the token is kept for reloads in this tab.
    linked = run_app_config(source, "https://pacs.example/ohif/viewer?StudyInstanceUIDs=1.2&token=abc")
    assert "oidc" not in linked["config"] and linked["stored"] == "abc" and linked["replaced"] is None
    reloaded = run_app_config(source, "https://pacs.example/ohif/viewer?StudyInstanceUIDs=1.2", stored="abc")
    assert "oidc" not in reloaded["config"]
    assert reloaded["replaced"] == "/ohif/viewer?StudyInstanceUIDs=1.2&token=abc"
    # ...but only on viewer routes: the study list of a tab that once had a token logs in.
    listing = run_app_config(source, "https://pacs.example/ohif/", stored="abc")
    assert "oidc" in listing["config"]


def test_app_config_is_data_not_code() -> None:
    parsed = viewer_settings(FriendlyName="</script><script>alert(1)</script>")
    source = ohif_config.render(parsed)
    assert "</script>" not in source
    config = run_app_config(source, "https://pacs.example/ohif/")["config"]
    assert config["dataSources"][0]["configuration"]["friendlyName"] == "</script><script>alert(1)</script>"


# -- static files -----------------------------------------------------------------------------

def test_rewrites_for_the_prefix() -> None:
    html = static.rewrite_index(INDEX, "/ohif")
    assert 'window.PUBLIC_URL="/ohif/"' in html and 'window.PUBLIC_URL="/"' not in html
    assert 'src="/ohif/app-config.js"' in html and 'href="/ohif/app.bundle.css"' in html
    assert "init-service-worker" not in html
    assert 'href="//cdn.example/x"' in html  # protocol-relative URLs are left alone
    assert static.rewrite_script(BUNDLE.encode(), "/ohif") == BUNDLE.replace(
        '.p = "/"', '.p = "/ohif/"').encode()
    assert static.rewrite_stylesheet(b"url(/a.woff2) url(//x/y)", "/ohif") == b"url(/ohif/a.woff2) url(//x/y)"
    with pytest.raises(static.OhifLayoutError):
        static.rewrite_index("<html>not OHIF</html>", "/ohif")


@pytest.mark.parametrize("path,expected", [
    ("", "index.html"), ("/", "index.html"), ("/viewer", "viewer"), ("/viewer/", "viewer"),
    ("/assets/favicon.ico", "assets/favicon.ico"), ("/../x", None), ("/.secret", None), ("/a//b", None),
    ("/a/../b", None), ("x", None), ("/a\\b", None), ("/%2e%2e/x", None),
])
def test_safe_relative(path: str, expected: str | None) -> None:
    assert static.safe_relative(path) == expected


def test_static_files(dist: Path) -> None:
    files = static.StaticFiles(str(dist), "/ohif", 1024 * 1024)
    files.check()
    bundle = files.get("/app.bundle.0f6159c501addfe9.js")
    assert bundle is not None
    assert b'__webpack_require__.p = "/ohif/"' in bundle.data
    assert bundle.headers["Cache-Control"] == static.IMMUTABLE
    assert bundle.content_type == "application/javascript; charset=utf-8"
    wasm = files.get("/5130ccb17e3f3f5b.wasm")
    assert wasm is not None and isinstance(wasm.data, bytes) and wasm.content_type == "application/wasm"
    css = files.get("/1602.css")
    assert css is not None and css.headers["Cache-Control"] == static.DAILY  # not content-hashed
    for route in ("/", "/viewer", "/viewer/dicomweb", "/callback", "/assets"):
        page = files.get(route)
        assert page is not None and 'PUBLIC_URL="/ohif/"' in page.data.decode(), route
        assert page.headers["Cache-Control"] == static.REVALIDATE and page.headers["Referrer-Policy"] == "no-referrer"
    for missing in ("/nothing.js", "/.secret", "/escape.txt", "/../outside.txt", "/assets/none.png"):
        assert files.get(missing) is None, missing
    assert files.get("/assets/favicon.ico") is not None
    hits = files.hits
    files.get("/app.bundle.0f6159c501addfe9.js")
    assert files.hits == hits + 1


def test_cache_is_bounded(dist: Path) -> None:
    files = static.StaticFiles(str(dist), "/ohif", 5400)
    files.get("/5130ccb17e3f3f5b.wasm")  # 5128 bytes
    files.get("/app.bundle.css")
    files.get("/index.html")
    assert files.cached_bytes <= 5400
    misses = files.misses
    files.get("/5130ccb17e3f3f5b.wasm")  # evicted: read again
    assert files.misses == misses + 1


def test_missing_dist_is_reported(tmp_path: Path) -> None:
    with pytest.raises(static.OhifLayoutError):
        static.StaticFiles(str(tmp_path), "/ohif", 1000).check()


# -- the service ------------------------------------------------------------------------------

def test_service_serves_ohif_and_its_config(dist: Path) -> None:
    from neuronova.http import Request

    service = ViewerService(viewer_settings(OhifRoot=str(dist)), LogHost())  # type: ignore[arg-type]
    config = service.handle(Request("GET", "/ohif/app-config.js"))
    assert config.status == 200 and config.content_type.startswith("application/javascript")
    assert b"window.config = config" in config.body and b"npm: true" not in config.body
    bundle = service.handle(Request("GET", "/ohif/app.bundle.0f6159c501addfe9.js"))
    assert bundle.status == 200 and "é".encode() in bundle.body  # UTF-8 bytes, untouched
    wasm = service.handle(Request("GET", "/ohif/5130ccb17e3f3f5b.wasm"))
    assert wasm.status == 200 and wasm.body.startswith(b"\x00asm")
    assert service.handle(Request("GET", "/ohif/viewer")).status == 200
    assert service.handle(Request("GET", "/ohif")).status == 200
    assert service.handle(Request("GET", "/ohif/missing.js")).status == 404
    assert service.handle(Request("POST", "/ohif/app-config.js")).status == 405
    assert service.health()["ohif"] == "ok"


def test_service_without_ohif_answers_503(tmp_path: Path) -> None:
    from neuronova.http import Request

    host = LogHost()
    service = ViewerService(viewer_settings(OhifRoot=str(tmp_path / "none")), host)  # type: ignore[arg-type]
    answer = service.handle(Request("GET", "/ohif/viewer"))
    assert answer.status == 503 and b"not available" in answer.body
    assert "fetch-ohif" in str(service.health()["ohif"]) and host.logs
    disabled = ViewerService(viewer_settings(Enabled=False, OhifRoot=str(tmp_path)), host)  # type: ignore[arg-type]
    assert disabled.handle(Request("GET", "/ohif/")).status == 503


# -- Explorer ---------------------------------------------------------------------------------

def test_explorer_script_is_valid_javascript(tmp_path: Path) -> None:
    source = explorer.script()
    assert '"/ohif"' in source and "/neuronova/htj2k/studies/" in source and "/neuronova/ai/jobs?study=" in source
    assert "/neuronova/logout" in source
    path = tmp_path / "explorer.js"
    path.write_text(source)
    node = shutil.which("node")
    assert node
    subprocess.run([node, "--check", str(path)], check=True, timeout=30)
