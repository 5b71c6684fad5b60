"""``multipart/related`` bodies (RFC 2387) for WADO-RS responses, and parsing them back.

Each part carries its own Content-Type, because DICOMweb clients (OHIF among them) read the
transfer syntax of a frame from its part's ``transfer-syntax=`` parameter only.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CRLF = b"\r\n"


@dataclass(frozen=True)
class Part:
    content_type: str  # e.g. 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.202'
    body: bytes | bytearray | memoryview
    headers: Mapping[str, str] = field(default_factory=dict)  # extra part headers


def build(parts: Sequence[Part], media_type: str, *, boundary: str | None = None) -> tuple[bytes, str]:
    """The body and the top-level Content-Type (``multipart/related; type="..."; boundary=...``).

    ``media_type`` is the parts' media type without parameters (RFC 2387 ``type``). The
    boundary is 128 random bits drawn after the parts exist, so nobody can have put it in
    them and it occurs by chance with a probability below 2^-100 even in a 256 MiB answer:
    it is not searched for (that search cost 150 us per 512 KB frame, under the GIL). A
    boundary given by the caller is checked not to occur in any part.
    """
    if boundary is None:
        boundary = "neuronova-" + secrets.token_hex(16)
    elif any(_occurs(boundary.encode("ascii"), p.body) for p in parts):
        raise ValueError("the boundary occurs in a part")
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes | bytearray | memoryview] = []
    for part in parts:
        head = [f"Content-Type: {part.content_type}"]
        head.extend(f"{name}: {value}" for name, value in part.headers.items())
        chunks.append(delimiter + CRLF + "\r\n".join(head).encode("latin-1") + CRLF + CRLF)
        chunks.append(part.body)
        chunks.append(CRLF)
    chunks.append(delimiter + b"--" + CRLF)
    content_type = f'multipart/related; type="{media_type}"; boundary={boundary}'
    return b"".join(chunks), content_type


def parse(body: bytes, content_type: str) -> list[Part]:
    """Split a ``multipart/related`` body into its parts (for tests and internal clients)."""
    boundary = _boundary_of(content_type)
    delimiter = b"--" + boundary.encode("ascii")
    parts: list[Part] = []
    pos = body.find(delimiter)
    if pos < 0:
        raise ValueError("no boundary in the body")
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            return parts
        if body[pos : pos + 2] != CRLF:
            raise ValueError("malformed multipart body: no CRLF after a boundary")
        pos += 2
        header_end = body.find(CRLF + CRLF, pos)
        if header_end < 0:
            raise ValueError("malformed multipart body: part headers do not end")
        headers = {}
        for line in body[pos:header_end].decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = header_end + 4
        nxt = body.find(CRLF + delimiter, start)
        if nxt < 0:
            raise ValueError("malformed multipart body: no closing boundary")
        content_type_of_part = headers.pop("content-type", "")
        parts.append(Part(content_type_of_part, body[start:nxt], headers))
        pos = nxt + 2


def _occurs(needle: bytes, body: bytes | bytearray | memoryview) -> bool:
    # bytes and bytearray search in place; a memoryview has no substring search
    return needle in (body if not isinstance(body, memoryview) else body.tobytes())


def _boundary_of(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    raise ValueError(f"no boundary in {content_type!r}")
