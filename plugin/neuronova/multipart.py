"""Building multipart/related bodies (DICOMweb retrieval answers)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable


def multipart_related(parts: Iterable[tuple[str, bytes]], root_type: str) -> tuple[bytes, str]:
    """Body and Content-Type of a ``multipart/related`` answer; each part is (content type, bytes).

    Every part carries its own Content-Type (viewers such as OHIF read the transfer syntax
    of a frame from its part header only).
    """
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for content_type, payload in parts:
        chunks.append(
            f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        )
        chunks.append(payload)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{root_type}"; boundary={boundary}'
