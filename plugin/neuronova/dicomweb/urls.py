"""The public base URL of a request (``scheme://host/dicom-web``), from its headers.

Everything that writes a URL for the caller (QIDO RetrieveURL, metadata BulkDataURI, frame
``Content-Location``, STOW-RS RetrieveURL) uses :func:`public_base`, so that the gate answers
what DICOMweb 1.24 answers behind the same reverse proxy. Its rules (measured on 1.24):

- ``X-Forwarded-Host`` *and* ``X-Forwarded-Proto`` both present: that host; https only when
  the proto is exactly ``https``. One of them alone is ignored. They win over ``Forwarded``.
- Else ``Forwarded`` (RFC 7239): the first element only (up to the first comma); its
  ``host=`` and ``proto=`` pairs (names case-insensitive, proto exactly ``https`` for https).
  ``proto=`` without ``host=`` keeps the ``Host`` header.
- Else the ``Host`` header, over http.

Deliberate differences (bare Orthanc copies whatever it gets into its URLs): a quoted value
(RFC 7239 ``quoted-string``) is unquoted, and a host that is not a plain ``host[:port]``
(a path, a comma list, spaces, ...) is not used: the source that named it is ignored.

>>> public_origin({"host": "h:8042"})
'http://h:8042'
>>> public_origin({"host": "h", "forwarded": 'for=1.2.3.4;proto=https;host="p.org:8443", host=q'})
'https://p.org:8443'
>>> public_origin({"host": "h", "x-forwarded-host": "p.org"})
'http://h'
>>> public_origin({"host": "h", "forwarded": "host=evil.org/x"})
'http://h'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from .paths import PUBLIC_ROOT

__all__ = ["forwarded_origin", "public_base", "public_origin"]

# host[:port]: a DNS name or IPv4 address, or a bracketed IPv6 address; port 1-5 digits.
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
_FALLBACK_HOST = "localhost"


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def _valid_host(value: str) -> bool:
    return bool(_HOST.match(value))


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def forwarded_origin(headers: Mapping[str, str]) -> tuple[bool, str] | None:
    """``(https, host)`` named by the forwarding headers (``host`` may be ""), or None when
    they name nothing usable. ``headers`` has lower-case names."""
    proto, host = headers.get("x-forwarded-proto"), headers.get("x-forwarded-host")
    if proto is not None and host is not None and _valid_host(host.strip()):
        return proto.strip() == "https", host.strip()
    forwarded = headers.get("forwarded")
    if forwarded is None:
        return None
    https, named = False, ""
    seen = False
    for pair in forwarded.split(",", 1)[0].split(";"):
        name, equals, value = pair.partition("=")
        if not equals or "=" in value:
            continue  # DICOMweb 1.24 ignores pairs that do not split in exactly two
        name, value = name.strip().lower(), _unquote(value)
        if name == "host":
            if not _valid_host(value):
                return None
            named, seen = value, True
        elif name == "proto":
            https, seen = value == "https", True
    return (https, named) if seen else None


def public_origin(headers: Mapping[str, str]) -> str:
    """``scheme://host`` the caller used (see the module's rules)."""
    host = headers.get("host", "").strip()
    if not _valid_host(host):
        host = _FALLBACK_HOST
    https = False
    forwarded = forwarded_origin(headers)
    if forwarded is not None:
        https, named = forwarded
        host = named or host
    return ("https://" if https else "http://") + host


def public_base(request: _HasHeaders) -> str:
    """The public DICOMweb root of this request: ``scheme://host/dicom-web`` (no slash at the end)."""
    return public_origin(request.headers) + PUBLIC_ROOT
