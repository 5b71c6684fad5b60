"""Audit trail: one event per decision on a study and per denial anywhere.

Events go through a bounded queue to one writer thread that inserts them in batches. When
the queue is full, callers wait (``put`` blocks): the audit slows requests down rather than
dropping an event. ``close()`` flushes what is queued; it runs when Orthanc stops.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from .store import Database
from .store.schema import audit_events

ALLOW, DENY = "allow", "deny"


@dataclass(frozen=True)
class AuditEvent:
    time: float
    user: str
    role: str
    ip: str
    method: str
    route: str
    uri: str
    study_uid: str
    decision: str
    reason: str
    event_type: str

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["time"] = iso_utc(self.time)
        return row


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Accept epoch seconds or ISO 8601 (``Z`` or offset; naive means UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


_STOP = object()


class AuditWriter:
    """``mirror``, when given, also receives every written event (on the writer thread, never
    on a request's): the App hands them to Orthanc's own audit log."""

    def __init__(self, db: Database, capacity: int = 10000, batch: int = 500, on_error: Any = None,
                 gather_seconds: float = 0.05, mirror: Callable[[AuditEvent], None] | None = None) -> None:
        self._db = db
        self._mirror = mirror
        self.mirror_failures = 0
        self._gather_seconds = gather_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._on_error = on_error
        self.written = 0
        self.failures = 0
        # daemon: a non-daemon thread makes Orthanc hang at shutdown; close() flushes instead.
        self._thread = threading.Thread(target=self._run, name="neuronova-audit", daemon=True)
        self._thread.start()

    def record(self, event: AuditEvent) -> None:
        self._queue.put(event)  # blocks when full: never drop an audit event

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            items = [first]
            # Gather for a short while: one transaction per many events keeps the writer's
            # share of the GIL (which the request threads need) small under load.
            deadline = time.monotonic() + self._gather_seconds
            while len(items) < self._batch and first is not _STOP:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                if item is _STOP:
                    break
            events = [e for e in items if isinstance(e, AuditEvent)]
            stopping = any(e is _STOP for e in items)
            if events:
                self._write(events)
            for _ in items:
                self._queue.task_done()

    def _write(self, events: list[AuditEvent]) -> None:
        rows = [asdict(e) for e in events]
        for attempt in range(5):
            try:
                with self._db.engine.begin() as connection:
                    connection.execute(insert(audit_events), rows)
                self.written += len(rows)
                self._mirror_all(events)
                return
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                if attempt == 4:
                    self.failures += len(rows)
                    if self._on_error:
                        self._on_error(f"audit write failed, {len(rows)} events lost: {exc}")
                    return
                time.sleep(0.1 * 2**attempt)

    def _mirror_all(self, events: list[AuditEvent]) -> None:
        if self._mirror is None:
            return
        for event in events:
            try:
                self._mirror(event)
            except Exception as exc:  # noqa: BLE001 - the plugin store has the event already
                self.mirror_failures += 1
                if self.mirror_failures == 1 and self._on_error:
                    self._on_error(f"audit events cannot be copied to Orthanc's audit log: {exc!r}")

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)


def query(db: Database, *, user: str = "", study: str = "", decision: str = "", since: float | None = None,
          until: float | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    statement = select(audit_events).order_by(audit_events.c.id)
    if user:
        statement = statement.where(audit_events.c.user == user)
    if study:
        statement = statement.where(audit_events.c.study_uid == study)
    if decision:
        statement = statement.where(audit_events.c.decision == decision)
    if since is not None:
        statement = statement.where(audit_events.c.time >= since)
    if until is not None:
        statement = statement.where(audit_events.c.time < until)
    statement = statement.limit(limit).offset(offset)
    with db.engine.connect() as connection:
        rows = connection.execute(statement).mappings().all()
    return [{**AuditEvent(**{k: v for k, v in row.items() if k != "id"}).as_json(), "id": row["id"]} for row in rows]


def as_json_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, separators=(",", ":")) + "\n"
