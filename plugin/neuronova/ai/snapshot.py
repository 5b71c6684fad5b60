"""What Orthanc's index says about a study, as a :class:`StudySnapshot` (internal REST calls).

Three calls per study: the study, its series (expanded) and its instances (expanded, for
the SOP Instance UIDs of the content key). They run on AI threads, never on Orthanc's
change thread.
"""

from __future__ import annotations

from typing import Any

from ..errors import OrthancCallError
from ..host import Host
from .rules import SeriesSnapshot, StudySnapshot


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int | float)}


def load_study(host: Host, orthanc_id: str) -> StudySnapshot | None:
    """The study with this Orthanc identifier, or None when it no longer exists."""
    try:
        study = host.rest_get_json(f"/studies/{orthanc_id}")
        series_list = host.rest_get_json(f"/studies/{orthanc_id}/series")
        instances = host.rest_get_json(f"/studies/{orthanc_id}/instances")
    except OrthancCallError as exc:
        if exc.status == 404:
            return None
        raise
    sops: dict[str, list[str]] = {}
    for instance in instances:
        uid = instance.get("MainDicomTags", {}).get("SOPInstanceUID", "")
        if uid:
            sops.setdefault(str(instance.get("ParentSeries", "")), []).append(str(uid))
    series = tuple(
        SeriesSnapshot(
            uid=str(s.get("MainDicomTags", {}).get("SeriesInstanceUID", "")),
            orthanc_id=str(s["ID"]),
            tags=_tags(s.get("MainDicomTags")),
            instance_ids=tuple(str(i) for i in s.get("Instances", ())),
            sop_uids=tuple(sops.get(str(s["ID"]), ())),
        )
        for s in series_list
    )
    patient_tags = _tags(study.get("PatientMainDicomTags"))
    return StudySnapshot(
        uid=str(study.get("MainDicomTags", {}).get("StudyInstanceUID", "")),
        orthanc_id=orthanc_id,
        patient_id=patient_tags.get("PatientID", ""),
        tags=_tags(study.get("MainDicomTags")),
        patient_tags=patient_tags,
        series=series,
        is_stable=bool(study.get("IsStable", True)),
    )


def load_study_by_uid(host: Host, study_uid: str) -> StudySnapshot | None:
    orthanc_id = host.lookup_study(study_uid)
    return None if orthanc_id is None else load_study(host, orthanc_id)


def parent_study(host: Host, series_id: str) -> str | None:
    """Orthanc identifier of a series' study (None when the series is gone)."""
    try:
        series = host.rest_get_json(f"/series/{series_id}")
    except OrthancCallError as exc:
        if exc.status == 404:
            return None
        raise
    parent = series.get("ParentStudy")
    return str(parent) if parent else None
