"""Admin requests of the public DICOMweb front that are no QIDO/WADO/STOW resource, above all
``/dicom-web/servers...`` (the remote DICOMweb servers: list, PUT/GET/DELETE one, and its
``retrieve``/``stow``/``get``/``post``/``qido``/``wado`` actions), forwarded to the DICOMweb
plugin's own routes at the internal root with the same method, query and body.

The plugin's routes are reached with the "after plugins" internal calls (the plain ones
reach Orthanc's core routes only). The answer is the plugin's: its body with 200, or, when the
call fails, the HTTP status of its Orthanc error. An internal call gives the error code
only, not the body the plugin would have sent, so the error body is rebuilt in the shape
Orthanc uses (``HttpStatus``, ``OrthancError``, ``Method``, ``Uri``).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from ..errors import HttpError, OrthancCallError
from ..host import Host
from ..http import Request, Response
from .paths import INTERNAL_ROOT

__all__ = ["allowed_methods", "call", "content_type", "error_answer", "forward"]

# DICOMweb 1.24's /servers routes and the methods they take (its 405 Allow header, measured).
# ``retrieve`` and ``wado`` take any method. An internal call with a refused method fails
# with 404 or 400 instead, so the front answers 405 itself.
_SERVER_ACTION = re.compile(r"^/servers/[^/]+/(?P<action>[^/]+)$")
_POST_ONLY_ACTIONS = frozenset({"stow", "get", "qido", "delete"})


def allowed_methods(rest: str) -> str | None:
    """The ``Allow`` of a ``/servers`` route below the root, None when any method goes.

    >>> allowed_methods("/servers"), allowed_methods("/servers/r"), allowed_methods("/servers/r/stow")
    ('GET', 'GET,PUT,DELETE', 'POST')
    >>> allowed_methods("/servers/r/retrieve") is None
    True
    """
    if rest == "/servers":
        return "GET"
    if re.fullmatch(r"/servers/[^/]+", rest):
        return "GET,PUT,DELETE"
    action = _SERVER_ACTION.match(rest)
    if action is not None and action["action"] in _POST_ONLY_ACTIONS:
        return "POST"
    return None


def call(host: Host, method: str, uri: str, body: bytes) -> bytes:
    """``method`` on a plugin route through the internal REST API; raises OrthancCallError."""
    if method == "GET":
        return host.rest_get(uri, after_plugins=True)
    if method == "POST":
        return host.rest_post(uri, body, after_plugins=True)
    if method == "PUT":
        return host.rest_put(uri, body, after_plugins=True)
    if method == "DELETE":
        host.rest_delete(uri, after_plugins=True)
        return b"{}"  # what the DICOMweb plugin answers (the internal DELETE returns nothing)
    raise HttpError(405, f"method {method} is not supported")


def content_type(body: bytes) -> str:
    """The plugin's routes answer JSON; ``/servers/{name}/wado`` relays the remote's answer,
    whose type the internal call does not carry."""
    return "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/octet-stream"


def error_answer(exc: OrthancCallError, method: str, path: str) -> Response:
    status = exc.status if 400 <= exc.status < 600 else 500
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    body = {
        "HttpError": phrase,
        "HttpStatus": status,
        "Message": f"the DICOMweb plugin refused the request ({exc.message})",
        "Method": method,
        "OrthancError": exc.message,
        "Uri": path,
    }
    return Response(status, json.dumps(body, indent=1).encode(), "application/json")


def forward(host: Host, request: Request, rest: str, query: str) -> Response:
    """``request`` (below the public root: ``rest``) on the internal root. ``query`` is the
    internal query string, "" for none."""
    allowed = allowed_methods(rest)
    if allowed is not None and request.method not in allowed.split(","):
        return Response(405, b"", headers={"Allow": allowed})
    uri = INTERNAL_ROOT + rest + (f"?{query}" if query else "")
    try:
        body = call(host, request.method, uri, request.body)
    except OrthancCallError as exc:
        host.log_info(f"NeuroNova DICOMweb: {request.method} {request.path}: {exc}")
        return error_answer(exc, request.method, request.path)
    return Response(200, body, content_type(body))
