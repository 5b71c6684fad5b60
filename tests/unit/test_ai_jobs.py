"""The durable job store on SQLite: idempotency, claims, leases, outcomes, recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from neuronova.ai.jobs import (
    FAILED,
    MAX_INTERRUPTIONS,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStore,
    NewJob,
    StateError,
    ensure_schema,
)
from neuronova.errors import ConfigError
from neuronova.store import Database, open_database
from tests.support.clock import ManualClock


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    ensure_schema(database)
    return database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture
def store(db: Database, clock: ManualClock) -> JobStore:
    return JobStore(db, clock)


def new(key: str = "stroke_risk:abc", study: str = "1.2.3", model: str = "stroke_risk") -> NewJob:
    return NewJob(study, "1.2.3.4", "P1", model, key, "auto", "mr-stroke-risk", "rule:mr-stroke-risk", 999_999.0)


def test_same_content_and_model_never_make_two_jobs(store: JobStore) -> None:
    job, created = store.create(new())
    again, created_again = store.create(new())
    assert created and not created_again and again.id == job.id
    other, created_other = store.create(new("tumor_detection:abc", model="tumor_detection"))
    assert created_other and other.id != job.id
    assert (job.status, job.attempts, job.trigger) == (QUEUED, 0, "auto")


def test_concurrent_creation_gives_one_job(store: JobStore) -> None:
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def create() -> None:
        job, created = store.create(new("k:concurrent"))
        with lock:
            results.append((job.id, created))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert store.counts()["queued"] == 1


def test_claim_runs_a_job_once_and_outcomes_need_the_lease(store: JobStore, clock: ManualClock) -> None:
    job, _ = store.create(new())
    claimed = store.claim("node-a/1", 60)
    assert claimed is not None and claimed.id == job.id
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == (RUNNING, 1, "node-a/1")
    assert claimed.started_at == clock.now
    assert claimed.to_json(3)["running_on"] == "node-a"  # the NodeName holding the lease
    assert store.claim("node-b/1", 60) is None  # leased
    assert not store.succeed(claimed, "node-b/1", {"x": 1}, 0.1)  # not the owner
    assert store.reschedule(claimed, "node-a/1", "HTTP 500", 30.0, 0.2)
    queued = store.get(job.id)
    assert queued is not None and queued.status == QUEUED and queued.next_attempt_at == clock.now + 30
    assert queued.to_json(3)["running_on"] is None
    assert store.claim("node-a/2", 60) is None  # not due yet
    assert store.next_due() == clock.now + 30
    clock.now += 30
    second = store.claim("node-a/2", 60)
    assert second is not None and second.attempts == 2
    assert store.succeed(second, "node-a/2", {"risk_score": 0.5}, 0.3)
    done = store.get(job.id)
    assert done is not None and done.status == SUCCEEDED and done.result == {"risk_score": 0.5}
    assert done.last_error == "" and done.finished_at == clock.now
    assert [(e.attempt, e.event, e.retry_in) for e in store.history(job.id)] == [(1, "retry", 30.0),
                                                                                 (2, "succeeded", None)]
    as_json = done.to_json(4, store.history(job.id))
    assert as_json["status"] == "succeeded" and as_json["result"] == {"risk_score": 0.5}
    assert as_json["history"][0]["detail"] == "HTTP 500"


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_ignored(store: JobStore, clock: ManualClock) -> None:
    store.create(new())
    first = store.claim("node-a/1", 10)
    assert first is not None
    clock.now += 11  # node-a died: no renewal
    second = store.claim("node-b/1", 10)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert not store.fail(first, "node-a/1", "late answer", 1.0)
    assert store.succeed(second, "node-b/1", {}, 1.0)


def test_renewal_keeps_the_lease(store: JobStore, clock: ManualClock) -> None:
    store.create(new())
    job = store.claim("node-a/1", 10)
    assert job is not None
    clock.now += 8
    store.renew(["node-a/1"], 10)
    clock.now += 8
    assert store.claim("node-b/1", 10) is None


def test_recover_requeues_this_nodes_running_jobs_without_counting_the_attempt(store: JobStore) -> None:
    a, _ = store.create(new("k:a"))
    b, _ = store.create(new("k:b"))
    mine = store.claim("node-a/x", 600)
    theirs = store.claim("node-b/y", 600)
    assert mine is not None and theirs is not None
    assert store.recover("node-a") == 1
    back = store.get(mine.id)
    assert back is not None and back.status == QUEUED and back.attempts == 0 and back.lease_owner == ""
    still = store.get(theirs.id)
    assert still is not None and still.status == RUNNING  # another node's job: its lease decides
    assert [e.event for e in store.history(mine.id)] == ["interrupted"]
    assert {a.id, b.id} == {mine.id, theirs.id}


def test_unclaim_leaves_no_trace(store: JobStore) -> None:
    job, _ = store.create(new())
    claimed = store.claim("node-a/1", 600)
    assert claimed is not None
    assert not store.unclaim(claimed, "node-b/1")
    assert store.unclaim(claimed, "node-a/1")
    back = store.get(job.id)
    assert back is not None and (back.status, back.attempts, back.lease_owner) == (QUEUED, 0, "")
    assert store.history(job.id) == []
    assert not store.release_owner("node-a/1", "stopped")  # nothing leased to it any more


def test_release_owner(store: JobStore) -> None:
    job, _ = store.create(new())
    assert store.claim("node-a/1", 600) is not None
    assert store.release_owner("node-a/1", "Orthanc stopped")
    back = store.get(job.id)
    assert back is not None and back.status == QUEUED
    assert [(e.event, e.detail) for e in store.history(job.id)] == [("interrupted", "Orthanc stopped")]


def test_a_job_interrupted_again_and_again_fails(store: JobStore) -> None:
    job, _ = store.create(new())
    for n in range(MAX_INTERRUPTIONS):
        claimed = store.claim(f"node-a/{n}", 600)
        assert claimed is not None
        assert store.release(job.id, f"node-a/{n}", "Orthanc stopped")
    final = store.get(job.id)
    assert final is not None and final.status == FAILED
    assert final.last_error.startswith(f"interrupted {MAX_INTERRUPTIONS} times")


def test_retry_only_failed_jobs(store: JobStore) -> None:
    job, _ = store.create(new())
    with pytest.raises(StateError):
        store.retry(job.id, "admin")
    with pytest.raises(KeyError):
        store.retry("f" * 32, "admin")
    claimed = store.claim("n/1", 60)
    assert claimed is not None and store.fail(claimed, "n/1", "HTTP 422", 0.1)
    again = store.retry(job.id, "dr.house")
    assert (again.status, again.attempts, again.finished_at) == (QUEUED, 0, None)
    assert store.history(job.id)[-1].detail == "retry requested by dr.house"


def test_find_filters_and_visibility(store: JobStore, clock: ManualClock) -> None:
    for i, (study, model) in enumerate([("1.1", "stroke_risk"), ("1.1", "tumor_detection"), ("2.2", "stroke_risk")]):
        clock.now += 1
        store.create(new(f"k{i}", study, model))
    assert [j.study_uid for j in store.find()] == ["2.2", "1.1", "1.1"]  # newest first
    assert len(store.find(study="1.1")) == 2
    assert len(store.find(model="stroke_risk")) == 2
    assert store.find(studies=frozenset()) == []
    assert {j.study_uid for j in store.find(studies=frozenset({"2.2", "9.9"}))} == {"2.2"}
    assert len(store.find(limit=1, offset=2)) == 1
    job = store.claim("n/1", 60)
    assert job is not None
    assert [j.id for j in store.find(status=RUNNING)] == [job.id]
    assert store.counts() == {"queued": 2, "running": 1, "succeeded": 0, "failed": 0, "attempts": 1}


def test_pending_studies(store: JobStore, clock: ManualClock) -> None:
    store.add_pending(["a", "b", "a"])
    clock.now += 100
    store.add_pending(["c", "a"])
    assert store.pending() == ["a", "b", "c"]
    assert store.pending(seen_before=clock.now) == ["a", "b"]  # "a" keeps its first sighting
    store.remove_pending("a")
    assert store.pending() == ["b", "c"]


def test_arrivals_keep_each_node_s_newest_and_forget_only_what_was_covered(store: JobStore) -> None:
    assert store.last_arrival("st-1") is None
    store.record_arrivals("node-a", {"st-1": 100.0, "st-2": 50.0})
    store.record_arrivals("node-b", {"st-1": 105.0})
    store.record_arrivals("node-a", {"st-1": 90.0})  # an older time never moves a node's newest back
    assert (store.last_arrival("st-1"), store.last_arrival("st-2")) == (105.0, 50.0)
    store.record_arrivals("node-a", {"st-1": 110.0})
    assert store.last_arrival("st-1") == 110.0
    store.forget_arrivals("st-1", up_to=105.0)  # node-b's row was covered; node-a's is newer
    assert store.last_arrival("st-1") == 110.0
    store.forget_arrivals("st-1", up_to=110.0)
    assert store.last_arrival("st-1") is None and store.last_arrival("st-2") == 50.0


def _draft_table(db: Database, rows: int) -> None:
    draft = Table("ai_jobs", MetaData(), Column("id", String(64), primary_key=True), Column("n", Integer))
    draft.create(db.engine)
    with db.engine.begin() as connection:
        for i in range(rows):
            connection.execute(insert(draft).values(id=str(i), n=i))


def test_an_empty_older_draft_table_is_replaced(tmp_path: Path) -> None:
    # open_database creates the current tables; simulate a store made by an older draft
    database = open_database(f"sqlite:///{tmp_path}/old.sqlite")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE ai_jobs")
    _draft_table(database, 0)
    ensure_schema(database)
    JobStore(database).create(new())


def test_a_non_empty_foreign_table_is_refused(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path}/old.sqlite")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE ai_jobs")
    _draft_table(database, 2)
    with pytest.raises(ConfigError, match="2 rows"):
        ensure_schema(database)
