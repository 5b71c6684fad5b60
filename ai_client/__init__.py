"""Client library for NeuroNova inference services (usable without Orthanc).

- :class:`ContractClient`: the NeuroNova JSON contract (``POST {base}/inference``)
- :class:`OipClient`: Open Inference Protocol v2 (KServe, Triton, MLServer)
- :func:`fetch_series_volume`: a series through DICOMweb with a bearer token, as a volume
- :mod:`ai_client.reference_service`: a reference service (NOT a clinical model)

Every failure is a :class:`TransientError` (retry) or a :class:`PermanentError` (give up).
"""

from .contract import ContractClient
from .dicomweb import (
    FrameRef,
    SeriesVolume,
    UnsupportedSeries,
    fetch_series_datasets,
    fetch_series_volume,
    volume_from_datasets,
)
from .errors import InferenceError, MalformedResponse, PermanentError, TransientError
from .models import InferenceRequest, InferenceResult, InvalidRequest, SegmentationFrame
from .oip import ModelMetadata, OipClient, OipModelConfig, OipOutputMap, TensorSpec
from .png import decode_mask_png, encode_mask_png, mask_from_base64, mask_to_base64
from .protocol import InferenceClient

__version__ = "0.1.0"

__all__ = [
    "ContractClient",
    "FrameRef",
    "InferenceClient",
    "InferenceError",
    "InferenceRequest",
    "InferenceResult",
    "InvalidRequest",
    "MalformedResponse",
    "ModelMetadata",
    "OipClient",
    "OipModelConfig",
    "OipOutputMap",
    "PermanentError",
    "SegmentationFrame",
    "SeriesVolume",
    "TensorSpec",
    "TransientError",
    "UnsupportedSeries",
    "decode_mask_png",
    "encode_mask_png",
    "fetch_series_datasets",
    "fetch_series_volume",
    "mask_from_base64",
    "mask_to_base64",
    "volume_from_datasets",
]
