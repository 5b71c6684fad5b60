"""One HTTP exchange with an inference service, every failure mapped to a typed error.

Shared by the contract and OIP clients so that both classify failures the same way:

==========================================  =====================================
what happened                               raised
==========================================  =====================================
connection refused / reset / DNS failure    TransientError (status None)
connect or read timeout, total deadline     TransientError (status None)
408, 429, 5xx                               TransientError (status, Retry-After)
2xx whose body is not the expected JSON     MalformedResponse (a TransientError)
answer larger than ``max_bytes``            MalformedResponse
other 4xx, 3xx (redirects are not followed) PermanentError (status, body excerpt)
invalid URL, TLS verification failure       PermanentError
==========================================  =====================================
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from .errors import MalformedResponse, PermanentError, TransientError

EXCERPT_CHARS = 300
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class HttpOptions:
    """How to talk to a service. ``read_timeout`` bounds the wait for the answer to start and
    every gap between bytes (that is what ``requests`` enforces); ``total_timeout``, if set,
    also bounds the whole exchange once the answer has started."""

    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    total_timeout: float | None = None
    max_response_bytes: int = 512 * 1024 * 1024
    headers: Mapping[str, str] | None = None
    verify: bool | str = True

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.total_timeout is not None and self.total_timeout <= 0:
            raise ValueError("total_timeout must be positive")
        if self.max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")


class SessionPool:
    """One ``requests.Session`` per thread (a Session is not documented as thread-safe, and a
    job runner calls from several worker threads)."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self._shared = session
        self._local = threading.local()

    def get(self) -> requests.Session:
        if self._shared is not None:
            return self._shared
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    text = _SPACES.sub(" ", body[: limit * 4].decode("utf-8", errors="replace")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(body: bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity (Python accepts them, JSON does not)."""
    return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)


class _TooLarge(Exception):
    pass


class _Deadline(Exception):
    pass


def _read_body(response: requests.Response, max_bytes: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge()
        chunks.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise _Deadline()
    return b"".join(chunks)


def exchange(
    pool: SessionPool,
    method: str,
    url: str,
    options: HttpOptions,
    *,
    json_body: Any = None,
    what: str = "inference service",
    allow_empty: bool = False,
) -> Any:
    """Send one request and return the decoded JSON of a 2xx answer, or raise a typed error.

    With ``allow_empty`` an empty 2xx body gives ``None`` (Triton's health routes answer 200
    with no body)."""
    started = time.monotonic()
    deadline = None if options.total_timeout is None else started + options.total_timeout
    headers = {"Accept": "application/json"}
    if options.headers:
        headers.update(options.headers)
    try:
        response = pool.get().request(
            method,
            url,
            json=json_body,
            headers=headers,
            timeout=(options.connect_timeout, options.read_timeout),
            stream=True,
            allow_redirects=False,
            verify=options.verify,
        )
    except requests.exceptions.SSLError as exc:
        raise PermanentError(f"TLS failure talking to the {what} at {url}: {exc}") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
    ) as exc:
        raise PermanentError(f"invalid request to the {what}: {exc}") from exc
    except requests.exceptions.Timeout as exc:
        raise TransientError(f"the {what} at {url} timed out: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        # ConnectionError: refused, reset, DNS, aborted before an answer
        raise TransientError(f"could not reach the {what} at {url}: {exc}") from exc

    with response:
        status = response.status_code
        try:
            body = _read_body(response, options.max_response_bytes, deadline)
        except _TooLarge as exc:
            raise MalformedResponse(
                f"the {what} answer exceeds {options.max_response_bytes} bytes", status=status
            ) from exc
        except _Deadline as exc:
            raise TransientError(
                f"the {what} answer took longer than {options.total_timeout} s", status=status
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(
                f"connection to the {what} lost while reading its answer: {exc}", status=status
            ) from exc

    if 200 <= status < 300:
        if allow_empty and not body.strip():
            return None
        try:
            return loads_strict(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedResponse(
                f"the {what} answer is not JSON: {exc}", status=status, body_excerpt=excerpt(body)
            ) from exc
    if status in (408, 429) or status >= 500:
        raise TransientError(
            f"the {what} answered {status} {response.reason or ''}".rstrip(),
            status=status,
            body_excerpt=excerpt(body),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    raise PermanentError(
        f"the {what} refused the request: {status} {response.reason or ''}".rstrip(),
        status=status,
        body_excerpt=excerpt(body),
    )
