"""Open Inference Protocol v2 client (KServe, NVIDIA Triton, Seldon MLServer), JSON/REST.

``POST {base}/v2/models/{name}[/versions/{v}]/infer`` with named tensors::

    {"id": "...", "parameters": {...},
     "inputs":  [{"name": "input", "shape": [1, 1, D, H, W], "datatype": "FP32", "data": [...]}],
     "outputs": [{"name": "score"}, {"name": "confidence"}, {"name": "mask"}]}

The input tensor is the series volume (fetched through DICOMweb with the request's bearer
token, or given), laid out and normalised as configured; output tensors are mapped to the
contract's ``risk_score`` / ``confidence`` / mask by :class:`OipOutputMap`. Failures are typed
exactly like the JSON contract's (see :mod:`ai_client._http`); an answer whose tensors do not
match the configuration is a :class:`~ai_client.errors.MalformedResponse`. Tensor data travel
as JSON numbers (the binary-data extension is not used).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import numpy.typing as npt
import requests

from ._http import HttpOptions, SessionPool, exchange
from .dicomweb import DEFAULT_MAX_VOXELS, SeriesVolume, UnsupportedSeries, fetch_series_volume
from .errors import MalformedResponse, PermanentError, TransientError
from .models import InferenceRequest, InferenceResult, SegmentationFrame

Layout = Literal["DHW", "NDHW", "NCDHW", "NCHW"]
Normalization = Literal["none", "zscore", "minmax"]
VolumeFetcher = Callable[[InferenceRequest], SeriesVolume]

#: OIP datatypes this client can send and read, with their numpy types.
DATATYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@dataclass(frozen=True)
class OipOutputMap:
    """Which output tensors hold what. ``score_index``/``confidence_index`` pick one element
    of a (flattened) tensor, e.g. the positive class of a 2-class softmax. Without a
    confidence output, confidence is ``max(score, 1 - score)`` (the probability of the
    predicted class of a binary classifier)."""

    score: str
    confidence: str | None = None
    mask: str | None = None
    score_index: int = 0
    confidence_index: int = 0
    score_transform: Literal["identity", "sigmoid"] = "identity"
    mask_threshold: float = 0.5
    mask_label: str = "Finding"


@dataclass(frozen=True)
class OipModelConfig:
    """How one contract ``model_type`` maps onto one OIP model.

    ``input_layout``: ``DHW`` sends [D, H, W]; ``NDHW`` [1, D, H, W]; ``NCDHW``
    [1, 1, D, H, W]; ``NCHW`` the slices as a batch, [D, 1, H, W]. The mask output must
    hold exactly D*H*W elements in the same order (any shape, e.g. [1, 1, D, H, W])."""

    model_name: str
    outputs: OipOutputMap
    model_version: str | None = None
    input_name: str = "input"
    input_datatype: str = "FP32"
    input_layout: Layout = "NCDHW"
    normalization: Normalization = "none"
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_datatype not in DATATYPES or self.input_datatype == "BOOL":
            raise ValueError(f"unsupported input datatype {self.input_datatype!r}")
        if self.input_layout not in ("DHW", "NDHW", "NCDHW", "NCHW"):
            raise ValueError(f"unsupported input layout {self.input_layout!r}")
        if self.normalization not in ("none", "zscore", "minmax"):
            raise ValueError(f"unsupported normalization {self.normalization!r}")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """``GET /v2/models/{name}`` (``-1`` in a shape is a variable dimension)."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _normalise(pixels: npt.NDArray[np.float32], how: Normalization) -> npt.NDArray[np.float64]:
    data = pixels.astype(np.float64)
    if how == "zscore":
        sd = float(data.std())
        return (data - float(data.mean())) / (sd if sd > 0 else 1.0)
    if how == "minmax":
        low, high = float(data.min()), float(data.max())
        return (data - low) / (high - low if high > low else 1.0)
    return data


def build_infer_body(volume: SeriesVolume, config: OipModelConfig, request_id: str) -> dict[str, Any]:
    """The ``/infer`` request body for ``volume`` (exposed for tests and debugging)."""
    d, h, w = volume.shape
    shapes: dict[str, list[int]] = {
        "DHW": [d, h, w],
        "NDHW": [1, d, h, w],
        "NCDHW": [1, 1, d, h, w],
        "NCHW": [d, 1, h, w],
    }
    data = _normalise(volume.pixels, config.normalization)
    dtype = DATATYPES[config.input_datatype]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)  # type: ignore[type-var]
        data = np.clip(np.rint(data), info.min, info.max)
    outputs = [
        {"name": name}
        for name in (config.outputs.score, config.outputs.confidence, config.outputs.mask)
        if name is not None
    ]
    body: dict[str, Any] = {
        "id": request_id,
        "inputs": [
            {
                "name": config.input_name,
                "shape": shapes[config.input_layout],
                "datatype": config.input_datatype,
                "data": data.astype(dtype).ravel().tolist(),
            }
        ],
        "outputs": list({o["name"]: o for o in outputs}.values()),  # unique, in order
    }
    if config.parameters:
        body["parameters"] = dict(config.parameters)
    return body


def _tensor(outputs: Mapping[str, Mapping[str, Any]], name: str) -> npt.NDArray[np.float64]:
    out = outputs.get(name)
    if out is None:
        raise MalformedResponse(f"the answer has no output tensor {name!r}")
    shape = out.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise MalformedResponse(f"output {name!r}: shape must be a list of non-negative integers")
    datatype = out.get("datatype")
    if datatype not in DATATYPES:
        raise MalformedResponse(f"output {name!r}: unsupported datatype {datatype!r}")
    try:
        data = np.asarray(out.get("data"), dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"output {name!r}: data is not numeric") from exc
    if data.size != math.prod(shape):
        raise MalformedResponse(f"output {name!r}: {data.size} values for shape {shape}")
    if not np.isfinite(data).all():
        raise MalformedResponse(f"output {name!r}: non-finite values")
    return data


def _pick(data: npt.NDArray[np.float64], index: int, name: str) -> float:
    if not 0 <= index < data.size:
        raise MalformedResponse(f"output {name!r} has {data.size} values, no index {index}")
    return float(data[index])


def parse_infer_answer(
    answer: object, volume: SeriesVolume, config: OipModelConfig, *, job_id: str, elapsed: float
) -> InferenceResult:
    """Map an ``/infer`` answer onto the contract's :class:`InferenceResult`."""
    if not isinstance(answer, Mapping):
        raise MalformedResponse("the answer is not a JSON object")
    raw_outputs = answer.get("outputs")
    if not isinstance(raw_outputs, list):
        raise MalformedResponse("the answer has no outputs list")
    outputs: dict[str, Mapping[str, Any]] = {}
    for item in raw_outputs:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise MalformedResponse("every output must be an object with a name")
        outputs[str(item["name"])] = item
    m = config.outputs
    score = _pick(_tensor(outputs, m.score), m.score_index, m.score)
    if m.score_transform == "sigmoid":
        score = 1.0 / (1.0 + math.exp(-score)) if score >= 0 else math.exp(score) / (1.0 + math.exp(score))
    if not 0.0 <= score <= 1.0:
        raise MalformedResponse(f"score {score!r} from output {m.score!r} is outside [0, 1]")
    if m.confidence is not None:
        confidence = _pick(_tensor(outputs, m.confidence), m.confidence_index, m.confidence)
        if not 0.0 <= confidence <= 1.0:
            raise MalformedResponse(f"confidence {confidence!r} is outside [0, 1]")
    else:
        confidence = max(score, 1.0 - score)

    frames: tuple[SegmentationFrame, ...] = ()
    key_mask = None
    key_ref = None
    if m.mask is not None:
        d, h, w = volume.shape
        data = _tensor(outputs, m.mask)
        if data.size != d * h * w:
            raise MalformedResponse(f"mask output {m.mask!r} has {data.size} values, expected {d}x{h}x{w}")
        masks = (data > m.mask_threshold).reshape(d, h, w)
        frames = tuple(
            SegmentationFrame(ref.sop_instance_uid, ref.frame_number, masks[i]) for i, ref in enumerate(volume.frames)
        )
        key = int(np.argmax(masks.reshape(d, -1).sum(axis=1)))
        key_mask, key_ref = masks[key], volume.frames[key]
    version = answer.get("model_version")
    return InferenceResult(
        job_id=job_id,
        risk_score=score,
        confidence=confidence,
        processing_time=round(elapsed, 3),
        segmentation=key_mask,
        segmentation_sop_instance_uid=None if key_ref is None else key_ref.sop_instance_uid,
        segmentation_frame_number=None if key_ref is None else key_ref.frame_number,
        segmentation_frames=frames,
        segmentation_label=m.mask_label if m.mask is not None else None,
        model_type=None,
        model_version=version if isinstance(version, str) else config.model_version,
        details={"oip_model": str(answer.get("model_name", config.model_name))},
    )


class OipClient:
    """:class:`~ai_client.protocol.InferenceClient` over OIP v2. ``models`` maps the
    contract's ``model_type`` to an OIP model; ``fetch_volume`` replaces the DICOMweb pull
    (default: the request's ``dicomweb_url`` with its bearer ``access_token``)."""

    def __init__(
        self,
        base_url: str,
        models: Mapping[str, OipModelConfig],
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        total_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        max_response_bytes: int = 512 * 1024 * 1024,
        fetch_volume: VolumeFetcher | None = None,
        dicomweb_read_timeout: float = 120.0,
        max_voxels: int = DEFAULT_MAX_VOXELS,
        max_input_elements: int = 32 * 1024 * 1024,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.models = dict(models)
        self.options = HttpOptions(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            max_response_bytes=max_response_bytes,
            headers=dict(headers) if headers else None,
            verify=verify,
        )
        self._pool = SessionPool(session)
        self._fetch = fetch_volume
        self._dicomweb_connect_timeout = connect_timeout
        self._dicomweb_read_timeout = dicomweb_read_timeout
        self._max_voxels = max_voxels
        self.max_input_elements = max_input_elements

    # ------------------------------------------------------------------ URLs

    def _model_url(self, name: str, version: str | None) -> str:
        url = f"{self.base_url}/v2/models/{quote(name, safe='')}"
        if version:
            url += f"/versions/{quote(version, safe='')}"
        return url

    # ------------------------------------------------------------------ inference

    def fetch_volume(self, request: InferenceRequest) -> SeriesVolume:
        if self._fetch is not None:
            return self._fetch(request)
        volume, _ = fetch_series_volume(
            request.dicomweb_url,
            request.study_instance_uid,
            request.series_instance_uid,
            request.access_token,
            connect_timeout=self._dicomweb_connect_timeout,
            read_timeout=self._dicomweb_read_timeout,
            max_voxels=self._max_voxels,
        )
        return volume

    def infer(self, request: InferenceRequest) -> InferenceResult:
        config = self.models.get(request.model_type)
        if config is None:
            raise PermanentError(f"no OIP model configured for model_type {request.model_type!r}")
        started = time.monotonic()
        volume = self.fetch_volume(request)
        result = self.infer_volume(volume, request.model_type)
        return replace(result, processing_time=round(time.monotonic() - started, 3))

    def infer_volume(self, volume: SeriesVolume, model_type: str) -> InferenceResult:
        """Run the model configured for ``model_type`` on a given volume."""
        config = self.models.get(model_type)
        if config is None:
            raise PermanentError(f"no OIP model configured for model_type {model_type!r}")
        d, h, w = volume.shape
        if d * h * w > self.max_input_elements:
            # JSON tensors cost ~10-20 bytes per element; past this a model needs the binary
            # tensor extension or a resampled input, which this client does not do.
            raise UnsupportedSeries(
                f"{d}x{h}x{w} voxels exceed max_input_elements={self.max_input_elements} for a JSON tensor"
            )
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        answer = exchange(
            self._pool,
            "POST",
            self._model_url(config.model_name, config.model_version) + "/infer",
            self.options,
            json_body=build_infer_body(volume, config, request_id),
            what=f"OIP model {config.model_name}",
        )
        result = parse_infer_answer(answer, volume, config, job_id=request_id, elapsed=time.monotonic() - started)
        return replace(result, model_type=model_type)

    # ------------------------------------------------------------------ health, metadata

    def ready(self) -> bool:
        """``GET /v2/health/ready``: True on 2xx; False when the server is unreachable or
        answers an error (a readiness probe should not raise)."""
        try:
            exchange(
                self._pool, "GET", f"{self.base_url}/v2/health/ready", self.options, what="OIP server", allow_empty=True
            )
        except (TransientError, PermanentError):
            return False
        return True

    def model_ready(self, model_type: str) -> bool:
        """``GET /v2/models/{name}[/versions/{v}]/ready`` for the model of ``model_type``."""
        config = self.models.get(model_type)
        if config is None:
            return False
        try:
            exchange(
                self._pool,
                "GET",
                self._model_url(config.model_name, config.model_version) + "/ready",
                self.options,
                what="OIP server",
                allow_empty=True,
            )
        except (TransientError, PermanentError):
            return False
        return True

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """``GET /v2/models/{name}[/versions/{v}]`` (typed errors as for inference)."""
        answer = exchange(self._pool, "GET", self._model_url(name, version), self.options, what="OIP server")
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str):
            raise MalformedResponse("model metadata must be an object with a name")
        return ModelMetadata(
            name=str(answer["name"]),
            versions=tuple(str(v) for v in answer.get("versions") or ()),
            platform=str(answer.get("platform", "")),
            inputs=_specs(answer.get("inputs"), "inputs"),
            outputs=_specs(answer.get("outputs"), "outputs"),
        )


def _specs(value: object, label: str) -> tuple[TensorSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise MalformedResponse(f"model metadata {label} must be a list")
    specs = []
    for item in value:
        if not isinstance(item, Mapping):
            raise MalformedResponse(f"model metadata {label} entries must be objects")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
            raise MalformedResponse(f"model metadata {label} entries need name, datatype, shape")
        try:
            dims = tuple(int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise MalformedResponse(f"model metadata {label}: bad shape {shape!r}") from exc
        specs.append(TensorSpec(name, datatype, dims))
    return tuple(specs)
