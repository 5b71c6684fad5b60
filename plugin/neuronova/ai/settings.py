"""Configuration of AI inference: the ``NeuroNova.Ai`` section.

AI is optional: with an empty ``InferenceUrl`` (``NEURONOVA_INFERENCE_URL`` unset) and no
model that has its own ``Url``, AI is disabled, which is not an error (``/neuronova/health``
says so). An invalid section, however, is a :class:`ConfigError` like any other: the gate
stays closed rather than running with a configuration nobody meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import option, section, string_list
from ..errors import ConfigError

PROTOCOLS = ("contract", "oip")
DEFAULT_MODELS = ("stroke_risk", "tumor_detection")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Series that never carry images to analyse (when a rule does not name modalities).
NON_IMAGE_MODALITIES = ("SR", "SEG", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "RWV", "FID")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after transient failures: retry ``n`` (0-based) waits
    ``min(max_delay, base * factor**n)`` scaled by a random factor in ``[1 - jitter, 1]``,
    and never less than the service's ``Retry-After``."""

    max_retries: int = 3
    base_delay_seconds: float = 60.0
    factor: float = 2.0
    max_delay_seconds: float = 3600.0
    jitter: float = 0.25

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


@dataclass(frozen=True)
class OipOutputs:
    score: str = "score"
    confidence: str = ""
    mask: str = ""
    score_index: int = 0
    confidence_index: int = 0
    score_transform: str = "identity"
    mask_threshold: float = 0.5
    mask_label: str = "Finding"


@dataclass(frozen=True)
class ModelSettings:
    """One model the plugin can run. ``remote_name`` is what the service calls it (the
    contract's ``model_type``, or the OIP model name); it defaults to the model's own name."""

    name: str
    protocol: str  # contract | oip
    url: str  # resolved base URL ("" when neither the model nor InferenceUrl gives one)
    remote_name: str
    connect_timeout_seconds: float
    read_timeout_seconds: float
    total_timeout_seconds: float | None
    api_key: str = field(default="", repr=False)
    # Open Inference Protocol only
    model_version: str = ""
    input_name: str = "input"
    input_datatype: str = "FP32"
    input_layout: str = "NCDHW"
    normalization: str = "none"
    outputs: OipOutputs = OipOutputs()
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Rule:
    """Which studies go to which models. Every criterion given must hold; a study matches
    when at least one of its (non-AI) series is eligible, and the job analyses the eligible
    series with the most instances.

    - ``modalities`` (``ModalitiesInStudy``): the series' Modality is one of these;
    - ``body_parts`` (``BodyPartExamined``): one of these, case-insensitive;
    - ``series_description`` / ``protocol_name`` / ``study_description``: regular
      expressions searched case-insensitively (an absent attribute is the empty string);
    - ``attributes``: other main DICOM tags (series, else study, else patient level) by
      keyword, as regular expressions;
    - ``min_instances``: the series has at least this many instances.
    """

    name: str
    models: tuple[str, ...]
    modalities: frozenset[str] = frozenset()
    body_parts: frozenset[str] = frozenset()
    series_description: re.Pattern[str] | None = None
    protocol_name: re.Pattern[str] | None = None
    study_description: re.Pattern[str] | None = None
    attributes: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    min_instances: int = 1


@dataclass(frozen=True)
class Settings:
    inference_url: str
    dicomweb_url: str  # public DICOMweb root the service pulls pixels from (through the gate)
    workers: int
    token_ttl_seconds: int
    lease_seconds: float
    poll_seconds: float
    retry: RetryPolicy
    rules: tuple[Rule, ...]
    models: Mapping[str, ModelSettings]
    stable_age_seconds: float  # Orthanc's StableAge (for studies seen before a restart)

    @property
    def enabled(self) -> bool:
        return any(m.available for m in self.models.values())

    @property
    def disabled_reason(self) -> str:
        if self.enabled:
            return ""
        return "no inference service configured (NeuroNova.Ai.InferenceUrl / NEURONOVA_INFERENCE_URL is empty)"


def _url(value: str, where: str) -> str:
    value = value.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}")
    return value


def _positive(value: float, where: str, *, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be {'>= 0' if allow_zero else '> 0'}")
    return value


def _regex(raw: Mapping[str, Any], key: str, where: str) -> re.Pattern[str] | None:
    text = option(raw, key, str, "")
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{where}.{key} is not a valid regular expression: {exc}") from exc


def _retry(raw: Mapping[str, Any]) -> RetryPolicy:
    policy = RetryPolicy(
        max_retries=option(raw, "MaxRetries", int, 3),
        base_delay_seconds=option(raw, "BaseDelaySeconds", float, 60.0),
        factor=option(raw, "Factor", float, 2.0),
        max_delay_seconds=option(raw, "MaxDelaySeconds", float, 3600.0),
        jitter=option(raw, "Jitter", float, 0.25),
    )
    if not 0 <= policy.max_retries <= 100:
        raise ConfigError("Ai.Retry.MaxRetries must be between 0 and 100")
    _positive(policy.base_delay_seconds, "Ai.Retry.BaseDelaySeconds", allow_zero=True)
    if policy.factor < 1:
        raise ConfigError("Ai.Retry.Factor must be >= 1")
    if policy.max_delay_seconds < policy.base_delay_seconds:
        raise ConfigError("Ai.Retry.MaxDelaySeconds must be >= BaseDelaySeconds")
    if not 0 <= policy.jitter < 1:
        raise ConfigError("Ai.Retry.Jitter must be in [0, 1)")
    return policy


def _outputs(raw: Mapping[str, Any], where: str) -> OipOutputs:
    outputs = OipOutputs(
        score=option(raw, "Score", str, "score"),
        confidence=option(raw, "Confidence", str, ""),
        mask=option(raw, "Mask", str, ""),
        score_index=option(raw, "ScoreIndex", int, 0),
        confidence_index=option(raw, "ConfidenceIndex", int, 0),
        score_transform=option(raw, "ScoreTransform", str, "identity"),
        mask_threshold=option(raw, "MaskThreshold", float, 0.5),
        mask_label=option(raw, "MaskLabel", str, "Finding"),
    )
    if not outputs.score:
        raise ConfigError(f"{where}.Outputs.Score must name the score tensor")
    if outputs.score_transform not in ("identity", "sigmoid"):
        raise ConfigError(f'{where}.Outputs.ScoreTransform must be "identity" or "sigmoid"')
    return outputs


def _model(name: str, raw: Any, defaults: Mapping[str, Any]) -> ModelSettings:
    where = f"Ai.Models.{name}"
    if not _MODEL_NAME.match(name):
        raise ConfigError(f"{where}: a model name is 1-64 letters, digits, '_', '.' or '-'")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    protocol = option(raw, "Protocol", str, "contract").lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}.Protocol must be one of {PROTOCOLS}")
    total = option(raw, "TotalTimeoutSeconds", float, float(defaults["total"] or 0))
    model = ModelSettings(
        name=name,
        protocol=protocol,
        url=_url(option(raw, "Url", str, ""), f"{where}.Url") or defaults["url"],
        remote_name=option(raw, "RemoteName", str, "") or name,
        connect_timeout_seconds=_positive(
            option(raw, "ConnectTimeoutSeconds", float, defaults["connect"]), f"{where}.ConnectTimeoutSeconds"),
        read_timeout_seconds=_positive(
            option(raw, "ReadTimeoutSeconds", float, defaults["read"]), f"{where}.ReadTimeoutSeconds"),
        total_timeout_seconds=_positive(total, f"{where}.TotalTimeoutSeconds", allow_zero=True) or None,
        api_key=option(raw, "ApiKey", str, ""),
        model_version=option(raw, "ModelVersion", str, ""),
        input_name=option(raw, "InputName", str, "input"),
        input_datatype=option(raw, "InputDatatype", str, "FP32"),
        input_layout=option(raw, "InputLayout", str, "NCDHW"),
        normalization=option(raw, "Normalization", str, "none"),
        outputs=_outputs(section(raw, "Outputs"), where),
        parameters=dict(section(raw, "Parameters")),
    )
    if protocol == "oip":
        if model.input_layout not in ("DHW", "NDHW", "NCDHW", "NCHW"):
            raise ConfigError(f"{where}.InputLayout must be DHW, NDHW, NCDHW or NCHW")
        if model.normalization not in ("none", "zscore", "minmax"):
            raise ConfigError(f"{where}.Normalization must be none, zscore or minmax")
    return model


def _rule(raw: Any, index: int, models: Mapping[str, ModelSettings]) -> Rule:
    where = f"Ai.Rules[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    names = string_list(raw, "Models", ())
    if not names:
        raise ConfigError(f"{where}.Models must list at least one model")
    for name in names:
        if name not in models:
            raise ConfigError(f"{where} names the unknown model {name!r} (known: {sorted(models)})")
    attributes_raw = section(raw, "Attributes")
    attributes: dict[str, re.Pattern[str]] = {}
    for keyword in attributes_raw:
        pattern = _regex(attributes_raw, keyword, f"{where}.Attributes")
        if pattern is not None:
            attributes[str(keyword)] = pattern
    rule = Rule(
        name=option(raw, "Name", str, "") or f"rule-{index + 1}",
        models=tuple(dict.fromkeys(names)),
        modalities=frozenset(m.upper() for m in string_list(raw, "ModalitiesInStudy", ())),
        body_parts=frozenset(b.upper() for b in string_list(raw, "BodyPartExamined", ())),
        series_description=_regex(raw, "SeriesDescription", where),
        protocol_name=_regex(raw, "ProtocolName", where),
        study_description=_regex(raw, "StudyDescription", where),
        attributes=attributes,
        min_instances=option(raw, "MinInstances", int, 1),
    )
    if rule.min_instances < 1:
        raise ConfigError(f"{where}.MinInstances must be >= 1")
    return rule


def default_dicomweb_url(orthanc_config: Mapping[str, Any]) -> str:
    """This Orthanc's public DICOMweb root on loopback (the service runs beside it by default)."""
    port = orthanc_config.get("HttpPort", 8042)
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = 8042
    scheme = "https" if str(orthanc_config.get("SslEnabled", False)).lower() == "true" else "http"
    return f"{scheme}://127.0.0.1:{port}/dicom-web"


def parse(raw: Mapping[str, Any], orthanc_config: Mapping[str, Any] | None = None) -> Settings:
    orthanc_config = orthanc_config or {}
    inference_url = _url(option(raw, "InferenceUrl", str, ""), "Ai.InferenceUrl")
    defaults = {
        "url": inference_url,
        "connect": _positive(option(raw, "ConnectTimeoutSeconds", float, 5.0), "Ai.ConnectTimeoutSeconds"),
        "read": _positive(option(raw, "ReadTimeoutSeconds", float, 300.0), "Ai.ReadTimeoutSeconds"),
        "total": _positive(option(raw, "TotalTimeoutSeconds", float, 0.0), "Ai.TotalTimeoutSeconds", allow_zero=True),
    }
    models_raw = raw.get("Models")
    if models_raw is None:
        models_raw = {name: {"Protocol": "contract"} for name in DEFAULT_MODELS}
    if not isinstance(models_raw, Mapping):
        raise ConfigError("Ai.Models must be an object: model name -> settings")
    models = {str(name): _model(str(name), spec, defaults) for name, spec in models_raw.items()}
    rules_raw = raw.get("Rules")
    if rules_raw is None:
        rules_raw = [{"Name": "mr-stroke-risk", "ModalitiesInStudy": ["MR"], "Models": ["stroke_risk"]}]
    if not isinstance(rules_raw, list):
        raise ConfigError("Ai.Rules must be a list")
    rules = tuple(_rule(r, i, models) for i, r in enumerate(rules_raw))
    stable_age = orthanc_config.get("StableAge", 60)
    settings = Settings(
        inference_url=inference_url,
        dicomweb_url=_url(option(raw, "DicomWebUrl", str, ""), "Ai.DicomWebUrl")
        or default_dicomweb_url(orthanc_config),
        workers=option(raw, "Workers", int, 2),
        token_ttl_seconds=option(raw, "TokenTtlSeconds", int, 900),
        lease_seconds=option(raw, "LeaseSeconds", float, 60.0),
        poll_seconds=option(raw, "PollSeconds", float, 2.0),
        retry=_retry(section(raw, "Retry")),
        rules=rules,
        models=models,
        stable_age_seconds=float(stable_age) if isinstance(stable_age, int | float) else 60.0,
    )
    if not 1 <= settings.workers <= 64:
        raise ConfigError("Ai.Workers must be between 1 and 64")
    if not 60 <= settings.token_ttl_seconds <= 86400:
        raise ConfigError("Ai.TokenTtlSeconds must be between 60 and 86400")
    if settings.lease_seconds < 5:
        raise ConfigError("Ai.LeaseSeconds must be >= 5")
    if not 0.05 <= settings.poll_seconds <= 60:
        raise ConfigError("Ai.PollSeconds must be between 0.05 and 60")
    return settings
