"""An in-memory stand-in for the plugin's Host interface (not for the Orthanc SDK)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from neuronova.errors import OrthancCallError


@dataclass
class FakeStudy:
    uid: str
    patient_id: str
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[str]] = field(default_factory=dict)  # series uid -> sop uids


class RecordingHost:
    """The parts of the Host interface every fake shares: logs and metrics are kept."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.metrics: dict[str, float] = {}
        self.audit_log: list[tuple[str, str, str, str, bytes]] = []

    def rest_put(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        raise NotImplementedError

    def rest_delete(self, uri: str, after_plugins: bool = False) -> None:
        raise NotImplementedError

    def parse_dicom(self, dicom: bytes) -> dict[str, Any] | None:
        raise NotImplementedError

    def set_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value

    def emit_audit_log(self, user: str, level: str, resource_id: str, action: str, data: bytes) -> None:
        self.audit_log.append((user, level, resource_id, action, data))

    def log_info(self, message: str) -> None:
        self.logs.append(message)

    def log_warning(self, message: str) -> None:
        self.logs.append(message)

    def log_error(self, message: str) -> None:
        self.logs.append(message)


class FakeHost(RecordingHost):
    def __init__(self, studies: list[FakeStudy]) -> None:
        super().__init__()
        self.studies = {s.uid: s for s in studies}
        self.calls = 0
        self.fail = False

    def _check(self) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("Orthanc exploded")

    def lookup_study(self, study_uid: str) -> str | None:
        self._check()
        return f"study-{study_uid}" if study_uid in self.studies else None

    def lookup_series(self, series_uid: str) -> str | None:
        self._check()
        return next((f"series-{series_uid}" for s in self.studies.values() if series_uid in s.series), None)

    def lookup_instance(self, sop_uid: str) -> str | None:
        self._check()
        return next((f"instance-{sop_uid}" for s in self.studies.values() for sops in s.series.values()
                     if sop_uid in sops), None)

    def _study_of(self, kind: str, uid: str) -> FakeStudy:
        for study in self.studies.values():
            if kind == "study" and study.uid == uid:
                return study
            if kind == "series" and uid in study.series:
                return study
            if kind == "instance" and any(uid in sops for sops in study.series.values()):
                return study
        raise OrthancCallError(404, "UNKNOWN_RESOURCE")

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        return json.dumps(self.rest_get_json(uri, after_plugins)).encode()

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        self._check()
        parts = uri.strip("/").split("/")
        kind = {"studies": "study", "series": "series", "instances": "instance"}[parts[0]]
        uid = parts[1].split("-", 1)[1]
        study = self._study_of(kind, uid)
        if len(parts) == 2 and kind == "study":
            main = {k: v for k, v in study.tags.items() if k == "ReferringPhysicianName"}
            return {"MainDicomTags": {"StudyInstanceUID": study.uid, **main},
                    "PatientMainDicomTags": {"PatientID": study.patient_id}, "Series": list(study.series)}
        if parts[-1] == "study":
            return {"MainDicomTags": {"StudyInstanceUID": study.uid}}
        if parts[-1] == "instances":
            return [{"ID": f"instance-{sop}"} for sops in study.series.values() for sop in sops]
        if parts[-1] == "simplified-tags":
            return dict(study.tags)
        raise OrthancCallError(404, "UNKNOWN_RESOURCE")

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        self._check()
        assert uri == "/tools/find"
        query = json.loads(body)["Query"]
        found = [s for s in self.studies.values() if all(
            (s.patient_id if k == "PatientID" else s.tags.get(k, "")).upper() == v.upper() for k, v in query.items())]
        return json.dumps([{"MainDicomTags": {"StudyInstanceUID": s.uid}} for s in found]).encode()
