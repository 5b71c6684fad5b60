"""Which studies go to which models, and which series a job analyses (pure: values in, values out).

A study is described by a :class:`StudySnapshot` (what Orthanc's index says about it). The
AI results NeuroNova stores back (recognised by :func:`~neuronova.ai.recognition.is_ai_result`
on the series' main tags: Orthanc keeps Manufacturer and SeriesDescription there)
are never eligible and never part of the study's content key, so storing them cannot
trigger a job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .recognition import is_ai_result
from .settings import NON_IMAGE_MODALITIES, Rule


@dataclass(frozen=True)
class SeriesSnapshot:
    uid: str
    orthanc_id: str
    tags: Mapping[str, str]  # Orthanc's series MainDicomTags
    instance_ids: tuple[str, ...]  # Orthanc identifiers
    sop_uids: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        return self.tags.get("Modality", "").strip().upper()

    @property
    def size(self) -> int:
        return len(self.instance_ids)

    @property
    def is_ai_result(self) -> bool:
        return is_ai_result(self.tags)


@dataclass(frozen=True)
class StudySnapshot:
    uid: str
    orthanc_id: str
    patient_id: str
    tags: Mapping[str, str]  # study MainDicomTags
    patient_tags: Mapping[str, str] = field(default_factory=dict)
    series: tuple[SeriesSnapshot, ...] = ()
    is_stable: bool = True

    @property
    def source_series(self) -> tuple[SeriesSnapshot, ...]:
        """The series that are not NeuroNova AI results."""
        return tuple(s for s in self.series if not s.is_ai_result)

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(s.modality for s in self.source_series if s.modality)

    def series_by_uid(self, uid: str) -> SeriesSnapshot | None:
        return next((s for s in self.series if s.uid == uid), None)


@dataclass(frozen=True)
class Match:
    """One job to create: ``model`` on ``series`` because of ``rule``."""

    model: str
    series: SeriesSnapshot
    rule: str


def content_key(model: str, sop_uids: Iterable[str]) -> str:
    """Idempotency key: the model and the sorted SOP Instance UIDs of the study's non-AI
    instances. The same content and model can never make two jobs (unique in the store)."""
    digest = hashlib.sha256()
    digest.update(model.encode())
    for uid in sorted(set(sop_uids)):
        digest.update(b"\n" + uid.encode())
    return f"{model}:{digest.hexdigest()}"


def study_content_key(model: str, study: StudySnapshot) -> str:
    return content_key(model, (uid for s in study.source_series for uid in s.sop_uids))


def _search(pattern: re.Pattern[str] | None, value: str) -> bool:
    return pattern is None or pattern.search(value) is not None


def _attribute(study: StudySnapshot, series: SeriesSnapshot, keyword: str) -> str:
    for tags in (series.tags, study.tags, study.patient_tags):
        if keyword in tags:
            return str(tags[keyword])
    return ""


def eligible(rule: Rule, study: StudySnapshot, series: SeriesSnapshot) -> bool:
    """Whether ``rule`` would analyse ``series`` of ``study``."""
    if series.is_ai_result or series.size < rule.min_instances:
        return False
    if rule.modalities:
        if series.modality not in rule.modalities:
            return False
    elif series.modality in NON_IMAGE_MODALITIES:
        return False
    if rule.body_parts and series.tags.get("BodyPartExamined", "").strip().upper() not in rule.body_parts:
        return False
    if not _search(rule.series_description, series.tags.get("SeriesDescription", "")):
        return False
    if not _search(rule.protocol_name, series.tags.get("ProtocolName", "")):
        return False
    return all(pattern.search(_attribute(study, series, keyword)) for keyword, pattern in rule.attributes.items())


def best_series(candidates: Sequence[SeriesSnapshot]) -> SeriesSnapshot | None:
    """The series with the most instances (ties: the lowest SeriesNumber, then UID)."""
    if not candidates:
        return None

    def key(s: SeriesSnapshot) -> tuple[int, int, str]:
        try:
            number = int(float(s.tags.get("SeriesNumber", "") or 0))
        except ValueError:
            number = 0
        return (-s.size, number, s.uid)

    return min(candidates, key=key)


def rule_series(rule: Rule, study: StudySnapshot) -> SeriesSnapshot | None:
    """The series ``rule`` analyses in ``study``, or None when the rule does not match."""
    if not _search(rule.study_description, study.tags.get("StudyDescription", "")):
        return None
    return best_series([s for s in study.series if eligible(rule, study, s)])


def evaluate(rules: Sequence[Rule], study: StudySnapshot, available: Iterable[str] | None = None) -> list[Match]:
    """The jobs a stable study should get: one per model, from the first rule that names it
    and matches. ``available`` restricts to models that can run (have a service URL)."""
    allowed = None if available is None else set(available)
    matches: dict[str, Match] = {}
    for rule in rules:
        models = [m for m in rule.models if m not in matches and (allowed is None or m in allowed)]
        if not models:
            continue
        series = rule_series(rule, study)
        if series is None:
            continue
        for model in models:
            matches[model] = Match(model, series, rule.name)
    return list(matches.values())


def series_for_model(rules: Sequence[Rule], study: StudySnapshot, model: str) -> tuple[SeriesSnapshot | None, str]:
    """For a manual job: the series the first matching rule naming ``model`` would analyse;
    else the largest image series of the study. Returns (series, rule name or "manual")."""
    for rule in rules:
        if model in rule.models:
            series = rule_series(rule, study)
            if series is not None:
                return series, rule.name
    fallback = Rule(name="manual", models=(model,))
    return best_series([s for s in study.series if eligible(fallback, study, s)]), "manual"
