"""Which request bodies the gate lets Orthanc read, decided from the headers alone.

The filter runs before Orthanc reads a body (it never sees one), so this is the one place
where a body can be refused before it costs memory: Orthanc reads the whole body of an
allowed POST or PUT into memory, up to its ``MaximumRequestBodySizeMB`` (orthanc.json).
Public and user routes take small forms and JSON only; a chunked body (no length to check)
is refused there. STOW-RS and admin routes are left to Orthanc's limit.

>>> from .routes import Scope
>>> body_refusal(Scope.PUBLIC, "POST", {"content-length": "300"}), body_refusal(Scope.PUBLIC, "GET", {})
('', '')
>>> body_refusal(Scope.PUBLIC, "POST", {"content-length": "4294967296"})
'request body larger than 8192 bytes'
>>> body_refusal(Scope.PUBLIC, "POST", {"transfer-encoding": "chunked"})
'chunked request body where none or a small one is expected'
>>> body_refusal(Scope.STUDY, "GET", {"content-length": "10"})
'request body on a GET request'
>>> body_refusal(Scope.ADMIN, "DELETE", {"content-length": "2"})
''
"""

from __future__ import annotations

from collections.abc import Mapping

from ..scope import Scope

__all__ = ["MAX_PUBLIC_BODY", "MAX_USER_BODY", "body_refusal"]

#: The login form (user name and password) and nothing more.
MAX_PUBLIC_BODY = 8 * 1024
#: JSON of the user routes (a share link, an AI job retry).
MAX_USER_BODY = 64 * 1024
_LIMITS = {Scope.PUBLIC: MAX_PUBLIC_BODY, Scope.USER: MAX_USER_BODY}


def body_refusal(scope: Scope, method: str, headers: Mapping[str, str]) -> str:
    """Why a request's announced body is refused ("" when it is acceptable)."""
    raw_length = headers.get("content-length", "").strip()
    chunked = bool(headers.get("transfer-encoding", "").strip())
    try:
        length = int(raw_length) if raw_length else 0
    except ValueError:
        return "malformed Content-Length"
    if length < 0:
        return "malformed Content-Length"
    if method not in ("POST", "PUT"):
        # Orthanc reads no body for these; one announced anyway is a malformed request. An
        # admin gets the answer Orthanc itself gives (e.g. 405 for DELETE /dicom-web/studies).
        if scope is not Scope.ADMIN and (chunked or length):
            return f"request body on a {method} request"
        return ""
    limit = _LIMITS.get(scope)
    if limit is None:
        return ""  # STOW-RS, admin uploads: Orthanc's MaximumRequestBodySizeMB applies
    if chunked:
        return "chunked request body where none or a small one is expected"
    if length > limit:
        return f"request body larger than {limit} bytes"
    return ""
