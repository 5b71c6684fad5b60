"""Rules, series choice, content keys and the retry policy (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from neuronova.ai import settings as ai_settings
from neuronova.ai.retry import after_transient, backoff_delay
from neuronova.ai.rules import (
    SeriesSnapshot,
    StudySnapshot,
    content_key,
    evaluate,
    series_for_model,
    study_content_key,
)
from neuronova.ai.settings import RetryPolicy


def series(uid: str, modality: str, n: int, **tags: str) -> SeriesSnapshot:
    return SeriesSnapshot(uid, f"id-{uid}", {"Modality": modality, "SeriesInstanceUID": uid, **tags},
                          tuple(f"i-{uid}-{k}" for k in range(n)), tuple(f"{uid}.{k}" for k in range(n)))


def study(*items: SeriesSnapshot, **tags: str) -> StudySnapshot:
    return StudySnapshot("1.2.3", "st", "P1", {"StudyInstanceUID": "1.2.3", **tags}, {"PatientID": "P1"}, items)


AI_SEG = series("9.1", "SEG", 1, Manufacturer="NeuroNova", SeriesDescription="NeuroNova AI stroke_risk Hyperintensity")
AI_SR = series("9.2", "SR", 1, Manufacturer="NeuroNova", SeriesDescription="NeuroNova AI stroke_risk report")


def rules(*raw: dict[str, Any]) -> Any:
    return ai_settings.parse({"InferenceUrl": "http://x:1", "Rules": list(raw)}).rules


def test_default_rule_sends_every_mr_study_to_stroke_risk_with_its_largest_mr_series() -> None:
    default = ai_settings.parse({"InferenceUrl": "http://x:1"}).rules
    mr = study(series("1.1", "MR", 20), series("1.2", "MR", 180), series("1.3", "CT", 400), AI_SEG, AI_SR)
    [match] = evaluate(default, mr)
    assert (match.model, match.series.uid, match.rule) == ("stroke_risk", "1.2", "mr-stroke-risk")
    assert evaluate(default, study(series("1.3", "CT", 400))) == []
    # a study holding only our own results is never analysed
    assert evaluate(default, study(AI_SEG, AI_SR)) == []


def test_ai_results_recognised_by_any_marker() -> None:
    by_manufacturer = series("9.3", "MR", 50, Manufacturer="neuronova")
    by_description = series("9.4", "MR", 50, SeriesDescription="NeuroNova AI tumor_detection report")
    s = study(series("1.1", "MR", 10), by_manufacturer, by_description)
    [match] = evaluate(ai_settings.parse({"InferenceUrl": "http://x:1"}).rules, s)
    assert match.series.uid == "1.1"
    assert s.modalities == {"MR"}


def test_criteria() -> None:
    r = rules({"Name": "flair", "ModalitiesInStudy": ["MR"], "BodyPartExamined": ["brain", "HEAD"],
               "SeriesDescription": "flair|t2", "ProtocolName": "^neuro", "StudyDescription": "brain",
               "Attributes": {"Manufacturer": "siemens"}, "MinInstances": 5, "Models": ["tumor_detection"]})
    good = series("1.1", "MR", 5, BodyPartExamined="Head", SeriesDescription="AX T2 FLAIR", ProtocolName="NEURO std",
                  Manufacturer="SIEMENS")
    assert [m.series.uid for m in evaluate(r, study(good, StudyDescription="MR Brain"))] == ["1.1"]
    assert evaluate(r, study(good, StudyDescription="MR knee")) == []
    for change in ({"BodyPartExamined": "KNEE"}, {"SeriesDescription": "T1 MPRAGE"}, {"ProtocolName": "x neuro"},
                   {"Manufacturer": "GE"}, {"Modality": "CT"}):
        bad = series("1.1", "MR", 5, **{**dict(good.tags), **change})
        assert evaluate(r, study(bad, StudyDescription="brain")) == [], change
    assert evaluate(r, study(series("1.1", "MR", 4, **{k: v for k, v in good.tags.items() if k != "Modality"}),
                             StudyDescription="brain")) == []


def test_without_modalities_non_image_series_are_never_chosen() -> None:
    r = rules({"Models": ["stroke_risk"]})
    [match] = evaluate(r, study(series("1.1", "SR", 500), series("1.2", "PR", 400), series("1.3", "CT", 3)))
    assert match.series.uid == "1.3"


def test_one_job_per_model_first_rule_wins_and_unavailable_models_are_skipped() -> None:
    r = rules({"Name": "a", "ModalitiesInStudy": ["CT"], "Models": ["stroke_risk"]},
              {"Name": "b", "ModalitiesInStudy": ["MR"], "Models": ["stroke_risk", "tumor_detection"]})
    s = study(series("1.1", "MR", 10), series("1.2", "CT", 5))
    found = {(m.model, m.series.uid, m.rule) for m in evaluate(r, s)}
    assert found == {("stroke_risk", "1.2", "a"), ("tumor_detection", "1.1", "b")}
    assert [m.model for m in evaluate(r, s, available=["tumor_detection"])] == ["tumor_detection"]


def test_ties_break_on_series_number_then_uid() -> None:
    r = rules({"Models": ["stroke_risk"]})
    s = study(series("1.9", "MR", 10, SeriesNumber="7"), series("1.8", "MR", 10, SeriesNumber="3"))
    assert evaluate(r, s)[0].series.uid == "1.8"


def test_manual_series_choice() -> None:
    r = rules({"ModalitiesInStudy": ["MR"], "SeriesDescription": "flair", "Models": ["stroke_risk"]})
    s = study(series("1.1", "MR", 10, SeriesDescription="FLAIR"), series("1.2", "MR", 30), AI_SEG)
    assert series_for_model(r, s, "stroke_risk")[0].uid == "1.1"  # type: ignore[union-attr]
    chosen, rule = series_for_model(r, s, "tumor_detection")  # no rule names it: largest image series
    assert chosen is not None and (chosen.uid, rule) == ("1.2", "manual")
    assert series_for_model(r, study(AI_SEG, AI_SR), "stroke_risk") == (None, "manual")


def test_content_key_is_the_model_and_the_sorted_non_ai_instances() -> None:
    a = study(series("1.1", "MR", 3), series("1.2", "MR", 2))
    b = study(series("1.2", "MR", 2), series("1.1", "MR", 3), AI_SEG, AI_SR)  # other order, plus results
    assert study_content_key("stroke_risk", a) == study_content_key("stroke_risk", b)
    assert study_content_key("stroke_risk", a) != study_content_key("tumor_detection", a)
    c = study(series("1.1", "MR", 4), series("1.2", "MR", 2))  # one instance more
    assert study_content_key("stroke_risk", a) != study_content_key("stroke_risk", c)
    assert content_key("m", ["2", "1", "1"]) == content_key("m", ["1", "2"])
    assert len(content_key("x" * 64, ["1"])) <= 160


def test_backoff_is_exponential_with_jitter_below_and_a_cap() -> None:
    policy = RetryPolicy(max_retries=3, base_delay_seconds=60, factor=2, max_delay_seconds=3600, jitter=0.25)
    assert [backoff_delay(policy, n, rand=lambda: 0.0) for n in range(4)] == [60, 120, 240, 480]
    assert [backoff_delay(policy, n, rand=lambda: 1.0) for n in range(3)] == [45, 90, 180]
    assert backoff_delay(policy, 20, rand=lambda: 0.0) == 3600
    assert backoff_delay(policy, 0, retry_after=100, rand=lambda: 0.5) == 100  # Retry-After wins when longer
    assert backoff_delay(policy, 0, retry_after=10**9, rand=lambda: 0.5) == 3600  # but never beyond the cap
    spread = {round(backoff_delay(policy, 1), 6) for _ in range(50)}
    assert len(spread) > 10 and all(90 <= d <= 120 for d in spread)


@pytest.mark.parametrize(("attempts", "retry"), [(1, True), (3, True), (4, False), (9, False)])
def test_after_transient_gives_up_after_the_last_attempt(attempts: int, retry: bool) -> None:
    decision = after_transient(RetryPolicy(max_retries=3, base_delay_seconds=1), attempts, "boom", rand=lambda: 0)
    assert (decision.retry_in is not None) is retry
    if retry:
        assert decision.retry_in == 2 ** (attempts - 1)
    else:
        assert decision.reason == f"gave up after {attempts} attempt(s): boom"
