"""The viewer's codings: Accept-Encoding, entity tags and 304, the install-time precompressed
folder, preload hints and warming."""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path

import pytest

from neuronova.errors import ConfigError
from neuronova.http import Request
from neuronova.viewer import encoding, precompress, preload, settings, static
from neuronova.viewer.service import ViewerService
from tests.unit.test_viewer import INDEX, LogHost

CHUNK = preload.FIRST_IMAGE_FILES[0]
CHUNK_TEXT = "(self.webpackChunk = self.webpackChunk || []).push([[1673], {x: () => 'viewer chunk'}]);\n" * 80
BR = "gzip, deflate, br, zstd"  # what Chromium sends


@pytest.fixture()
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    root.mkdir()
    (root / "index.html").write_text(INDEX.replace("<head>", '<head><meta name="pad" content="' + "p" * 1200 + '">'))
    (root / "app.bundle.0f6159c501addfe9.js").write_text('__webpack_require__.p = "/";\n' + "var a = 1;\n" * 400)
    (root / CHUNK).write_text(CHUNK_TEXT)
    (root / "tiny.js").write_text("x")
    (root / "a34f9d1faa5f3315.woff2").write_bytes(b"wOF2" + bytes(range(256)) * 20)
    return root


def has_brotli() -> bool:
    try:
        importlib.import_module("brotli")
    except ImportError:
        return False
    return True


# -- Accept-Encoding and If-None-Match --------------------------------------------------------

@pytest.mark.parametrize("header,available,expected", [
    (BR, ("br", "gzip"), "br"),
    (BR, ("gzip",), "gzip"),
    ("gzip", ("br", "gzip"), "gzip"),
    ("", ("br", "gzip"), "identity"),
    ("identity", ("br", "gzip"), "identity"),
    ("br;q=0, gzip", ("br", "gzip"), "gzip"),
    ("br;q=0.2, gzip;q=0.8", ("br", "gzip"), "gzip"),
    ("*", ("br", "gzip"), "br"),
    ("*;q=0", ("br", "gzip"), "identity"),
    ("gzip;q=0.5", ("br", "gzip"), "gzip"),  # identity is acceptable, not preferred
    ("gzip;q=0.5, identity", ("br", "gzip"), "identity"),
    ("gzip;q=0.5, identity;q=0", ("br", "gzip"), "gzip"),
    ("gzip;q=nonsense", ("gzip",), "identity"),
    ("GZIP ; Q=1", ("gzip",), "gzip"),
    (",,;,br", ("br",), "br"),
])
def test_choose_coding(header: str, available: tuple[str, ...], expected: str) -> None:
    assert encoding.choose(header, available) == expected


def test_none_match() -> None:
    tag = encoding.etag("abc", "br")
    assert tag == '"abc-br"' and encoding.etag("abc", "identity") == '"abc"'
    assert encoding.none_match(tag, tag) and encoding.none_match(f'"x", W/{tag}', tag)
    assert encoding.none_match("*", tag)
    assert not encoding.none_match('"abc"', tag) and not encoding.none_match("", tag)
    assert not encoding.none_match('"abc-gz"', tag)


# -- answers ----------------------------------------------------------------------------------

def test_asset_answers_each_coding_with_its_own_tag() -> None:
    body = b"function f() { return 1; }\n" * 100
    asset = static.make_asset(body, "application/javascript", {"Cache-Control": static.IMMUTABLE})
    assert set(asset.coded) == {"gzip"}  # gzipped once, at load
    zipped = asset.answer({"accept-encoding": BR})
    assert zipped.status == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == body
    assert zipped.headers["Vary"] == "Accept-Encoding" and zipped.headers["Cache-Control"] == static.IMMUTABLE
    plain = asset.answer({})
    assert plain.body == body and "Content-Encoding" not in plain.headers and plain.headers["Vary"]
    assert plain.headers["ETag"] != zipped.headers["ETag"]
    assert plain.headers["ETag"].strip('"') == precompress.digest(body)
    # A revalidation of the representation the client holds: 304, no body, same validators.
    again = asset.answer({"accept-encoding": BR, "if-none-match": zipped.headers["ETag"]})
    assert again.status == 304 and again.body == b"" and again.headers["ETag"] == zipped.headers["ETag"]
    assert again.headers["Cache-Control"] == static.IMMUTABLE and again.headers["Vary"] == "Accept-Encoding"
    # The tag of another coding is another representation: a full answer.
    assert asset.answer({"accept-encoding": BR, "if-none-match": plain.headers["ETag"]}).status == 200
    assert asset.answer({"if-none-match": '"something-else"'}).status == 200
    # Orthanc compressing itself: identity only, whatever the client accepts.
    unencoded = asset.answer({"accept-encoding": BR}, codings_allowed=False)
    assert unencoded.body == body and "Content-Encoding" not in unencoded.headers


def test_small_and_compressed_formats_are_not_coded(dist: Path) -> None:
    files = static.StaticFiles(str(dist), "/ohif", 1 << 20)
    tiny = files.get("/tiny.js")
    font = files.get("/a34f9d1faa5f3315.woff2")
    assert tiny is not None and font is not None and not tiny.coded and not font.coded
    answer = font.answer({"accept-encoding": BR})
    assert "Vary" not in answer.headers and "Content-Encoding" not in answer.headers and answer.headers["ETag"]


# -- the precompressed folder -----------------------------------------------------------------

def test_precompressed_folder_is_built_once_and_used(dist: Path) -> None:
    coded, kept = precompress.build(dist, "/ohif", jobs=1)
    assert (coded, kept) == (3, 0)  # index.html, the bundle, the chunk
    manifest = json.loads((dist / precompress.FOLDER / precompress.MANIFEST).read_text())
    assert manifest["prefix"] == "/ohif" and set(manifest["files"]) == {
        "index.html", "app.bundle.0f6159c501addfe9.js", CHUNK}
    assert precompress.build(dist, "/ohif", jobs=1) == (0, 3)  # up to date: nothing coded again

    files = static.StaticFiles(str(dist), "/ohif", 1 << 20)
    assert files.precompressed.problem == ""
    bundle = files.get("/app.bundle.0f6159c501addfe9.js")
    assert bundle is not None
    # What is sent is the prepared file, and it decodes to the rewritten bytes.
    prepared = (dist / precompress.FOLDER / "app.bundle.0f6159c501addfe9.js.gz").read_bytes()
    assert bundle.coded["gzip"] == prepared
    assert gzip.decompress(prepared) == bundle.data and b'__webpack_require__.p = "/ohif/"' in bundle.data
    index = files.get("/")
    assert index is not None and gzip.decompress(index.coded["gzip"]) == index.data
    if has_brotli():
        brotli = importlib.import_module("brotli")
        assert manifest["brotli"] is True
        answer = bundle.answer({"accept-encoding": BR})
        assert answer.headers["Content-Encoding"] == "br" and brotli.decompress(answer.body) == bundle.data
    else:
        assert "br" not in bundle.coded


def test_a_stale_precompressed_file_is_never_served(dist: Path) -> None:
    precompress.build(dist, "/ohif", jobs=1)
    changed = '__webpack_require__.p = "/";\n' + "var b = 2;\n" * 400
    (dist / "app.bundle.0f6159c501addfe9.js").write_text(changed)
    files = static.StaticFiles(str(dist), "/ohif", 1 << 20)
    bundle = files.get("/app.bundle.0f6159c501addfe9.js")
    assert bundle is not None and b"var b = 2;" in bundle.data
    assert gzip.decompress(bundle.coded["gzip"]) == bundle.data  # gzipped at load instead
    assert "br" not in bundle.coded
    # The next install codes the changed file only.
    assert precompress.build(dist, "/ohif", jobs=1) == (1, 2)


def test_a_broken_manifest_is_reported_and_ignored(dist: Path) -> None:
    (dist / precompress.FOLDER).mkdir()
    (dist / precompress.FOLDER / precompress.MANIFEST).write_text("{not json")
    files = static.StaticFiles(str(dist), "/ohif", 1 << 20)
    assert "unreadable" in files.precompressed.problem
    chunk = files.get("/" + CHUNK)
    assert chunk is not None and gzip.decompress(chunk.coded["gzip"]) == CHUNK_TEXT.encode()
    # The folder itself is never served.
    assert files.get("/.precompressed/manifest.json") is None


def test_precompress_command_line(dist: Path) -> None:
    assert precompress.main([str(dist), "--jobs", "1"]) == 0
    assert (dist / precompress.FOLDER / (CHUNK + ".gz")).is_file()


# -- preload hints and warming ----------------------------------------------------------------

def test_index_preloads_the_first_image_chunks_that_exist(dist: Path) -> None:
    (dist / "6214.css").write_text("a{}")
    files = static.StaticFiles(str(dist), "/ohif", 1 << 20)
    index = files.get("/viewer")
    assert index is not None
    page = index.data.decode()
    # Chunks load (and register their modules) at once; stylesheets and the font are fetched early.
    assert f'<script async src="/ohif/{CHUNK}" fetchpriority="low"></script>' in page
    assert '<link rel="preload" as="style" href="/ohif/6214.css" fetchpriority="low">' in page
    assert ('<link rel="preload" as="font" type="font/woff2" href="/ohif/a34f9d1faa5f3315.woff2" crossorigin '
            'fetchpriority="low">') in page
    assert page.count('fetchpriority="low"') == 3  # only files the dist holds
    assert page.index("<script async") > page.index("app.bundle.css") and page.endswith("</html>")


def test_service_warms_the_first_visit_files(dist: Path) -> None:
    service = ViewerService(settings.parse({"OhifRoot": str(dist), "ChunkHints": "scripts"}), LogHost())  # type: ignore[arg-type]
    assert service.first_visit_files() == ["index.html", "app.bundle.0f6159c501addfe9.js",
                                           "app.bundle.css", CHUNK, "a34f9d1faa5f3315.woff2"]
    thread = service.warm_in_background()
    assert thread is not None
    thread.join(10)
    files = service.files
    assert files is not None
    misses = files.misses
    answer = service.handle(Request("GET", "/ohif/" + CHUNK, headers={"accept-encoding": "gzip"}))
    assert answer.status == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert files.misses == misses  # already in memory
    assert service.health()["precompressed"] != "ok"  # no install-time folder here


def test_app_config_has_a_validator(dist: Path) -> None:
    service = ViewerService(settings.parse({"OhifRoot": str(dist)}), LogHost())  # type: ignore[arg-type]
    first = service.handle(Request("GET", "/ohif/app-config.js", headers={"accept-encoding": BR}))
    assert first.status == 200 and first.headers["Cache-Control"] == "no-cache"
    assert first.headers["Content-Encoding"] == "gzip" and b"window.config" in gzip.decompress(first.body)
    again = service.handle(Request("GET", "/ohif/app-config.js",
                                   headers={"accept-encoding": BR, "if-none-match": first.headers["ETag"]}))
    assert again.status == 304 and again.body == b""
    compressing = ViewerService(settings.parse({"OhifRoot": str(dist)}), LogHost(),  # type: ignore[arg-type]
                                orthanc_compresses=True)
    plain = compressing.handle(Request("GET", "/ohif/app-config.js", headers={"accept-encoding": BR}))
    assert "Content-Encoding" not in plain.headers and b"window.config" in plain.body


@pytest.mark.parametrize("mode,script_tags,preload_scripts", [("scripts", 1, 0), ("preload", 0, 1), ("none", 0, 0)])
def test_chunk_hint_modes(dist: Path, mode: str, script_tags: int, preload_scripts: int) -> None:
    service = ViewerService(settings.parse({"OhifRoot": str(dist), "ChunkHints": mode}), LogHost())  # type: ignore[arg-type]
    page = service.handle(Request("GET", "/ohif/viewer")).body.decode()
    assert page.count(f'<script async src="/ohif/{CHUNK}"') == script_tags
    assert page.count(f'<link rel="preload" as="script" href="/ohif/{CHUNK}"') == preload_scripts
    assert (CHUNK in service.first_visit_files()) == (mode != "none")


def test_chunk_hints_setting_is_checked() -> None:
    assert settings.parse({}).chunk_hints == "none"
    with pytest.raises(ConfigError):
        settings.parse({"ChunkHints": "all"})
