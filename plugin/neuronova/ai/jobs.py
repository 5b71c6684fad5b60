"""Durable AI jobs in the plugin store (SQLite or PostgreSQL, SQLAlchemy Core).

Life of a job: ``queued`` -> ``running`` (claimed by a worker, with a lease) -> ``succeeded``
or ``failed``; a transient failure puts it back to ``queued`` with ``next_attempt_at`` in the
future. Every change of state is one conditional UPDATE (``WHERE status = ... AND
lease_owner = ...``), so two workers, or two Orthanc nodes sharing a PostgreSQL store,
can never both run or both finish one job.

Leases: the worker running a job holds ``lease_owner = "<node>/<token>"`` and renews
``lease_until`` while it works. A job whose lease ran out (its node died) is claimed again by
anyone; a job of this node left ``running`` when Orthanc stopped is re-queued at start-up
(:meth:`JobStore.recover`), without waiting for the lease.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, insert, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..audit import iso_utc
from ..errors import ConfigError
from ..store import Database
from ..store.schema import ai_arrivals, ai_job_events, ai_jobs, ai_pending

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
AUTO, MANUAL = "auto", "manual"
#: A job interrupted this many times (Orthanc stopped or died while running it) fails, so a
#: job that kills Orthanc cannot keep it in a restart loop.
MAX_INTERRUPTIONS = 3
_CLAIM_BATCH = 8


@dataclass(frozen=True)
class NewJob:
    study_uid: str
    series_uid: str
    patient_id: str
    model: str
    content_key: str
    trigger: str
    rule: str
    created_by: str
    triggered_at: float


@dataclass(frozen=True)
class Event:
    time: float
    attempt: int
    event: str
    duration: float | None
    retry_in: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": iso_utc(self.time), "attempt": self.attempt, "event": self.event}
        if self.duration is not None:
            out["duration_seconds"] = round(self.duration, 3)
        if self.retry_in is not None:
            out["retry_in_seconds"] = round(self.retry_in, 3)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Job:
    id: str
    study_uid: str
    series_uid: str
    patient_id: str
    model: str
    content_key: str
    trigger: str
    rule: str
    created_by: str
    status: str
    attempts: int
    triggered_at: float
    created_at: float
    updated_at: float
    next_attempt_at: float
    started_at: float | None
    finished_at: float | None
    lease_owner: str
    lease_until: float
    last_error: str
    result: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        values = dict(row)
        text = values.pop("result") or "{}"
        try:
            result = json.loads(text)
        except ValueError:
            result = {"unreadable": text[:200]}
        return cls(**values, result=result if isinstance(result, dict) else {"value": result})

    def to_json(self, max_attempts: int, history: Iterable[Event] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "study": self.study_uid,
            "series": self.series_uid,
            "model": self.model,
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": max_attempts,
            "trigger": self.trigger,
            "rule": self.rule,
            "created_by": self.created_by,
            "triggered_at": iso_utc(self.triggered_at),
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
            "started_at": iso_utc(self.started_at) if self.started_at is not None else None,
            "finished_at": iso_utc(self.finished_at) if self.finished_at is not None else None,
            "next_attempt_at": iso_utc(self.next_attempt_at) if self.status == QUEUED else None,
            "last_error": self.last_error,
            "result": dict(self.result) if self.status == SUCCEEDED else None,
            # the NodeName holding the lease (several nodes on one store), while running
            "running_on": self.lease_owner.split("/", 1)[0] if self.status == RUNNING else None,
        }
        if history is not None:
            out["history"] = [e.to_json() for e in history]
        return out


def ensure_schema(db: Database) -> None:
    """Create the AI tables; replace an older, empty draft of ``ai_jobs`` (refuse a non-empty one)."""
    inspector = inspect(db.engine)
    if inspector.has_table(ai_jobs.name):
        present = {c["name"] for c in inspector.get_columns(ai_jobs.name)}
        wanted = {c.name for c in ai_jobs.columns}
        if present != wanted:
            with db.engine.begin() as connection:
                count = connection.execute(select(func.count()).select_from(ai_jobs)).scalar_one()
                if count:
                    raise ConfigError(
                        f"the store's ai_jobs table has another layout ({count} rows); migrate it or move it away"
                    )
                ai_jobs.drop(connection)
    for table in (ai_jobs, ai_job_events, ai_pending, ai_arrivals):
        table.create(db.engine, checkfirst=True)


class StateError(Exception):
    """The job is not in a state that allows the operation (the API answers 409)."""


class JobStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    # -- creation and reading ----------------------------------------------------------

    def create(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a queued job, or return the one that already has this content key."""
        now = self._clock()
        row = {
            **new.__dict__, "id": uuid.uuid4().hex, "status": QUEUED, "attempts": 0, "created_at": now,
            "updated_at": now, "next_attempt_at": now, "started_at": None, "finished_at": None, "lease_owner": "",
            "lease_until": 0.0, "last_error": "", "result": "{}",
        }
        try:
            with self._db.engine.begin() as connection:
                connection.execute(insert(ai_jobs).values(**row))
        except IntegrityError:
            existing = self.find_by_key(new.content_key)
            if existing is None:  # deleted in between: extremely unlikely; try once more
                return self.create(new)
            return existing, False
        job = self.get(str(row["id"]))
        assert job is not None
        return job, True

    def get(self, job_id: str) -> Job | None:
        with self._db.engine.connect() as connection:
            row = connection.execute(select(ai_jobs).where(ai_jobs.c.id == job_id)).mappings().first()
        return Job.from_row(row) if row else None

    def find_by_key(self, key: str) -> Job | None:
        with self._db.engine.connect() as connection:
            row = connection.execute(select(ai_jobs).where(ai_jobs.c.content_key == key)).mappings().first()
        return Job.from_row(row) if row else None

    def history(self, job_id: str) -> list[Event]:
        statement = select(ai_job_events).where(ai_job_events.c.job_id == job_id).order_by(ai_job_events.c.id)
        with self._db.engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [Event(r["time"], r["attempt"], r["event"], r["duration"], r["retry_in"], r["detail"]) for r in rows]

    def find(self, *, study: str = "", status: str = "", model: str = "", studies: frozenset[str] | None = None,
             limit: int = 100, offset: int = 0) -> list[Job]:
        """Newest first. ``studies`` (None: all) restricts to the studies a caller may see."""
        statement = select(ai_jobs).order_by(ai_jobs.c.created_at.desc(), ai_jobs.c.id)
        if studies is not None:
            if not studies:
                return []
            statement = statement.where(ai_jobs.c.study_uid.in_(sorted(studies)))
        if study:
            statement = statement.where(ai_jobs.c.study_uid == study)
        if status:
            statement = statement.where(ai_jobs.c.status == status)
        if model:
            statement = statement.where(ai_jobs.c.model == model)
        with self._db.engine.connect() as connection:
            rows = connection.execute(statement.limit(limit).offset(offset)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status, and ``attempts``: the sum of attempts over all jobs."""
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(ai_jobs.c.status, func.count(), func.coalesce(func.sum(ai_jobs.c.attempts), 0))
                .group_by(ai_jobs.c.status)
            ).all()
        out = dict.fromkeys(STATUSES, 0)
        out["attempts"] = 0
        for status, count, attempts in rows:
            out[str(status)] = int(count)
            out["attempts"] += int(attempts)
        return out

    def next_due(self) -> float | None:
        """When the next queued job becomes due (None: nothing queued)."""
        with self._db.engine.connect() as connection:
            value = connection.execute(
                select(func.min(ai_jobs.c.next_attempt_at)).where(ai_jobs.c.status == QUEUED)
            ).scalar_one_or_none()
        return None if value is None else float(value)

    # -- running -----------------------------------------------------------------------

    def _claimable(self, now: float) -> Any:
        return or_(
            and_(ai_jobs.c.status == QUEUED, ai_jobs.c.next_attempt_at <= now),
            and_(ai_jobs.c.status == RUNNING, ai_jobs.c.lease_until < now),
        )

    def claim(self, owner: str, lease_seconds: float) -> Job | None:
        """Take the most overdue claimable job: attempts + 1, status running, leased to ``owner``."""
        now = self._clock()
        with self._db.engine.connect() as connection:
            ids = connection.execute(
                select(ai_jobs.c.id).where(self._claimable(now)).order_by(ai_jobs.c.next_attempt_at).limit(_CLAIM_BATCH)
            ).scalars().all()
        for job_id in ids:
            # One conditional UPDATE per candidate: whoever changes the row first owns it.
            with self._db.engine.begin() as connection:
                taken = connection.execute(
                    update(ai_jobs).where(ai_jobs.c.id == job_id, self._claimable(now)).values(
                        status=RUNNING, attempts=ai_jobs.c.attempts + 1, lease_owner=owner,
                        lease_until=now + lease_seconds, updated_at=now,
                        started_at=func.coalesce(ai_jobs.c.started_at, now),
                    )
                ).rowcount
            if taken == 1:
                return self.get(job_id)
        return None

    def renew(self, owners: Iterable[str], lease_seconds: float) -> None:
        owners = list(owners)
        if not owners:
            return
        with self._db.engine.begin() as connection:
            connection.execute(
                update(ai_jobs).where(ai_jobs.c.status == RUNNING, ai_jobs.c.lease_owner.in_(owners))
                .values(lease_until=self._clock() + lease_seconds)
            )

    def _finish(self, job_id: str, owner: str, values: Mapping[str, Any], event: Event) -> bool:
        with self._db.engine.begin() as connection:
            changed = connection.execute(
                update(ai_jobs).where(ai_jobs.c.id == job_id, ai_jobs.c.status == RUNNING,
                                      ai_jobs.c.lease_owner == owner)
                .values(**values, lease_owner="", lease_until=0.0, updated_at=self._clock())
            ).rowcount
            if changed == 1:
                connection.execute(insert(ai_job_events).values(job_id=job_id, **event.__dict__))
        return changed == 1

    def succeed(self, job: Job, owner: str, result: Mapping[str, Any], duration: float) -> bool:
        now = self._clock()
        return self._finish(job.id, owner, {
            "status": SUCCEEDED, "finished_at": now, "last_error": "", "result": json.dumps(result),
        }, Event(now, job.attempts, SUCCEEDED, duration, None, ""))

    def reschedule(self, job: Job, owner: str, error: str, delay: float, duration: float) -> bool:
        now = self._clock()
        return self._finish(job.id, owner, {
            "status": QUEUED, "next_attempt_at": now + delay, "last_error": error,
        }, Event(now, job.attempts, "retry", duration, delay, error))

    def fail(self, job: Job, owner: str, error: str, duration: float | None) -> bool:
        now = self._clock()
        return self._finish(job.id, owner, {
            "status": FAILED, "finished_at": now, "last_error": error,
        }, Event(now, job.attempts, FAILED, duration, None, error))

    def release(self, job_id: str, owner: str, reason: str) -> bool:
        """Put a running job back in the queue after an interruption (Orthanc stopping or
        dead): the interrupted attempt is not held against the job, up to MAX_INTERRUPTIONS."""
        now = self._clock()
        with self._db.engine.connect() as connection:
            interruptions = connection.execute(
                select(func.count()).select_from(ai_job_events)
                .where(ai_job_events.c.job_id == job_id, ai_job_events.c.event == "interrupted")
            ).scalar_one()
            attempt = connection.execute(select(ai_jobs.c.attempts).where(ai_jobs.c.id == job_id)).scalar_one_or_none()
        if attempt is None:
            return False
        if interruptions + 1 >= MAX_INTERRUPTIONS:
            values: dict[str, Any] = {"status": FAILED, "finished_at": now,
                                      "last_error": f"interrupted {interruptions + 1} times: {reason}"}
        else:
            # Only the lease holder writes a running job, so read-then-write is safe here.
            values = {"status": QUEUED, "next_attempt_at": now, "attempts": max(int(attempt) - 1, 0)}
        return self._finish(job_id, owner, values, Event(now, int(attempt), "interrupted", None, None, reason))

    def unclaim(self, job: Job, owner: str) -> bool:
        """Undo a claim whose attempt never started (Orthanc began stopping): back to the
        queue as it was, no event, no attempt counted."""
        with self._db.engine.begin() as connection:
            changed = connection.execute(
                update(ai_jobs).where(ai_jobs.c.id == job.id, ai_jobs.c.status == RUNNING,
                                      ai_jobs.c.lease_owner == owner)
                .values(status=QUEUED, attempts=max(job.attempts - 1, 0), lease_owner="", lease_until=0.0,
                        updated_at=self._clock())
            ).rowcount
        return changed == 1

    def release_owner(self, owner: str, reason: str) -> bool:
        """:meth:`release` the running job leased to ``owner``, if there is one."""
        with self._db.engine.connect() as connection:
            job_id = connection.execute(
                select(ai_jobs.c.id).where(ai_jobs.c.status == RUNNING, ai_jobs.c.lease_owner == owner)
            ).scalar_one_or_none()
        return job_id is not None and self.release(str(job_id), owner, reason)

    def recover(self, node: str) -> int:
        """Re-queue the jobs this node left running (Orthanc stopped or crashed mid-job)."""
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(ai_jobs.c.id, ai_jobs.c.lease_owner)
                .where(ai_jobs.c.status == RUNNING, ai_jobs.c.lease_owner.like(f"{node}/%"))
            ).all()
        return sum(self.release(row.id, row.lease_owner, "Orthanc stopped during the attempt") for row in rows)

    def retry(self, job_id: str, by: str) -> Job:
        """A failed job back to the queue with a fresh retry budget (an explicit request)."""
        now = self._clock()
        with self._db.engine.begin() as connection:
            changed = connection.execute(
                update(ai_jobs).where(ai_jobs.c.id == job_id, ai_jobs.c.status == FAILED).values(
                    status=QUEUED, attempts=0, next_attempt_at=now, finished_at=None, updated_at=now,
                )
            ).rowcount
            if changed == 1:
                connection.execute(insert(ai_job_events).values(
                    job_id=job_id, time=now, attempt=0, event="requeued", duration=None, retry_in=None,
                    detail=f"retry requested by {by}",
                ))
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if changed != 1:
            raise StateError(f"only failed jobs can be retried; this one is {job.status}")
        return job

    # -- studies seen but not yet evaluated ------------------------------------------------

    def add_pending(self, study_ids: Iterable[str]) -> None:
        now = self._clock()
        for study_id in study_ids:
            try:
                with self._db.engine.begin() as connection:
                    if connection.execute(
                        select(ai_pending.c.study_id).where(ai_pending.c.study_id == study_id)
                    ).first() is None:
                        connection.execute(insert(ai_pending).values(study_id=study_id, seen_at=now))
            except IntegrityError:
                pass  # recorded by another thread or node in between

    def remove_pending(self, study_id: str) -> None:
        with self._db.engine.begin() as connection:
            connection.execute(delete(ai_pending).where(ai_pending.c.study_id == study_id))

    def pending(self, seen_before: float | None = None) -> list[str]:
        statement = select(ai_pending.c.study_id).order_by(ai_pending.c.seen_at)
        if seen_before is not None:
            statement = statement.where(ai_pending.c.seen_at < seen_before)
        with self._db.engine.connect() as connection:
            return [str(v) for v in connection.execute(statement).scalars()]

    # -- instance arrivals per node (stability across the cluster) ------------------------

    def record_arrivals(self, node: str, arrivals: Mapping[str, float]) -> None:
        """``node`` stored instances of these studies (Orthanc ids) at these times. Only the
        node itself writes its rows (from its one intake thread), so update-else-insert is safe."""
        for study_id, at in arrivals.items():
            with self._db.engine.begin() as connection:
                changed = connection.execute(
                    update(ai_arrivals).where(ai_arrivals.c.study_id == study_id, ai_arrivals.c.node == node)
                    .values(last_arrival=func.greatest(ai_arrivals.c.last_arrival, at)
                            if self._db.engine.dialect.name != "sqlite" else func.max(ai_arrivals.c.last_arrival, at))
                ).rowcount
                if changed == 0:
                    connection.execute(insert(ai_arrivals).values(study_id=study_id, node=node, last_arrival=at))

    def last_arrival(self, study_id: str) -> float | None:
        """When any node last stored an instance of the study (None: no arrival recorded)."""
        with self._db.engine.connect() as connection:
            value = connection.execute(
                select(func.max(ai_arrivals.c.last_arrival)).where(ai_arrivals.c.study_id == study_id)
            ).scalar_one_or_none()
        return None if value is None else float(value)

    def forget_arrivals(self, study_id: str, up_to: float) -> None:
        """Drop the arrivals an evaluation has covered (a later one stays: it is new content)."""
        with self._db.engine.begin() as connection:
            connection.execute(delete(ai_arrivals).where(ai_arrivals.c.study_id == study_id,
                                                         ai_arrivals.c.last_arrival <= up_to))
