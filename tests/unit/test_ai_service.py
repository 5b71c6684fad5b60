"""The AI service over a fake Orthanc (real datasets, real SEG/SR building, real store):
intake off the change thread, idempotency, retries, stop/restart, disabled mode."""

from __future__ import annotations

import io
import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from ai_client import MalformedResponse, PermanentError, TransientError
from ai_client.testing import mr_head_series
from neuronova.ai import settings as ai_settings
from neuronova.ai.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, NewJob
from neuronova.ai.recognition import is_ai_result
from neuronova.ai.results import to_part10
from neuronova.ai.service import AiService
from neuronova.ai.tokens import ShareTokens
from neuronova.errors import HttpError
from neuronova.gate.shares import ShareRegistry
from neuronova.gate.tokens import PluginSigner
from neuronova.store import Database, open_database
from tests.support.waiting import wait_for

from .ai_fakes import FakeOrthanc, ScriptedBackend, Step

SIGNER = PluginSigner("unit-test-signing-secret-0123456789abcdef")
BASE_DELAY = 0.1



def settings(stable_age: float = 0.2, **overrides: Any) -> ai_settings.Settings:
    raw: dict[str, Any] = {
        "InferenceUrl": "http://inference.test:8900", "PollSeconds": 0.05, "LeaseSeconds": 5, "Workers": 2,
        "Retry": {"MaxRetries": 3, "BaseDelaySeconds": BASE_DELAY, "Factor": 2, "MaxDelaySeconds": 5, "Jitter": 0},
    }
    raw.update(overrides)
    return ai_settings.parse(raw, {"HttpPort": 8042, "StableAge": stable_age})


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.db: Database = open_database(f"sqlite:///{tmp_path}/store.sqlite")
        self.shares = ShareRegistry(self.db, SIGNER)
        self.head: list[Dataset] = mr_head_series(seed=f"unit-{tmp_path.name}", slices=4)
        self.orthanc = FakeOrthanc(self.head)
        self.node = "node-unit"
        self.services: list[AiService] = []

    @property
    def study_uid(self) -> str:
        return str(self.head[0].StudyInstanceUID)

    @property
    def study_id(self) -> str:
        return FakeOrthanc.study_id(self.study_uid)

    def service(self, script: list[Step] | None = None, start: bool = True, **overrides: Any) -> AiService:
        backend = ScriptedBackend(self.orthanc, script or [])
        s = settings(**overrides)
        service = AiService(s, self.orthanc, self.db, ShareTokens(self.shares, s.token_ttl_seconds), self.node,
                            backends={"stroke_risk": backend, "tumor_detection": backend} if s.enabled else None)
        service.backend = backend  # type: ignore[attr-defined]
        self.services.append(service)
        if start:
            service.on_change("ORTHANC_STARTED", "NONE", "")
        return service

    def job(self, service: AiService) -> Job:
        jobs = service.jobs.find(study=self.study_uid, model="stroke_risk")
        assert len(jobs) <= 1
        return jobs[0] if jobs else None  # type: ignore[return-value]

    def finished(self, service: AiService) -> Job:
        return wait_for(lambda: (j := self.job(service)) is not None and j.status in (SUCCEEDED, FAILED) and j,
                        what="a finished job")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    for service in w.services:
        service.stop()


def test_the_change_callback_only_enqueues(world: World) -> None:
    service = world.service(start=False)
    for change in ("NEW_STUDY", "NEW_SERIES", "STABLE_STUDY", "STABLE_STUDY", "NEW_INSTANCE", "STABLE_SERIES"):
        service.on_change(change, "STUDY", world.study_id)
    assert world.orthanc.calls == []  # no Orthanc call, no store write on Orthanc's change thread
    assert service.intake_depth() == 5  # NEW_INSTANCE too: the arrival, for stability across nodes
    assert service.jobs.counts()["queued"] == 0


def test_a_stable_study_runs_one_job_and_stores_seg_and_sr(world: World) -> None:
    service = world.service()
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    job = world.finished(service)
    assert (job.status, job.attempts, job.trigger, job.rule) == (SUCCEEDED, 1, "auto", "mr-stroke-risk")
    assert job.series_uid == str(world.head[0].SeriesInstanceUID)
    [request] = service.backend.requests  # type: ignore[attr-defined]
    assert request.dicomweb_url == "http://127.0.0.1:8042/dicom-web"
    assert (request.study_instance_uid, request.series_instance_uid, request.patient_id) == (
        world.study_uid, job.series_uid, "NN-TEST-0001")
    # the middle slice by position along the slice normal (4 slices: the second)
    iop = [float(v) for v in world.head[0].ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    by_position = sorted(world.head, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    assert request.instance_id == f"in-{by_position[1].SOPInstanceUID}"
    claims = SIGNER.verify("share", request.access_token)  # a share token for exactly this study...
    assert claims["study"] == world.study_uid and claims["by"] == f"ai:{job.id}"
    assert claims["exp"] - claims["iat"] == 900
    assert world.shares.is_revoked(claims["jti"])  # ...revoked once the service answered
    kinds = sorted(str(ds.Modality) for ds in world.orthanc.posted)
    assert kinds == ["SEG", "SR"] and all(is_ai_result(ds) for ds in world.orthanc.posted)
    assert {str(ds.StudyInstanceUID) for ds in world.orthanc.posted} == {world.study_uid}
    objects = {o["type"]: o for o in job.result["objects"]}
    assert objects["SEG"]["sop_instance_uid"] == next(
        str(ds.SOPInstanceUID) for ds in world.orthanc.posted if ds.Modality == "SEG")
    assert 0 <= job.result["risk_score"] <= 1 and job.result["mask"]["frames"] == 4
    # published by the worker right after it recorded the outcome (and by the monitor)
    metrics = world.orthanc.metrics
    wait_for(lambda: metrics.get("neuronova_ai_jobs_succeeded") == 1 and metrics.get("neuronova_ai_attempts") == 1
             and metrics.get("neuronova_ai_inference_latency_seconds", 0) > 0, what="metrics")

    # the study now holds the results; more stable events (duplicates, and the one the
    # results themselves cause) never make another job
    for _ in range(3):
        service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    wait_for(lambda: service.intake_depth() == 0, what="intake drained")
    time.sleep(0.3)
    assert len(service.jobs.find(study=world.study_uid)) == 1
    assert len(service.backend.requests) == 1  # type: ignore[attr-defined]


def test_transient_failures_are_retried_with_exponential_backoff(world: World) -> None:
    service = world.service([TransientError("answered 500", status=500), MalformedResponse("not JSON"),
                             TransientError("timed out")])
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    job = world.finished(service)
    assert (job.status, job.attempts) == (SUCCEEDED, 4)
    history = service.jobs.history(job.id)
    assert [(e.attempt, e.event) for e in history] == [(1, "retry"), (2, "retry"), (3, "retry"), (4, "succeeded")]
    assert [e.retry_in for e in history[:3]] == [BASE_DELAY, 2 * BASE_DELAY, 4 * BASE_DELAY]
    assert "500" in history[0].detail and "not JSON" in history[1].detail
    times = service.backend.times  # type: ignore[attr-defined]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        assert gap >= BASE_DELAY * 2**n * 0.95, gaps


def test_a_permanent_failure_fails_at_once_with_the_reason(world: World) -> None:
    service = world.service([PermanentError("the inference service refused the request: 422", status=422)])
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    job = world.finished(service)
    assert (job.status, job.attempts) == (FAILED, 1)
    assert "422" in job.last_error
    assert world.orthanc.posted == []
    # published by the worker right after it recorded the outcome
    wait_for(lambda: world.orthanc.metrics.get("neuronova_ai_jobs_failed") == 1, what="metrics")


def test_after_the_last_attempt_the_job_is_failed(world: World) -> None:
    service = world.service([TransientError(f"answered 50{n}", status=500 + n) for n in range(4)])
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    job = world.finished(service)
    assert (job.status, job.attempts) == (FAILED, 4)
    assert job.last_error == "gave up after 4 attempt(s): answered 503 (HTTP 503)"
    assert len(service.backend.requests) == 4  # type: ignore[attr-defined]


def test_a_failed_store_into_orthanc_is_retried_and_stores_the_same_objects(world: World) -> None:
    world.orthanc.fail_posts = 1
    service = world.service()
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    job = world.finished(service)
    assert (job.status, job.attempts) == (SUCCEEDED, 2)
    assert "Orthanc call failed" in service.jobs.history(job.id)[0].detail
    assert len({str(ds.SOPInstanceUID) for ds in world.orthanc.posted}) == 2


def test_stop_mid_job_requeues_it_and_the_next_start_completes_it_once(world: World) -> None:
    release = threading.Event()
    first = world.service([lambda: release.wait(10)])
    first.on_change("STABLE_STUDY", "STUDY", world.study_id)
    wait_for(lambda: (j := world.job(first)) is not None and j.status == RUNNING, what="running")
    first.stop()  # Orthanc stops while the service is still working
    # (another worker may claim the released job in that instant; it hands it back at once)
    job = wait_for(lambda: (j := world.job(first)).status == QUEUED and j.lease_owner == "" and j, what="queued")
    assert (job.status, job.attempts, job.lease_owner) == (QUEUED, 0, "")
    release.set()  # the old attempt ends after the stop: its outcome must be ignored
    time.sleep(0.3)
    job = world.job(first)
    assert job.status == QUEUED and world.orthanc.posted == []

    second = world.service()
    done = world.finished(second)
    assert (done.id, done.status, done.attempts) == (job.id, SUCCEEDED, 1)
    assert [e.event for e in second.jobs.history(done.id)] == ["interrupted", "succeeded"]
    assert sorted(str(ds.Modality) for ds in world.orthanc.posted) == ["SEG", "SR"]


def test_a_job_left_running_by_a_crash_is_recovered_at_start(world: World) -> None:
    crashed = world.service(start=False)
    job, _ = crashed.jobs.create(NewJob(world.study_uid, str(world.head[0].SeriesInstanceUID), "NN-TEST-0001",
                                        "stroke_risk", "k:crash", "auto", "r", "rule:r", time.time()))
    assert crashed.jobs.claim(f"{world.node}/dead-process", 3600) is not None  # lease far in the future
    service = world.service()
    done = wait_for(lambda: (j := service.jobs.get(job.id)) is not None and j.status == SUCCEEDED and j,
                    what="recovered job")
    assert done.attempts == 1


def test_studies_seen_but_never_stable_are_evaluated_after_a_restart(world: World) -> None:
    first = world.service()
    first.on_change("NEW_STUDY", "STUDY", world.study_id)
    wait_for(lambda: first.jobs.pending() == [world.study_id], what="pending study")
    first.stop()  # Orthanc stops before the study became stable: no STABLE_STUDY will ever come
    world.orthanc.stable = False
    second = world.service()
    time.sleep(0.6)  # StableAge (0.2 s) passed: the study was looked at, but it is still receiving
    assert second.jobs.find() == [] and second.jobs.pending() == [world.study_id]
    second.stop()
    world.orthanc.stable = True
    third = world.service()
    job = world.finished(third)
    assert job.status == SUCCEEDED and third.jobs.pending() == []


def test_a_failed_evaluation_keeps_the_study_pending_for_the_next_sweep(world: World) -> None:
    first = world.service()
    world.orthanc.fail_study_reads = 1
    first.on_change("NEW_STUDY", "STUDY", world.study_id)
    first.on_change("STABLE_STUDY", "STUDY", world.study_id)
    wait_for(lambda: any("cannot evaluate study" in line for line in world.orthanc.logs), what="the error")
    assert first.jobs.find() == [] and first.jobs.pending() == [world.study_id]
    first.stop()
    second = world.service()  # its first sweep comes StableAge (0.2 s) after the start
    assert world.finished(second).status == SUCCEEDED


def test_a_study_received_through_two_nodes_is_analysed_once_when_both_are_done(world: World) -> None:
    # Two nodes on one store and one index: node A stored the first half of the study, node B
    # is storing the rest when A's own StableAge runs out (Orthanc's STABLE_STUDY is per node).
    world.orthanc = FakeOrthanc(world.head[:2])
    world.node = "node-a"
    a = world.service(stable_age=1.0)
    world.node = "node-b"
    b = world.service(stable_age=1.0)
    for ds in world.head[:2]:
        a.on_change("NEW_INSTANCE", "INSTANCE", f"in-{ds.SOPInstanceUID}")
    wait_for(lambda: a.jobs.last_arrival(world.study_id) is not None, what="A's arrivals")
    world.orthanc.add(world.head[2:])
    for ds in world.head[2:]:
        b.on_change("NEW_INSTANCE", "INSTANCE", f"in-{ds.SOPInstanceUID}")
    wait_for(lambda: a.intake_depth() == 0 and b.intake_depth() == 0, what="arrivals recorded")
    received_by_b = b.jobs.last_arrival(world.study_id)
    a.on_change("STABLE_STUDY", "STUDY", world.study_id)  # A alone thinks the study is stable
    wait_for(lambda: a.intake_depth() == 0, what="A's evaluation")
    assert b.clock() - received_by_b < 1.0, "the test machine is too slow for this check"
    assert a.jobs.find() == []  # deferred: B stored an instance less than StableAge ago
    job = world.finished(a)
    assert job.status == SUCCEEDED and job.result["mask"]["frames"] == 4  # the whole study
    assert job.created_at >= received_by_b + 1.0 - 0.01  # created once B's StableAge had passed too
    b.on_change("STABLE_STUDY", "STUDY", world.study_id)  # B's own stable event comes later: nothing new
    wait_for(lambda: b.intake_depth() == 0, what="B's evaluation")
    time.sleep(0.3)
    assert len(a.jobs.find(study=world.study_uid)) == 1
    requests = [*a.backend.requests, *b.backend.requests]  # type: ignore[attr-defined]
    assert len(requests) == 1
    assert sorted(str(ds.Modality) for ds in world.orthanc.posted) == ["SEG", "SR"]
    assert a.jobs.last_arrival(world.study_id) is None  # the arrivals the evaluation covered are dropped


def test_new_series_events_record_their_study(world: World) -> None:
    service = world.service()
    service.on_change("NEW_SERIES", "SERIES", f"se-{world.head[0].SeriesInstanceUID}")
    wait_for(lambda: service.jobs.pending() == [world.study_id], what="pending study")


def test_manual_submission_is_idempotent_and_checked(world: World) -> None:
    service = world.service()
    job, created = service.submit(world.study_uid, "tumor_detection", "dr.house")
    again, created_again = service.submit(world.study_uid, "tumor_detection", "admin")
    assert created and not created_again and again.id == job.id
    assert (job.trigger, job.rule, job.created_by) == ("manual", "manual", "dr.house")
    done = wait_for(lambda: (j := service.jobs.get(job.id)) is not None and j.status == SUCCEEDED and j)
    assert done.result["objects"]
    for study, model, series, status in (
        (world.study_uid, "nope", "", 400),
        ("1.2.3.4.5", "stroke_risk", "", 404),
        (world.study_uid, "stroke_risk", "1.2.3", 422),
    ):
        with pytest.raises(HttpError) as info:
            service.submit(study, model, "admin", series)
        assert info.value.status == status
    seg_series = next(str(ds.SeriesInstanceUID) for ds in world.orthanc.posted if ds.Modality == "SEG")
    with pytest.raises(HttpError) as info:
        service.submit(world.study_uid, "stroke_risk", "admin", seg_series)  # never analyse our own results
    assert info.value.status == 422


def test_disabled_ai_is_not_an_error(world: World) -> None:
    service = world.service(InferenceUrl="")
    assert not service.enabled
    assert service.health() == {"enabled": False, "reason": service.disabled_reason}
    assert "NEURONOVA_INFERENCE_URL" in service.disabled_reason
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    assert service.intake_depth() == 0 and world.orthanc.calls == []
    with pytest.raises(HttpError) as info:
        service.submit(world.study_uid, "stroke_risk", "admin")
    assert info.value.status == 503


def test_a_missing_client_library_disables_ai_instead_of_closing_the_gate(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. an image installed without dicomweb-client, which ai_client imports
    monkeypatch.setitem(sys.modules, "dicomweb_client", None)
    for name in [n for n in sys.modules if n == "ai_client" or n.startswith("ai_client.")] + [
            "neuronova.ai.clients", "neuronova.ai.runner"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    service = AiService(settings(), world.orthanc, world.db, world.shares, world.node)
    assert not service.enabled
    assert "cannot be imported" in service.disabled_reason and "dicomweb_client" in service.disabled_reason
    assert service.health()["enabled"] is False


def test_results_decode_with_pydicom(world: World) -> None:
    service = world.service()
    service.on_change("STABLE_STUDY", "STUDY", world.study_id)
    world.finished(service)
    seg = next(ds for ds in world.orthanc.posted if ds.Modality == "SEG")
    source_series = str(world.head[0].SeriesInstanceUID)
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == source_series
    assert seg.SegmentSequence[0].SegmentLabel == "Hyperintensity"
    roundtrip = pydicom.dcmread(io.BytesIO(to_part10(seg)))
    assert roundtrip.SOPInstanceUID == seg.SOPInstanceUID
    assert roundtrip.pixel_array.shape[-2:] == (64, 64)
