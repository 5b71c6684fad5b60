"""Client of the NeuroNova JSON contract: ``POST {base}/inference`` (see README.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from ._http import HttpOptions, SessionPool, exchange
from .errors import MalformedResponse
from .models import InferenceRequest, InferenceResult
from .png import MAX_MASK_PIXELS


class ContractClient:
    """:class:`~ai_client.protocol.InferenceClient` over the JSON contract.

    ``base_url`` is the service root (``http://host:8900``); ``headers`` are extra headers
    for the service itself (e.g. its own API key), never the study token, which travels in
    the body.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        total_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        max_response_bytes: int = 512 * 1024 * 1024,
        max_mask_pixels: int = MAX_MASK_PIXELS,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = HttpOptions(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            max_response_bytes=max_response_bytes,
            headers=dict(headers) if headers else None,
            verify=verify,
        )
        self.max_mask_pixels = max_mask_pixels
        self._pool = SessionPool(session)

    def infer(self, request: InferenceRequest) -> InferenceResult:
        answer = exchange(self._pool, "POST", f"{self.base_url}/inference", self.options, json_body=request.to_json())
        result = InferenceResult.from_json(answer, max_mask_pixels=self.max_mask_pixels)
        if result.model_type is not None and result.model_type != request.model_type:
            raise MalformedResponse(f"the answer is for model {result.model_type!r}, not {request.model_type!r}")
        return result

    def health(self) -> Mapping[str, Any]:
        """``GET {base}/health`` (raises the same typed errors; the answer must be an object)."""
        answer = exchange(self._pool, "GET", f"{self.base_url}/health", self.options)
        if not isinstance(answer, Mapping):
            raise MalformedResponse("the health answer is not a JSON object")
        return answer
