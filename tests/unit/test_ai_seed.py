"""The seed's inference contract: the instance sent is the middle slice of the series; the
seed's one mask is the segmentation of that instance (a SEG of one frame referencing it);
the reference service's seed mode answers exactly the seed's fields; a result that cannot
be stored names the attribute and value, and a retry after the rule is fixed stores it once."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from pydicom.dataset import Dataset

from ai_client import InferenceRequest, InferenceResult, volume_from_datasets
from ai_client.reference_service import (
    SEED_FIELDS,
    ReferenceServer,
    ServiceConfig,
    UnknownInstance,
    infer_volume,
    orthanc_instance_id,
    seed_answer,
)
from ai_client.testing import StubDicomWeb, mr_head_series
from neuronova.ai import settings as ai_settings
from neuronova.ai.geometry import SliceRef, middle_slice, ordered_slices
from neuronova.ai.headers import RULES, Rule, verbatim
from neuronova.ai.jobs import FAILED, SUCCEEDED, Job
from neuronova.ai.service import AiService
from neuronova.ai.tokens import ShareTokens
from neuronova.gate.shares import ShareRegistry
from neuronova.gate.tokens import PluginSigner
from neuronova.store import open_database
from tests.support.waiting import wait_for

from .ai_fakes import FakeOrthanc, ScriptedBackend

# ------------------------------------------------------------------------- the slice sent


def _ref(name: str, z: float | None, number: str = "", iop: str = "1\\0\\0\\0\\1\\0") -> SliceRef:
    return SliceRef(f"id-{name}", f"1.2.{len(name)}", number, "" if z is None else f"0\\0\\{z}", iop)


def test_the_middle_slice_by_position_along_the_normal() -> None:
    slices = [_ref("c", 30.0, "1"), _ref("a", -10.0, "9"), _ref("e", 50.0, "3"), _ref("b", 10.0, "2"),
              _ref("d", 40.0, "5")]
    assert [s.orthanc_id for s in ordered_slices(slices)] == ["id-a", "id-b", "id-c", "id-d", "id-e"]
    assert middle_slice(slices).orthanc_id == "id-c"
    assert middle_slice(slices[:4]).orthanc_id == "id-b"  # even count: the lower middle
    # a sagittal series: the normal is x, z does not matter
    sagittal = [SliceRef(f"id-{x}", "1.2", "", f"{x}\\0\\{-x}", "0\\1\\0\\0\\0\\-1") for x in (5, 1, 3)]
    assert middle_slice(sagittal).orthanc_id == "id-3"
    assert middle_slice([_ref("only", None)]).orthanc_id == "id-only"


def test_without_positions_the_instance_number_decides() -> None:
    slices = [_ref("x", 1.0, "3"), _ref("y", None, "1"), _ref("z", 2.0, "2"), _ref("w", 4.0, "bad")]
    assert [s.orthanc_id for s in ordered_slices(slices)] == ["id-y", "id-z", "id-x", "id-w"]
    assert middle_slice(slices).orthanc_id == "id-z"
    with pytest.raises(ValueError):
        middle_slice([])


# ------------------------------------------------------------------------- the seed's answer


@pytest.fixture(scope="module")
def head() -> list[Dataset]:
    return mr_head_series(seed="unit-seed", slices=5)


def _request(head: list[Dataset], instance_id: str, url: str = "http://127.0.0.1:1/dicom-web") -> InferenceRequest:
    return InferenceRequest(instance_id, "stroke_risk", str(head[0].PatientID), str(head[0].StudyInstanceUID),
                            str(head[0].SeriesInstanceUID), url, "tkn")


def test_orthanc_identifiers_are_sha1_of_the_four_uids() -> None:
    # Orthanc's DicomInstanceHasher: sha1("PatientID|Study|Series|SOP") in five groups of
    # eight hex digits (checked against a real Orthanc in tests/integration/test_ai_jobs.py)
    digest = hashlib.sha1(b"PAT|1.2|1.3|1.4", usedforsecurity=False).hexdigest()
    assert orthanc_instance_id("PAT", "1.2", "1.3", "1.4") == "-".join(
        (digest[:8], digest[8:16], digest[16:24], digest[24:32], digest[32:]))


def test_seed_answer_is_the_mask_of_the_named_instance(head: list[Dataset]) -> None:
    full = infer_volume(volume_from_datasets(head), "stroke_risk", job_id="svc")
    frame = full.segmentation_frames[2]
    uids = (str(head[0].PatientID), str(head[0].StudyInstanceUID), str(head[0].SeriesInstanceUID))
    for named in (frame.sop_instance_uid, orthanc_instance_id(*uids, frame.sop_instance_uid)):
        answer = seed_answer(_request(head, named), full)
        assert tuple(answer) == SEED_FIELDS
        parsed = InferenceResult.from_json(json.loads(json.dumps(answer)))
        assert parsed.segmentation is not None and np.array_equal(parsed.segmentation, frame.mask)
        assert parsed.segmentation_sop_instance_uid is None and not parsed.segmentation_frames
    with pytest.raises(UnknownInstance):
        seed_answer(_request(head, "nope"), full)


@pytest.fixture
def seed_service(head: list[Dataset]) -> Iterator[tuple[ReferenceServer, StubDicomWeb]]:
    stub = StubDicomWeb(head, "tkn").start()
    server = ReferenceServer("127.0.0.1", 0, ServiceConfig(answer="seed", delay_seconds=0.2))
    server.start_background()
    try:
        yield server, stub
    finally:
        server.stop()
        stub.stop()


def test_the_reference_service_seed_mode_answers_only_the_seed_fields(
        seed_service: tuple[ReferenceServer, StubDicomWeb], head: list[Dataset]) -> None:
    server, stub = seed_service
    health = requests.get(server.url + "/health", timeout=10).json()
    assert (health["answer"], health["delay_seconds"]) == ("seed", 0.2)
    sop = str(head[3].SOPInstanceUID)
    named = orthanc_instance_id(str(head[0].PatientID), str(head[0].StudyInstanceUID),
                                str(head[0].SeriesInstanceUID), sop)
    answer = requests.post(server.url + "/inference", json=_request(head, named, stub.url).to_json(), timeout=30)
    assert answer.status_code == 200, answer.text
    assert list(answer.json()) == list(SEED_FIELDS)
    index = [f.sop_instance_uid for f in volume_from_datasets(head).frames].index(sop)
    expected = infer_volume(volume_from_datasets(head), "stroke_risk").segmentation_frames[index].mask
    assert np.array_equal(InferenceResult.from_json(answer.json()).segmentation, expected)
    wrong = requests.post(server.url + "/inference", json=_request(head, "0-0", stub.url).to_json(), timeout=30)
    assert wrong.status_code == 422 and "not an instance" in wrong.json()["error"]
    with pytest.raises(ValueError):
        ServiceConfig(answer="other")


# ------------------------------------------------------------------------- through the AI service

SIGNER = PluginSigner("unit-test-signing-secret-0123456789abcdef")


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    return wait_for(predicate, timeout, what)


class SeedWorld:
    def __init__(self, tmp_path: Path, head: list[Dataset]) -> None:
        self.db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
        self.head = head
        self.orthanc = FakeOrthanc(head)
        self.backend = ScriptedBackend(self.orthanc)
        self.backend.answer = "seed"
        settings = ai_settings.parse({
            "InferenceUrl": "http://inference.test:8900", "PollSeconds": 0.05, "LeaseSeconds": 5, "Workers": 1,
            "Retry": {"MaxRetries": 0, "BaseDelaySeconds": 0.1, "Factor": 2, "MaxDelaySeconds": 1, "Jitter": 0},
        }, {"HttpPort": 8042, "StableAge": 0.2})
        self.service = AiService(settings, self.orthanc, self.db, ShareTokens(ShareRegistry(self.db, SIGNER), 900),
                                 "node-unit", backends={"stroke_risk": self.backend})

    def run(self) -> Job:
        uid = str(self.head[0].StudyInstanceUID)
        self.service.on_change("STABLE_STUDY", "STUDY", FakeOrthanc.study_id(uid))
        return self.finished()

    def finished(self) -> Job:
        uid = str(self.head[0].StudyInstanceUID)
        return _wait(lambda: (js := self.service.jobs.find(study=uid)) and js[0].status in (SUCCEEDED, FAILED)
                     and js[0], "a finished job")

    def posted(self, modality: str) -> list[Dataset]:
        return [ds for ds in self.orthanc.posted if ds.Modality == modality]


@pytest.fixture
def seed_world(tmp_path: Path) -> Iterator[SeedWorld]:
    head = mr_head_series(seed=f"unit-seed-{tmp_path.name}", slices=5)
    world = SeedWorld(tmp_path, head)
    world.service.on_change("ORTHANC_STARTED", "NONE", "")
    yield world
    world.service.stop()


def test_the_seed_mask_is_stored_on_the_frame_of_the_instance_sent(seed_world: SeedWorld) -> None:
    job = seed_world.run()
    assert job.status == SUCCEEDED, job.last_error
    [request] = seed_world.backend.requests
    by_z = sorted(seed_world.head, key=lambda ds: float(ds.ImagePositionPatient[2]))
    sent = by_z[2]  # the middle of 5 slices
    assert request.instance_id == f"in-{sent.SOPInstanceUID}"
    assert job.result["instance_sent"] == {"orthanc_id": f"in-{sent.SOPInstanceUID}",
                                           "sop_instance_uid": str(sent.SOPInstanceUID)}
    assert "note" not in job.result
    [seg_ds] = seed_world.posted("SEG")
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(seg_ds_bytes(seg_ds))))
    assert int(seg.NumberOfFrames) == 1
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == sent.SOPInstanceUID
    assert [str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence] \
        == [str(sent.SOPInstanceUID)]
    full = infer_volume(volume_from_datasets(seed_world.head), "stroke_risk")
    index = [f.sop_instance_uid for f in full.segmentation_frames].index(str(sent.SOPInstanceUID))
    expected = full.segmentation_frames[index].mask
    assert job.result["mask"] == {"frames": 1, "voxels": int(expected.sum())}
    if expected.any():
        assert np.array_equal(seg.pixel_array.reshape(expected.shape).astype(bool), expected)
    [sr] = seed_world.posted("SR")
    assert len(sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence) == 2  # MR + SEG


def seg_ds_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_failure_names_the_attribute_and_a_retry_after_the_rule_is_fixed_stores_once(
        tmp_path: Path) -> None:
    head = mr_head_series(seed="unit-seed-brainix", slices=5)
    for ds in head:
        ds.PatientSex = "0000"  # as on the real BRAINIX study
    world = SeedWorld(tmp_path, head)
    world.service.on_change("ORTHANC_STARTED", "NONE", "")
    try:
        world.service._runner.header_rules = {**RULES, "PatientSex": Rule(verbatim, True)}  # a rule missing
        job = world.run()
        assert job.status == FAILED
        assert "source attribute PatientSex (0010,0040) = '0000'" in job.last_error, job.last_error
        assert world.orthanc.posted == []  # nothing half stored
        world.service._runner.header_rules = RULES  # the rule is fixed (a new version of the plugin)
        world.service.retry(job.id, "admin")
        _wait(lambda: world.service.jobs.get(job.id).status == SUCCEEDED, "the retried job")  # type: ignore[union-attr]
        done = world.service.jobs.get(job.id)
        assert done is not None and done.attempts == 1
        assert [c for c in done.result["header_changes"] if c["attribute"] == "PatientSex"] == [
            {"attribute": "PatientSex", "tag": "(0010,0040)", "source": "0000", "stored": ""}]
        assert sorted(str(ds.Modality) for ds in world.orthanc.posted) == ["SEG", "SR"]
        assert all(str(ds.PatientSex) == "0000" for ds in head)  # the sources are untouched
        # a retry of the same job stores the same objects again (AlreadyStored), never new ones
        uids = {str(ds.SOPInstanceUID) for ds in world.orthanc.posted}
        assert len(uids) == 2
    finally:
        world.service.stop()
