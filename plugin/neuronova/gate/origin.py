"""Same-origin proof for requests that a browser's cookie alone would authorize.

A cookie goes along with any request the browser makes to our host, whichever page made
it: a state-changing request authenticated by the session cookie must also come from our
own pages. Browsers send ``Origin`` on every POST/PUT/DELETE (cross-site or not) and
``Referer`` on most requests; neither can be set by a foreign page. The request's origin
must be one of ``Gate.PublicOrigins`` or the origin the request itself names
(``Host``/forwarding headers, as :func:`neuronova.dicomweb.urls.public_origin` reads
them: a foreign page can set none of them without a CORS preflight, which Orthanc never
grants). A request with neither header is refused.

>>> same_origin_problem({"host": "pacs:8042", "origin": "http://pacs:8042"}, frozenset())
''
>>> same_origin_problem({"host": "pacs:8042", "origin": "https://evil.example"}, frozenset())
'foreign origin https://evil.example'
>>> same_origin_problem({"host": "h", "referer": "https://pacs.example.org/app/explorer.html"},
...                     frozenset({"https://pacs.example.org"}))
''
>>> same_origin_problem({"host": "pacs:8042"}, frozenset())
'no Origin or Referer'
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ..dicomweb.urls import public_origin

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower-case, default port
    dropped; "" when ``url`` is not one (``null``, relative, other schemes)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"  # IPv6: hostname drops the brackets
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def same_origin_problem(headers: Mapping[str, str], allowed: frozenset[str]) -> str:
    """"" when the request proves it comes from our own pages, else why not (for the audit)."""
    origin = headers.get("origin", "")
    source = origin or headers.get("referer", "")
    if not source:
        return "no Origin or Referer"
    claimed = normalize_origin(source)
    if claimed and (claimed in allowed or claimed == normalize_origin(public_origin(headers))):
        return ""
    return f"foreign {'origin' if origin else 'referer'} {source[:200]}"
