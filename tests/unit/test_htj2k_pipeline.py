"""The rendition pipeline with a fake Orthanc: renditions trail a busy ingest, catch up when it
pauses, failures are recorded, the queue depth is visible, originals are never written.

Encoding runs in the test's threads (``Processes: 0``); the encoder processes have their own
tests (test_htj2k_workers.py) and the integration tests run the real thing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import text

from neuronova.errors import ConfigError, OrthancCallError
from neuronova.htj2k import service as htj2k_service
from neuronova.htj2k import settings as htj2k_settings
from neuronova.htj2k.codec import encode_rendition
from neuronova.htj2k.encoder_pool import encode_job, encoder_pool
from neuronova.htj2k.service import Htj2kService
from neuronova.store import open_database
from tests.support.clock import ManualClock
from tests.support.dicom_factory import make_study

from .fakes import RecordingHost

ATTACHMENT = "htj2k"


class FakeOrthanc(RecordingHost):
    """Instances by Orthanc id; attachments PUT beside them."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        self.files = dict(files)
        self.attachments: dict[str, bytes] = {}

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        parts = uri.strip("/").split("/")
        if parts[0] == "instances" and parts[1] in self.files:
            if parts[2:] == ["file"]:
                return self.files[parts[1]]
            if parts[2:] == ["attachments", ATTACHMENT, "data"] and parts[1] in self.attachments:
                return self.attachments[parts[1]]
        raise OrthancCallError(404, uri)

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if uri == "/statistics":
            return {"CountInstances": len(self.files)}
        if uri.startswith("/instances?since="):
            since, limit = (int(v.split("=")[1]) for v in uri.split("?")[1].split("&"))
            return sorted(self.files)[since:since + limit]
        raise OrthancCallError(404, uri)

    def rest_put(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        parts = uri.strip("/").split("/")
        assert parts[0] == "instances" and parts[2:] == ["attachments", ATTACHMENT], uri
        if parts[1] not in self.files:
            raise OrthancCallError(404, uri)
        self.attachments[parts[1]] = bytes(body)
        return b"{}"



def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def files() -> dict[str, bytes]:
    study = make_study("CT_small.dcm", patient_id="P-1", patient_name="PIPE^LINE", slices=4)
    return {f"id-{n}": blob for n, blob in enumerate(study.files())}


def service(tmp_path: Path, host: FakeOrthanc, clock: ManualClock, **options: Any) -> Htj2kService:
    raw = {"Processes": 0, "Workers": 2, "IngestQuietMilliseconds": 500, **options}
    return Htj2kService(htj2k_settings.parse(raw), host, open_database(f"sqlite:///{tmp_path}/store.sqlite"),
                        clock=clock)


@pytest.fixture
def running(tmp_path: Path, files: dict[str, bytes]) -> Iterator[Callable[..., tuple[Htj2kService, FakeOrthanc,
                                                                                        ManualClock]]]:
    started: list[Htj2kService] = []

    def start(**options: Any) -> tuple[Htj2kService, FakeOrthanc, ManualClock]:
        host, clock = FakeOrthanc(files), ManualClock()
        started.append(service(tmp_path, host, clock, **options))
        return started[-1], host, clock

    yield start
    for svc in started:
        svc.stop()


def test_renditions_wait_while_the_ingest_is_busy_and_catch_up_after(running: Any) -> None:
    svc, host, clock = running(JobsWhileIngesting=0)
    originals = dict(host.files)
    for instance_id in host.files:
        svc.enqueue(instance_id)  # the clock stands still: the ingest is busy
    # published while the workers wait (one metric after the other: wait for the last of them)
    expected = {"neuronova_htj2k_queue": 4, "neuronova_htj2k_in_flight": 0, "neuronova_htj2k_trailing_ingest": 1}
    wait_until(lambda: all(host.metrics.get(name) == value for name, value in expected.items()))
    stats = svc.stats()
    assert not host.attachments and stats["queued"] == 4 and stats["trailing_ingest"] is True
    assert stats["last_stored_at"] is None
    paused_at = time.time()
    clock.now += 1  # the ingest pauses
    wait_until(lambda: svc.stats()["with_rendition"] == 4)
    stats = svc.stats()
    assert stats["queued"] == 0 and stats["trailing_ingest"] is False and stats["failed"] == 0
    assert paused_at <= stats["last_stored_at"] <= time.time()  # when the last one was stored
    assert set(host.attachments) == set(host.files) and host.files == originals  # originals never written
    for instance_id in host.files:
        rendition = svc.store.rendition(instance_id)
        assert rendition is not None and rendition.data == host.attachments[instance_id]
        offset, _length = rendition.frames[0]
        assert rendition.data[offset:offset + 4] == b"\xff\x4f\xff\x51"  # SOC, SIZ: an HTJ2K codestream


def test_renditions_encoded_during_the_ingest_are_stored_only_after_it(running: Any) -> None:
    svc, host, clock = running(JobsWhileIngesting=1)
    for instance_id in host.files:
        svc.enqueue(instance_id)
    wait_until(lambda: svc.pipeline.held() == 4)  # encoded one at a time, all held
    assert not host.attachments and svc.stats()["queued"] == 4 and svc.stats()["held"] == 4
    clock.now += 1
    wait_until(lambda: svc.stats()["with_rendition"] == 4)
    assert set(host.attachments) == set(host.files) and svc.stats()["held"] == 0


def test_renditions_held_during_the_ingest_are_bounded_in_memory(running: Any) -> None:
    svc, host, clock = running(JobsWhileIngesting=1, HoldMegabytes=0)  # at most one held, then wait
    for instance_id in host.files:
        svc.enqueue(instance_id)
    wait_until(lambda: svc.pipeline.held() == 1)
    time.sleep(0.3)
    assert svc.pipeline.held() == 1 and svc.stats()["queued"] == 4 and not host.attachments
    clock.now += 1
    wait_until(lambda: svc.stats()["with_rendition"] == 4)


def test_the_sop_instance_uid_is_recorded_for_metadata(running: Any) -> None:
    svc, host, clock = running()
    clock.now += 1
    for instance_id in host.files:
        svc.pipeline.submit(instance_id)
    wait_until(lambda: svc.stats()["with_rendition"] == 4)
    uids = [str(pydicom.dcmread(BytesIO(blob)).SOPInstanceUID) for blob in host.files.values()]
    assert svc.with_rendition([*uids, "1.2.3"]) == set(uids)


def test_failures_are_recorded_and_deleted_instances_skipped(running: Any) -> None:
    svc, host, clock = running()
    host.files["broken"] = host.files["id-0"][:2000]  # stored by Orthanc, not encodable
    clock.now += 1
    svc.pipeline.submit("broken")
    svc.pipeline.submit("gone")  # deleted before its turn: nothing to record
    wait_until(lambda: svc.stats()["failed"] + svc.stats()["skipped"] >= 1 and svc.stats()["queued"] == 0)
    rows = svc.store.rows(["broken", "gone"])
    assert set(rows) == {"broken"} and rows["broken"].status in ("failed", "skipped") and rows["broken"].error
    assert "broken" not in host.attachments and host.files["broken"] == host.files["id-0"][:2000]


def test_backfill_encodes_what_has_no_result(running: Any) -> None:
    svc, host, _clock = running(Enabled=False)
    for instance_id in host.files:
        svc.enqueue(instance_id)  # encoding off: ignored
    time.sleep(0.2)
    assert svc.stats()["queued"] == 0 and not host.attachments
    progress = svc.start_backfill()
    wait_until(lambda: svc.backfill.state != "running")
    assert progress.state == "finished" and progress.done == progress.total == 4 and progress.failures == 0
    assert set(host.attachments) == set(host.files)
    again = svc.start_backfill()
    wait_until(lambda: svc.backfill.state != "running")
    assert again.total == 0


def test_settings_refuse_nonsense() -> None:
    for raw in ({"JobsWhileIngesting": -1}, {"IngestQuietMilliseconds": 60001}, {"ProcessNice": 20},
                {"HoldMegabytes": -1}, {"Workers": 2, "JobsWhileIngesting": 3}):
        with pytest.raises(ConfigError):
            htj2k_settings.parse({"Processes": 0, **raw})


def test_a_result_recorded_again_replaces_the_first(tmp_path: Path, files: dict[str, bytes]) -> None:
    svc = service(tmp_path, FakeOrthanc(files), ManualClock())
    try:
        svc.store.record("id-0", "", "failed", error="first try", flush=False)
        assert svc.store.status("id-0") == "failed"  # not written yet, already visible
        svc.store.flush()
        svc.store.record("id-0", "1.2.3", "done", frames=[], flush=True)
        rows = svc.store.rows(["id-0"])
        assert rows["id-0"].status == "done" and rows["id-0"].error == "" and svc.with_rendition(["1.2.3"]) == {"1.2.3"}
    finally:
        svc.stop()


def test_counts_include_results_not_written_yet_without_writing_them(tmp_path: Path, files: dict[str, bytes]) -> None:
    svc = service(tmp_path, FakeOrthanc(files), ManualClock())
    try:
        store = svc.store
        store.record("id-0", "", "failed", error="first try", flush=True)
        store.record("id-1", "1.2.1", "done", original_bytes=100, rendition_bytes=30, flush=True)
        store.record("id-0", "1.2.0", "done", original_bytes=200, rendition_bytes=50, flush=False)  # replaces
        store.record("id-2", "", "skipped", error="by design", flush=False)
        written = text("SELECT instance_id, status FROM htj2k_renditions ORDER BY 1")
        with store._db.engine.connect() as connection:  # what the table holds before the counts
            before = connection.execute(written).all()
        counts = store.counts()
        assert counts.of("done") == (2, 300, 80) and counts.of("failed") == (0, 0, 0) and counts.of("skipped")[0] == 1
        with store._db.engine.connect() as connection:
            assert connection.execute(written).all() == before
        assert [tuple(r) for r in before] == [("id-0", "failed"), ("id-1", "done")]  # not written by counting
        store.flush()
        assert store.counts() == counts  # the same once written
    finally:
        svc.stop()


def test_the_encoder_processes_give_what_the_codec_gives(files: dict[str, bytes]) -> None:
    """The real pool: spawned interpreters, started at once, a job at low priority."""
    settings = htj2k_settings.parse({"Processes": 1, "PythonExecutable": sys.executable, "ProcessNice": 5})
    pool = encoder_pool(settings)
    assert pool is not None
    try:
        original = files["id-0"]
        encoded = pool.run(encode_job, original, 19)
        reference = encode_rendition(original)
        assert encoded.rendition.data == reference.data and encoded.rendition.frames == reference.frames
        assert encoded.sop_uid == str(pydicom.dcmread(BytesIO(original)).SOPInstanceUID) and encoded.seconds > 0
        assert pool.run(os.getpriority, os.PRIO_PROCESS, 0) == 19  # the job's priority stayed with the process
    finally:
        pool.shutdown()


def test_a_job_trailing_the_ingest_runs_under_sched_idle_and_the_next_one_does_not(files: dict[str, bytes]) -> None:
    """While the ingest is busy an encoder runs only on CPU nothing else wants (SCHED_IDLE);
    the next job, after the ingest, is back under the normal policy."""
    settings = htj2k_settings.parse({"Processes": 1, "PythonExecutable": sys.executable, "ProcessNice": 5})
    pool = encoder_pool(settings)
    assert pool is not None
    try:
        pool.run(encode_job, files["id-0"], 19, None, True)
        assert pool.run(os.sched_getscheduler, 0) == os.SCHED_IDLE
        pool.run(encode_job, files["id-0"], 19, None, False)
        assert pool.run(os.sched_getscheduler, 0) == os.SCHED_OTHER
    finally:
        pool.shutdown()


def test_store_counts_reach_the_metrics_without_anyone_asking_for_the_stats(
        running: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus scrapes Orthanc's metrics only: the counts are published on their own."""
    monkeypatch.setattr(htj2k_service, "STORE_METRICS_SECONDS", 0.0)
    svc, host, clock = running(ClaimLeaseSeconds=1.0)  # the sweeper then wakes every 0.33 s
    clock.now += 1  # no ingest: encode at once
    for instance_id in host.files:
        svc.pipeline.submit(instance_id)
    wait_until(lambda: host.metrics.get("neuronova_htj2k_with_rendition") == 4, 20)
    assert host.metrics["neuronova_htj2k_without_rendition"] == 0
