"""Inference back ends built from the configuration: the JSON contract or OIP v2.

- ``contract``: :class:`ai_client.ContractClient`; the service pulls the series itself
  through the gate (DICOMweb URL + a short-lived read-only token for the study).
- ``oip``: :class:`ai_client.OipClient`; Triton/KServe cannot read DICOMweb, so the plugin
  reads the series from Orthanc itself and sends it as a tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, cast

from pydicom.dataset import Dataset

from ai_client import (
    ContractClient,
    InferenceRequest,
    InferenceResult,
    OipClient,
    OipModelConfig,
    OipOutputMap,
    PermanentError,
    volume_from_datasets,
)

from .settings import ModelSettings

LoadSources = Callable[[], Sequence[Dataset]]


class Backend(Protocol):
    #: True when the service reads the pixels through DICOMweb (and needs a token).
    uses_dicomweb: bool

    def infer(self, request: InferenceRequest | None, load_sources: LoadSources) -> InferenceResult:
        """Raise only ai_client's TransientError or PermanentError."""


class ContractBackend:
    uses_dicomweb = True

    def __init__(self, client: ContractClient) -> None:
        self.client = client

    def infer(self, request: InferenceRequest | None, load_sources: LoadSources) -> InferenceResult:
        if request is None:
            raise PermanentError("the contract needs a request")
        return self.client.infer(request)


class OipBackend:
    uses_dicomweb = False

    def __init__(self, client: OipClient, model: str) -> None:
        self.client = client
        self.model = model

    def infer(self, request: InferenceRequest | None, load_sources: LoadSources) -> InferenceResult:
        volume = volume_from_datasets(load_sources())
        return self.client.infer_volume(volume, self.model)


def _headers(model: ModelSettings) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {model.api_key}"} if model.api_key else None


def build_backend(model: ModelSettings) -> Backend:
    if model.protocol == "oip":
        o = model.outputs
        config = OipModelConfig(
            model_name=model.remote_name,
            model_version=model.model_version or None,
            input_name=model.input_name,
            input_datatype=model.input_datatype,
            input_layout=cast(Literal["DHW", "NDHW", "NCDHW", "NCHW"], model.input_layout),
            normalization=cast(Literal["none", "zscore", "minmax"], model.normalization),
            parameters=dict(model.parameters),
            outputs=OipOutputMap(
                score=o.score, confidence=o.confidence or None, mask=o.mask or None, score_index=o.score_index,
                confidence_index=o.confidence_index,
                score_transform=cast(Literal["identity", "sigmoid"], o.score_transform),
                mask_threshold=o.mask_threshold, mask_label=o.mask_label,
            ),
        )
        client = OipClient(
            model.url, {model.name: config}, connect_timeout=model.connect_timeout_seconds,
            read_timeout=model.read_timeout_seconds, total_timeout=model.total_timeout_seconds,
            headers=_headers(model),
        )
        return OipBackend(client, model.name)
    return ContractBackend(ContractClient(
        model.url, connect_timeout=model.connect_timeout_seconds, read_timeout=model.read_timeout_seconds,
        total_timeout=model.total_timeout_seconds, headers=_headers(model),
    ))


def build_backends(models: Mapping[str, ModelSettings]) -> dict[str, Backend]:
    return {name: build_backend(m) for name, m in models.items() if m.available}
