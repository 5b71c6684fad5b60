"""The one place that talks to the Orthanc SDK (the ``orthanc`` module of orthanc-python).

``install()`` builds the application from Orthanc's configuration and registers its
callbacks. Any failure while building it installs a closed application instead: Orthanc
then answers only ``/neuronova/health`` (503 with the reason) and denies everything else.
"""

from __future__ import annotations

import json
import traceback
from typing import Any
from urllib.parse import unquote

import orthanc

# Only standard-library modules at import time: if a third-party package is missing, the
# import of .app fails inside install() and the gate closes instead of Orthanc running open.
from .errors import OrthancCallError
from .http import Request, Response

_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}

# Orthanc error codes -> HTTP status, for internal REST calls that fail.
_STATUS_BY_ERROR = {
    "UNKNOWN_RESOURCE": 404,
    "INEXISTENT_ITEM": 404,
    "BAD_REQUEST": 400,
    "BAD_FILE_FORMAT": 400,
    "URI_SYNTAX": 400,
    "PARAMETER_OUT_OF_RANGE": 400,
    "NOT_ACCEPTABLE": 406,
    "UNAUTHORIZED": 401,
    "FORBIDDEN_ACCESS": 403,
    "NOT_IMPLEMENTED": 501,
}


_ERROR_NAMES = {
    getattr(orthanc.ErrorCode, name): name for name in dir(orthanc.ErrorCode) if name.isupper()
}


_CHANGE_NAMES = {getattr(orthanc.ChangeType, n): n for n in dir(orthanc.ChangeType) if n.isupper()}
_LEVEL_NAMES = {getattr(orthanc.ResourceType, n): n for n in dir(orthanc.ResourceType) if n.isupper()}


def _call_error(exc: Exception) -> OrthancCallError:
    # orthanc-python 4.0 raises OrthancException(int error code, description).
    code = exc.args[0] if exc.args else None
    name = _ERROR_NAMES.get(code, str(code))
    for key, status in _STATUS_BY_ERROR.items():
        if key in name.upper():
            return OrthancCallError(status, name)
    return OrthancCallError(500, f"{name} {exc.args[1:] if len(exc.args) > 1 else ''}".strip())


class OrthancHost:
    """Implements :class:`neuronova.host.Host` with the Orthanc SDK."""

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        try:
            if after_plugins:
                return bytes(orthanc.RestApiGetAfterPlugins(uri))
            return bytes(orthanc.RestApiGet(uri))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        return json.loads(self.rest_get(uri, after_plugins))

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        try:
            if after_plugins:
                return bytes(orthanc.RestApiPostAfterPlugins(uri, body))
            return bytes(orthanc.RestApiPost(uri, body))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_put(self, uri: str, body: bytes) -> bytes:
        try:
            return bytes(orthanc.RestApiPut(uri, body))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_delete(self, uri: str) -> None:
        try:
            orthanc.RestApiDelete(uri)
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    @staticmethod
    def _lookup(function: Any, uid: str) -> str | None:
        try:
            found = function(uid)
        except orthanc.OrthancException:
            return None
        return str(found) if found else None

    def lookup_study(self, study_uid: str) -> str | None:
        return self._lookup(orthanc.LookupStudy, study_uid)

    def lookup_series(self, series_uid: str) -> str | None:
        return self._lookup(orthanc.LookupSeries, series_uid)

    def lookup_instance(self, sop_uid: str) -> str | None:
        return self._lookup(orthanc.LookupInstance, sop_uid)

    def set_metric(self, name: str, value: float) -> None:
        orthanc.SetMetricsValue(name, float(value), orthanc.MetricsType.DEFAULT)

    def log_info(self, message: str) -> None:
        orthanc.LogInfo(message)

    def log_warning(self, message: str) -> None:
        orthanc.LogWarning(message)

    def log_error(self, message: str) -> None:
        orthanc.LogError(message)


def _answer(output: Any, response: Response) -> None:
    for name, value in response.headers.items():
        output.SetHttpHeader(name, value)
    text = getattr(response, "text", None)
    if response.status == 200 and isinstance(text, str):
        # Orthanc 1.10.1 gzips an AnswerBuffer body (>= 2 KB, client accepting gzip) inside
        # the call, i.e. while this thread holds the GIL: 0.6-0.8 s for OHIF's 17 MB bundle,
        # stalling every other Python request. SendHttpStatus sends the body as it is (str
        # only in orthanc-python 4.0, hence text files only).
        output.SetHttpHeader("Content-Type", response.content_type)
        output.SendHttpStatus(200, text, int(getattr(response, "text_size", 0)))
    elif response.status == 200:
        output.AnswerBuffer(response.body, response.content_type)
    elif response.status == 401:
        output.SendUnauthorized("NeuroNova")
    elif response.status == 405:
        output.SendMethodNotAllowed("GET,POST,PUT,DELETE")
    else:
        output.SetHttpHeader("Content-Type", response.content_type)
        # orthanc-python 4.0 takes (status, str body, byte length) here, not bytes.
        text = response.body.decode("utf-8", "replace")
        output.SendHttpStatus(response.status, text, len(text.encode("utf-8")))


def _closed_app(reason: str) -> Any:
    from .closed import ClosedApp

    return ClosedApp(reason)


def _decoded_query(raw: Any) -> dict[str, str]:
    """Orthanc 1.10.1 hands plugins the query values still percent-encoded (``a%2Cb``);
    the domain code gets them decoded, once, here."""
    return {unquote(str(key)): unquote(str(value)) for key, value in dict(raw or {}).items()}


def _request(uri: str, request: dict[str, Any]) -> Request:
    method = request.get("method", "GET")
    return Request(
        method=method if isinstance(method, str) else _METHODS.get(int(method), "GET"),
        path=uri,
        groups=tuple(request.get("groups", ())),
        query=_decoded_query(request.get("get", {})),
        headers=dict(request.get("headers", {})),
        body=bytes(request.get("body", b"") or b""),
    )


def install() -> Any:
    host = OrthancHost()
    try:
        from .app import App

        app: Any = App(host, json.loads(orthanc.GetConfiguration()))
    except Exception as exc:  # noqa: BLE001 - any start-up failure closes the gate
        reason = f"{type(exc).__name__}: {exc}"
        orthanc.LogError(f"NeuroNova: the gate is CLOSED, every request is denied: {reason}")
        orthanc.LogInfo(traceback.format_exc())
        app = _closed_app(reason)

    def request_filter(uri: str, **kwargs: Any) -> bool:
        try:
            return bool(app.allow_request(
                uri, int(kwargs.get("method", 0)), str(kwargs.get("ip", "")),
                kwargs.get("headers", {}), _decoded_query(kwargs.get("get", {})),
            ))
        except Exception:  # noqa: BLE001 - fail closed
            return False

    def route(handler: Any) -> Any:
        def callback(output: Any, uri: str, **request: Any) -> None:
            try:
                response = handler(_request(uri, request))
            except Exception as exc:  # noqa: BLE001 - a handler bug is a 500, logged
                orthanc.LogError(f"NeuroNova: {uri}: {exc!r}\n{traceback.format_exc()}")
                response = Response(500, b'{"error": "internal error"}')
            _answer(output, response)

        return callback

    def on_change(change_type: Any, level: Any, resource_id: str) -> None:
        # orthanc-python 4.0 passes plain ints: give the domain code names instead.
        change = _CHANGE_NAMES.get(change_type, str(change_type))
        try:
            if change_type == orthanc.ChangeType.ORTHANC_STOPPED:
                app.stop()
            else:
                app.on_change(change, _LEVEL_NAMES.get(level, str(level)), resource_id)
        except Exception as exc:  # noqa: BLE001 - never break Orthanc's change thread
            orthanc.LogError(f"NeuroNova: change {change}: {exc!r}")

    orthanc.RegisterIncomingHttpRequestFilter(request_filter)
    orthanc.RegisterRestCallback("/neuronova/(.*)", route(app.handle_neuronova))
    orthanc.RegisterRestCallback("/dicom-web/(.*)", route(app.handle_dicomweb))
    # The viewer front (absent from the closed application, whose filter denies /ohif anyway).
    if hasattr(app, "handle_viewer"):
        orthanc.RegisterRestCallback("/ohif(/.*)?", route(app.handle_viewer))
        javascript = app.explorer_javascript()
        if javascript:
            orthanc.ExtendOrthancExplorer(javascript)
    orthanc.RegisterOnChangeCallback(on_change)
    return app
