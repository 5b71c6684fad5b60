"""In-memory stand-ins for the AI unit tests: an Orthanc behind the Host interface that keeps
real pydicom datasets (so results can really be built and stored), and a scripted inference
back end that runs the reference analysis on the real pixels."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from ai_client import InferenceRequest, InferenceResult, volume_from_datasets
from ai_client.reference_service import infer_volume, seed_answer
from ai_client.testing import part10
from neuronova.errors import OrthancCallError

from .fakes import RecordingHost

SERIES_TAGS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "Manufacturer", "BodyPartExamined",
               "ProtocolName", "SeriesNumber")
STUDY_TAGS = ("StudyInstanceUID", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyDate")


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


class FakeOrthanc(RecordingHost):
    """Implements neuronova.host.Host over a dict of datasets."""

    def __init__(self, datasets: Iterable[Dataset] = ()) -> None:
        super().__init__()
        self.instances: dict[str, Dataset] = {}  # SOP UID -> dataset
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.posted: list[Dataset] = []
        self.stable = True
        self.fail_posts = 0  # the next N POST /instances fail with 500
        self.fail_study_reads = 0  # the next N GET /studies/... fail with 500
        self.add(datasets)

    def add(self, datasets: Iterable[Dataset]) -> None:
        with self.lock:
            for ds in datasets:
                self.instances[str(ds.SOPInstanceUID)] = ds

    # -- ids
    @staticmethod
    def study_id(uid: str) -> str:
        return f"st-{uid}"

    def _by(self, keyword: str, uid: str) -> list[Dataset]:
        with self.lock:
            return [ds for ds in self.instances.values() if str(ds.get(keyword, "")) == uid]

    def lookup_study(self, study_uid: str) -> str | None:
        self.calls.append(f"lookup_study {study_uid}")
        return self.study_id(study_uid) if self._by("StudyInstanceUID", study_uid) else None

    def lookup_series(self, series_uid: str) -> str | None:
        self.calls.append(f"lookup_series {series_uid}")
        return f"se-{series_uid}" if self._by("SeriesInstanceUID", series_uid) else None

    def lookup_instance(self, sop_uid: str) -> str | None:
        self.calls.append(f"lookup_instance {sop_uid}")
        return f"in-{sop_uid}" if sop_uid in self.instances else None

    # -- REST
    def _series_json(self, datasets: list[Dataset]) -> list[dict[str, Any]]:
        by_series: dict[str, list[Dataset]] = {}
        for ds in datasets:
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
        return [{
            "ID": f"se-{uid}", "ParentStudy": self.study_id(str(items[0].StudyInstanceUID)),
            "MainDicomTags": {k: _text(items[0], k) for k in SERIES_TAGS if k in items[0]},
            "Instances": [f"in-{ds.SOPInstanceUID}" for ds in items],
        } for uid, items in by_series.items()]

    @staticmethod
    def _instances_json(datasets: list[Dataset]) -> list[dict[str, Any]]:
        return [{
            "ID": f"in-{ds.SOPInstanceUID}", "ParentSeries": f"se-{ds.SeriesInstanceUID}",
            "MainDicomTags": {"SOPInstanceUID": str(ds.SOPInstanceUID), "InstanceNumber": _text(ds, "InstanceNumber"),
                              # as Orthanc keeps them: the values joined by backslashes
                              **{k: "\\".join(str(v) for v in ds.get(k)) for k in
                                 ("ImagePositionPatient", "ImageOrientationPatient") if k in ds}},
        } for ds in datasets]

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        self.calls.append(f"GET {uri}")
        parts = uri.strip("/").split("/")
        if parts[0] == "studies" and self.fail_study_reads:
            self.fail_study_reads -= 1
            raise OrthancCallError(500, "INTERNAL_ERROR")
        if parts[0] == "studies":
            items = self._by("StudyInstanceUID", parts[1].removeprefix("st-"))
            if not items:
                raise OrthancCallError(404, "UNKNOWN_RESOURCE")
            if len(parts) == 2:
                first = items[0]
                return {
                    "ID": parts[1], "IsStable": self.stable, "Series": [s["ID"] for s in self._series_json(items)],
                    "MainDicomTags": {k: _text(first, k) for k in STUDY_TAGS if k in first},
                    "PatientMainDicomTags": {"PatientID": _text(first, "PatientID"),
                                             "PatientName": _text(first, "PatientName")},
                }
            if parts[2] == "series":
                return self._series_json(items)
            if parts[2] == "instances":
                return self._instances_json(items)
        if parts[0] == "series":
            items = self._by("SeriesInstanceUID", parts[1].removeprefix("se-"))
            if not items:
                raise OrthancCallError(404, "UNKNOWN_RESOURCE")
            if len(parts) == 2:
                return self._series_json(items)[0]
            if parts[2] == "instances":
                return self._instances_json(items)
        if parts[0] == "instances" and len(parts) == 2:
            ds = self.instances.get(parts[1].removeprefix("in-"))
            if ds is None:
                raise OrthancCallError(404, "UNKNOWN_RESOURCE")
            return self._instances_json([ds])[0]
        raise OrthancCallError(404, f"UNKNOWN_RESOURCE {uri}")

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        parts = uri.strip("/").split("/")
        if parts[0] == "instances" and len(parts) == 3 and parts[2] == "file":
            self.calls.append(f"GET {uri}")
            ds = self.instances.get(parts[1].removeprefix("in-"))
            if ds is None:
                raise OrthancCallError(404, "UNKNOWN_RESOURCE")
            return part10(ds)
        return json.dumps(self.rest_get_json(uri, after_plugins)).encode()

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        self.calls.append(f"POST {uri}")
        assert uri == "/instances", uri
        if self.fail_posts:
            self.fail_posts -= 1
            raise OrthancCallError(500, "INTERNAL_ERROR")
        ds = pydicom.dcmread(io.BytesIO(body))
        uid = str(ds.SOPInstanceUID)
        status = "AlreadyStored" if uid in self.instances else "Success"
        self.add([ds])
        self.posted.append(ds)
        return json.dumps({"ID": f"in-{uid}", "Status": status, "ParentSeries": f"se-{ds.SeriesInstanceUID}"}).encode()



Step = BaseException | Callable[[], None] | None


class ScriptedBackend:
    """An inference back end: each call first takes the next step of ``script`` (raise an
    exception, run a callable, or nothing), then answers with the reference analysis of
    the series' real pixels (read from the fake Orthanc). With ``answer = "seed"`` it
    answers only the seed's fields, as the reference service's seed mode does."""

    uses_dicomweb = True
    answer = "full"

    def __init__(self, orthanc: FakeOrthanc, script: Iterable[Step] = ()) -> None:
        self.orthanc = orthanc
        self.script: deque[Step] = deque(script)
        self.requests: list[InferenceRequest] = []
        self.times: list[float] = []

    def infer(self, request: InferenceRequest | None, load_sources: Callable[[], Any]) -> InferenceResult:
        assert request is not None
        self.requests.append(request)
        self.times.append(time.monotonic())
        step = self.script.popleft() if self.script else None
        if isinstance(step, BaseException):
            raise step
        if step is not None:
            step()
        datasets = self.orthanc._by("SeriesInstanceUID", request.series_instance_uid)
        result = infer_volume(volume_from_datasets(datasets), request.model_type, job_id="svc-job")
        if self.answer == "seed":  # the fake's instance ids are "in-<SOP Instance UID>"
            named = replace(request, instance_id=request.instance_id.removeprefix("in-"))
            return InferenceResult.from_json(seed_answer(named, result))
        return result
