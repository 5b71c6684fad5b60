"""Forwarding of admin DICOMweb requests (/dicom-web/servers...) to the internal root."""

from __future__ import annotations

import json

from neuronova.dicomweb import admin as dicomweb_admin
from neuronova.errors import OrthancCallError
from neuronova.http import Request

from .fakes import RecordingHost


class PluginRoutes(RecordingHost):
    """Records the internal calls; unknown servers fail as the DICOMweb plugin's do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, bytes, bool]] = []

    def _record(self, method: str, uri: str, body: bytes, after_plugins: bool) -> bytes:
        self.calls.append((method, uri, body, after_plugins))
        if "/nope" in uri:
            raise OrthancCallError(404, "INEXISTENT_ITEM")
        return b'["remote"]' if method == "GET" else b"{}"

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        return self._record("GET", uri, b"", after_plugins)

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        return self._record("POST", uri, body, after_plugins)

    def rest_put(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        return self._record("PUT", uri, body, after_plugins)

    def rest_delete(self, uri: str, after_plugins: bool = False) -> None:
        self._record("DELETE", uri, b"", after_plugins)


def test_same_method_body_and_query_after_plugins() -> None:
    host = PluginRoutes()
    for method, rest, query, body in (("GET", "/servers", "expand", b""), ("PUT", "/servers/r", "", b'{"Url": "u"}'),
                                      ("POST", "/servers/r/retrieve", "", b"{}"), ("DELETE", "/servers/r", "", b"")):
        answer = dicomweb_admin.forward(host, Request(method, "/dicom-web" + rest, body=body), rest, query)
        assert answer.status == 200 and answer.content_type == "application/json"
    assert host.calls == [
        ("GET", "/dicom-web-internal/servers?expand", b"", True),
        ("PUT", "/dicom-web-internal/servers/r", b'{"Url": "u"}', True),
        ("POST", "/dicom-web-internal/servers/r/retrieve", b"{}", True),
        ("DELETE", "/dicom-web-internal/servers/r", b"", True),
    ]


def test_delete_answers_what_the_plugin_answers() -> None:
    answer = dicomweb_admin.forward(PluginRoutes(), Request("DELETE", "/dicom-web/servers/r"), "/servers/r", "")
    assert (answer.status, answer.body) == (200, b"{}")


def test_plugin_errors_keep_their_status() -> None:
    answer = dicomweb_admin.forward(PluginRoutes(), Request("GET", "/dicom-web/servers/nope"), "/servers/nope", "")
    assert answer.status == 404
    body = json.loads(answer.body)
    assert body["HttpStatus"] == 404 and body["OrthancError"] == "INEXISTENT_ITEM"
    assert body["Method"] == "GET" and body["Uri"] == "/dicom-web/servers/nope"
    odd = dicomweb_admin.error_answer(OrthancCallError(302, "WHATEVER"), "POST", "/dicom-web/servers/x")
    assert odd.status == 500


def test_content_type_of_relayed_answers() -> None:
    assert dicomweb_admin.content_type(b' {"a": 1}') == "application/json"
    assert dicomweb_admin.content_type(b"--boundary\r\n") == "application/octet-stream"


def test_refused_methods_answer_405_with_the_plugins_allow() -> None:
    host = PluginRoutes()
    for method, rest, allow in (("POST", "/servers", "GET"), ("POST", "/servers/r", "GET,PUT,DELETE"),
                                ("GET", "/servers/r/stow", "POST"), ("DELETE", "/servers/r/qido", "POST")):
        answer = dicomweb_admin.forward(host, Request(method, "/dicom-web" + rest), rest, "")
        assert (answer.status, answer.headers) == (405, {"Allow": allow})
    assert host.calls == []
    assert dicomweb_admin.allowed_methods("/servers/r/retrieve") is None
    assert dicomweb_admin.allowed_methods("/studies/1.2/update-dicomweb") is None
