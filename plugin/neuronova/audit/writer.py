"""The audit writer: a bounded queue and one thread that inserts events in batches.

Events go through a bounded queue to one writer thread that inserts them in batches, and
that purges old events (``NeuroNova.Audit``: by age and by count) in the background.

Nothing is dropped silently and no request thread waits long:

- a write that fails is retried until it succeeds (backing off to 5 s); meanwhile
  :meth:`AuditWriter.problem` says why, and, with ``FailClosed`` (the default), the gate
  denies every access it would have to record (docs/security.md);
- when the queue is full, ``record`` waits at most ``EnqueueWaitSeconds`` and returns False;
  the event is counted, logged, reported by /neuronova/health and summed up in an event of
  its own once the store takes writes again. With ``FailClosed`` an allowed access whose
  event could not be queued is denied, so only denials are ever summed up this way.

``close()`` flushes what is queued; it runs when Orthanc stops.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert

from ..store import Database
from ..store.schema import audit_events
from . import retention
from .events import AuditEvent
from .settings import DEFAULT_AUDIT, AuditSettings

_STOP = object()
_FLUSH = object()  # put by flush(): the writer stops gathering and writes what it holds
# How long the writer gathers events for one transaction. Each transaction costs ~0.6 ms of
# the writer's thread (pool ping, BEGIN, INSERT, COMMIT) whatever its size: at 50 ms an
# ingest of ~170 instances/s (one event each) made batches of ~8, 0.1 ms an event, on the
# GIL the request threads need; at 250 ms, batches of ~40, 0.025 ms an event. flush() does
# not wait for the window (it ends it).
GATHER_SECONDS = 0.25


class AuditWriter:
    """``mirror``, when given, also receives every written event (on the writer thread, never
    on a request's): the App hands them to Orthanc's own audit log. ``node`` is written into
    every event that does not name its node (one trail for the cluster)."""

    def __init__(self, db: Database, capacity: int | None = None, batch: int = 500, on_error: Any = None,
                 gather_seconds: float = GATHER_SECONDS, mirror: Callable[[AuditEvent], None] | None = None,
                 settings: AuditSettings = DEFAULT_AUDIT, clock: Callable[[], float] = time.time,
                 node: str = "") -> None:
        self._db = db
        self.node = node
        self.settings = settings
        self._mirror = mirror
        self.mirror_failures = 0
        self._gather_seconds = gather_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity or settings.capacity)
        self._batch = batch
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._closing = False
        self._give_up_at = 0.0
        self.written = 0
        self.failures = 0  # failed write attempts (each retried)
        self.lost = 0  # events given up at shutdown because the store never took them
        self.dropped = 0  # events that found the queue full (summed up in an event when possible)
        self._dropped_unreported = 0
        self.purged = 0
        self.last_error = ""  # why the store cannot be written right now ("" when it can)
        self._next_purge = clock() + min(60.0, settings.purge_interval_seconds)
        # daemon: a non-daemon thread makes Orthanc hang at shutdown; close() flushes instead.
        self._thread = threading.Thread(target=self._run, name="neuronova-audit", daemon=True)
        self._thread.start()

    def record(self, event: AuditEvent) -> bool:
        """Queue ``event``; False when the queue stayed full for ``EnqueueWaitSeconds`` (the
        event is then counted and reported, see the module's doc)."""
        try:
            self._queue.put(event, timeout=self.settings.enqueue_wait_seconds)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._dropped_unreported += 1
                first = self._dropped_unreported == 1
            if first:
                self._report("audit queue full: events are being counted instead of written "
                             "(see /neuronova/health)")
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def problem(self) -> str:
        """Why the audit trail is not being kept right now ("" when it is)."""
        if self.last_error:
            return f"the audit store cannot be written: {self.last_error}"
        if self._dropped_unreported:
            return f"the audit queue is full: {self._dropped_unreported} event(s) not yet written"
        return ""

    @property
    def fail_closed(self) -> bool:
        return self.settings.fail_closed

    def health(self) -> dict[str, Any]:
        return {"written": self.written, "pending": self.pending(), "failed_attempts": self.failures,
                "dropped": self.dropped, "lost": self.lost, "purged": self.purged,
                "status": "failing" if self.problem() else "ok", "problem": self.problem(),
                "fail_closed": self.fail_closed}

    def _report(self, message: str) -> None:
        if self._on_error:
            self._on_error(message)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=max(0.05, self._next_purge - self._clock()))
            except queue.Empty:
                self._purge_if_due()
                continue
            items = [first]
            # Gather for a short while: one transaction per many events keeps the writer's
            # share of the GIL (which the request threads need) small under load.
            deadline = time.monotonic() + self._gather_seconds
            while len(items) < self._batch and first is not _STOP and first is not _FLUSH:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                if item is _STOP or item is _FLUSH:
                    break
            events = [e for e in items if isinstance(e, AuditEvent)]
            stopping = any(e is _STOP for e in items)
            if events:
                self._write(events)
            self._write_drop_summary()
            for _ in items:
                self._queue.task_done()
            self._purge_if_due()

    def _write(self, events: list[AuditEvent]) -> None:
        """Insert until it works: the store's outage shows in problem(); only a shutdown that
        cannot wait longer gives up, and says how many events it lost."""
        rows = [{**e.as_row(), "node": e.node or self.node} for e in events]
        delay = 0.1
        while True:
            try:
                with self._db.engine.begin() as connection:
                    connection.execute(insert(audit_events), rows)
            except Exception as exc:  # noqa: BLE001 - retried; the outage is reported
                self.failures += 1
                message = f"{type(exc).__name__}: {str(exc)[:300]}"
                if not self.last_error:
                    self._report(f"audit write failed, retrying (study access is "
                                 f"{'denied' if self.fail_closed else 'still allowed'} meanwhile): {message}")
                self.last_error = message
                if self._closing:
                    # Orthanc is stopping: 10 s more for the store, then the rest is counted lost.
                    self._give_up_at = self._give_up_at or time.monotonic() + 10
                    if time.monotonic() > self._give_up_at:
                        self.lost += len(rows)
                        self._report(f"audit store still failing at shutdown: {len(rows)} events lost")
                        return
                time.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if self.last_error:
                self._report("audit writes work again")
            self.last_error = ""
            self.written += len(rows)
            self._mirror_all(events)
            return

    def _write_drop_summary(self) -> None:
        with self._lock:
            count, self._dropped_unreported = self._dropped_unreported, 0
        if not count:
            return
        now = self._clock()
        # An event in place of those the full queue could not take (a denial flood, or a slow
        # store): how many, in the same table, as a security alert.
        self._write([AuditEvent(now, "", "", "", "-", "audit", "", "", "deny",
                                f"{count} audit event(s) not recorded: the audit queue was full", "110113")])

    def _purge_if_due(self) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + self.settings.purge_interval_seconds
        try:
            if not self.purge(now):
                self._next_purge = now + 1.0  # more to do: go on soon, a pass at a time
        except Exception as exc:  # noqa: BLE001 - retried at the next interval
            self._report(f"audit purge failed: {exc!r}")

    def purge(self, now: float | None = None) -> bool:
        """Delete events older than ``RetentionDays`` and the oldest beyond ``MaxEvents``, a
        bounded number of chunks at a time (retention.py); True when nothing is left to purge."""
        purged, done = retention.purge(self._db, self.settings, self._clock() if now is None else now)
        self.purged += purged
        return done

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
        """Wait until the queued events are written (at once: the gathering window ends)."""
        if not self._closing:
            try:
                self._queue.put(_FLUSH, timeout=self.settings.enqueue_wait_seconds)
            except queue.Full:
                pass  # a full queue is written in full batches anyway
        # queue.join(), except that a writer that has stopped (Orthanc stopping meanwhile) no
        # longer makes it wait forever for what nobody will take.
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks and self._thread.is_alive():
                done.wait(0.5)

    def close(self) -> None:
        self._closing = True
        try:
            self._queue.put(_STOP, timeout=30)
        except queue.Full:
            pass
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            self._report(f"audit writer still busy at shutdown: {self.pending()} queued events not written")

