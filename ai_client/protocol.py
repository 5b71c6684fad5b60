"""What the job runner needs from any inference back end."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .models import InferenceRequest, InferenceResult


@runtime_checkable
class InferenceClient(Protocol):
    """Run one inference. Implementations raise only
    :class:`~ai_client.errors.TransientError` (retry later, includes
    :class:`~ai_client.errors.MalformedResponse`) or
    :class:`~ai_client.errors.PermanentError` (fail now)."""

    def infer(self, request: InferenceRequest) -> InferenceResult: ...
