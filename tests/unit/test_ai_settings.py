"""NeuroNova.Ai configuration: defaults, the shipped orthanc.json, and what is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from neuronova.ai import settings as ai_settings
from neuronova.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_empty_section_is_disabled_with_the_default_rules_and_models() -> None:
    s = ai_settings.parse({}, {"HttpPort": 8123, "StableAge": 7})
    assert not s.enabled
    assert "NEURONOVA_INFERENCE_URL" in s.disabled_reason
    assert sorted(s.models) == ["stroke_risk", "tumor_detection"]
    assert [(r.name, r.models, r.modalities) for r in s.rules] == [("mr-stroke-risk", ("stroke_risk",),
                                                                    frozenset({"MR"}))]
    assert s.retry.max_retries == 3 and s.retry.base_delay_seconds == 60 and s.retry.factor == 2
    assert s.retry.max_attempts == 4
    assert s.dicomweb_url == "http://127.0.0.1:8123/dicom-web"
    assert s.stable_age_seconds == 7


def test_shipped_orthanc_json_parses_disabled_and_enabled() -> None:
    text = (ROOT / "orthanc.json").read_text()
    for url, enabled in (("", False), ("http://127.0.0.1:8900/", True)):
        # Orthanc substitutes ${VAR} with the environment (unset: "")
        rendered = re.sub(r"\$\{NEURONOVA_INFERENCE_URL\}", url, text)
        config: dict[str, Any] = json.loads(rendered)
        s = ai_settings.parse(config["NeuroNova"]["Ai"], config)
        assert s.enabled is enabled
        assert s.rules[0].models == ("stroke_risk",)
        if enabled:
            assert s.models["stroke_risk"].url == "http://127.0.0.1:8900"
            assert s.models["tumor_detection"].protocol == "contract"
            assert s.models["stroke_risk"].read_timeout_seconds == 300


def test_models_urls_timeouts_and_oip() -> None:
    s = ai_settings.parse({
        "InferenceUrl": "http://svc:8900",
        "ReadTimeoutSeconds": "12",  # ${VAR} substitution gives strings
        "Models": {
            "stroke_risk": {},
            "triton_seg": {"Protocol": "oip", "Url": "http://triton:8000/", "RemoteName": "brain_seg",
                           "ModelVersion": "3", "InputLayout": "NCHW", "Normalization": "zscore",
                           "Outputs": {"Score": "prob", "ScoreIndex": 1, "Mask": "mask"}},
            "alias": {"RemoteName": "stroke_risk", "Url": "http://other:1", "ApiKey": "s3cr3t-key",
                      "ReadTimeoutSeconds": 3},
        },
        "Rules": [{"ModalitiesInStudy": "MR,CT", "Models": ["stroke_risk", "triton_seg"]}],
    })
    assert s.enabled
    assert s.models["stroke_risk"].url == "http://svc:8900"
    assert s.models["stroke_risk"].read_timeout_seconds == 12
    oip = s.models["triton_seg"]
    assert (oip.protocol, oip.url, oip.remote_name, oip.outputs.score, oip.outputs.score_index) == (
        "oip", "http://triton:8000", "brain_seg", "prob", 1)
    alias = s.models["alias"]
    assert (alias.remote_name, alias.url, alias.read_timeout_seconds) == ("stroke_risk", "http://other:1", 3)
    assert alias.api_key == "s3cr3t-key" and "s3cr3t" not in repr(alias)  # the API key never reaches logs through repr
    assert s.rules[0].name == "rule-1" and s.rules[0].modalities == {"MR", "CT"}


def test_a_model_with_its_own_url_enables_ai_without_inference_url() -> None:
    s = ai_settings.parse({"Models": {"stroke_risk": {"Url": "http://a:1"}, "tumor_detection": {}}})
    assert s.enabled
    assert s.models["stroke_risk"].available and not s.models["tumor_detection"].available


@pytest.mark.parametrize(("raw", "message"), [
    ({"InferenceUrl": "ftp://x"}, "InferenceUrl"),
    ({"Rules": [{"Models": ["nope"]}]}, "unknown model"),
    ({"Rules": [{"Models": []}]}, "at least one model"),
    ({"Rules": [{"Models": ["stroke_risk"], "SeriesDescription": "("}]}, "regular expression"),
    ({"Rules": {"Models": ["stroke_risk"]}}, "must be a list"),
    ({"Models": {"x": {"Protocol": "grpc"}}, "Rules": []}, "Protocol"),
    ({"Models": {"bad name": {}}, "Rules": []}, "model name"),
    ({"Models": {"x": {"Protocol": "oip", "InputLayout": "XYZ"}}, "Rules": []}, "InputLayout"),
    ({"Retry": {"Jitter": 1.5}}, "Jitter"),
    ({"Retry": {"Factor": 0.5}}, "Factor"),
    ({"Retry": {"MaxRetries": -1}}, "MaxRetries"),
    ({"Retry": {"BaseDelaySeconds": 10, "MaxDelaySeconds": 5}}, "MaxDelaySeconds"),
    ({"Workers": 0}, "Workers"),
    ({"Workers": "many"}, "number"),
    ({"ConnectTimeoutSeconds": 0}, "ConnectTimeoutSeconds"),
    ({"TokenTtlSeconds": 10}, "TokenTtlSeconds"),
])
def test_invalid_sections_are_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ai_settings.parse(raw)
