"""Shared version counters: how each node learns, within a poll, that plugin state changed.

The gate answers from in-memory copies of the grants, the revoked share links and the ended
sessions (a dictionary look-up per request). With several Orthanc nodes on one store, a change
made through one node must reach the copies of all others: every change bumps its kind's
counter in ``state_versions`` inside the same transaction (:func:`bump`), and each node's
:class:`VersionWatch` reads that small table every ``interval`` seconds on one background
thread (a primary-key scan of a few rows) and reloads the kinds whose counter moved.

Why counters and not a change log with an autoincrement id: concurrent transactions commit
out of id order, so a reader could pass an id whose row is not yet visible and never see it.
An ``UPDATE ... SET version = version + 1`` holds the row's lock until commit: the counter
only moves forward in commit order, on SQLite, PostgreSQL and MariaDB alike. Why not
PostgreSQL's LISTEN/NOTIFY: it needs a dedicated connection per node and exists on one
back end only; a poll of 4 rows every 0.25 s costs nothing measurable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from .schema import state_versions

GRANTS, SHARES, SESSIONS = "grants", "shares", "sessions"
# Studies a node recorded in, or removed from, the search order table (gate/study_ids.py): the
# other nodes then look again for the permitted studies they had not found, or re-read the
# identifiers they remember (a study deleted through another node must leave their order).
STUDY_ARRIVALS, STUDY_DELETIONS = "study_arrivals", "study_deletions"
KINDS = (GRANTS, SHARES, SESSIONS, STUDY_ARRIVALS, STUDY_DELETIONS)
POLL_SECONDS = 0.25  # a change made on another node is seen within this (plus one reload)


def ensure_rows(engine: Engine) -> None:
    """Create the missing counters (at start-up; nodes starting together may race: fine)."""
    with engine.connect() as connection:
        present = {row.name for row in connection.execute(select(state_versions.c.name))}
    for name in KINDS:
        if name in present:
            continue
        try:
            with engine.begin() as connection:
                connection.execute(insert(state_versions).values(name=name, version=0))
        except IntegrityError:
            pass  # another node created it first


def bump(connection: Connection, name: str) -> int:
    """Count one change of ``name``, in the caller's transaction (committed with the change);
    the counter's new value (this transaction holds the row until it commits, so no other
    change gets the same value or commits a later one first)."""
    connection.execute(update(state_versions).where(state_versions.c.name == name)
                       .values(version=state_versions.c.version + 1))
    return int(connection.execute(select(state_versions.c.version).where(state_versions.c.name == name)).scalar_one())


Reload = Callable[[int | None, int], None]  # (the version this copy is at, or None; the store's)


class VersionWatch:
    """Polls the counters and calls each kind's reload when its counter moves, with the
    version last seen (None at first: load everything) and the current one.

    A reload that fails is retried at the next poll (the counter is not marked as seen).
    ``problem()`` says when the counters could not be read for a while: this node may then
    be enforcing stale grants or revocations (reported by /neuronova/health).
    """

    def __init__(self, engine: Engine, interval: float = POLL_SECONDS,
                 on_error: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._interval = interval
        self._on_error = on_error
        self._clock = clock
        self._reloads: dict[str, list[Reload]] = {}
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.reloads = 0
        self.last_error = ""
        self._last_success = clock()

    def watch(self, name: str, reload: Reload) -> None:
        self._reloads.setdefault(name, []).append(reload)

    def _read(self) -> dict[str, int]:
        with self._engine.connect() as connection:
            return {row.name: int(row.version) for row in connection.execute(select(state_versions))}

    def poll(self) -> None:
        """One check: reload every kind whose counter moved since the last successful reload."""
        try:
            current = self._read()
        except Exception as exc:  # noqa: BLE001 - the store may be away for a while: retried
            self._failed(f"state versions unreadable: {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.polls += 1
        failed = False
        for name, version in current.items():
            seen = self._seen.get(name)
            if seen == version:
                continue
            try:
                for reload in self._reloads.get(name, ()):
                    reload(seen, version)
            except Exception as exc:  # noqa: BLE001 - retried at the next poll
                failed = True
                self._failed(f"reload of {name} failed: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            self._seen[name] = version
            self.reloads += 1
        if not failed:
            if self.last_error and self._on_error:
                self._on_error("shared plugin state is read again")
            self.last_error = ""
            self._last_success = self._clock()

    def _failed(self, message: str) -> None:
        if not self.last_error and self._on_error:
            self._on_error(message)
        self.last_error = message

    def problem(self, stale_after: float = 5.0) -> str:
        """Why this node's copy of the shared state may be stale ("" when it is current)."""
        if self.last_error and self._clock() - self._last_success > stale_after:
            age = self._clock() - self._last_success
            return f"shared plugin state not refreshed for {age:.0f} s: {self.last_error}"
        return ""

    def health(self) -> dict[str, object]:
        return {"polls": self.polls, "reloads": self.reloads, "interval_seconds": self._interval,
                "problem": self.problem()}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="neuronova-versions", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
