"""Typed failures of an inference call, shaped for a job runner.

The runner needs one decision per failure: try again later (:class:`TransientError`) or give
up now and record why (:class:`PermanentError`). Everything the client raises is one of the
two; callers never have to catch ``requests`` exceptions.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class: an inference call did not produce a usable result.

    ``status`` is the HTTP status when there was an answer, ``body_excerpt`` the first
    characters of its body (for the job record; never the whole body).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body_excerpt = body_excerpt

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.body_excerpt:
            parts.append(f"body: {self.body_excerpt!r}")
        return " ".join(parts)


class TransientError(InferenceError):
    """Worth retrying with backoff: connection refused/reset, timeout, 408, 429, 5xx,
    a malformed answer. ``retry_after`` is the server's ``Retry-After`` in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body_excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body_excerpt=body_excerpt)
        self.retry_after = retry_after


class MalformedResponse(TransientError):
    """The service answered, but not with a valid result (bad JSON, missing or mistyped
    fields, a score outside [0, 1], a mask that is not base64 PNG, ...).

    It is transient because a restarted or redeployed service usually fixes it; a runner
    that wants to stop early can still catch this subclass first.
    """


class PermanentError(InferenceError):
    """Retrying cannot help: 4xx other than 408/429 (bad request, unknown model, forbidden),
    an invalid URL, a TLS verification failure. Fail the job with ``str(error)``."""
