"""StudyInstanceUID -> Orthanc study identifier, kept in the plugin store for the search order.

A permitted-study search sorts the permitted set by Orthanc identifier (dicomweb/search.py).
Asking Orthanc's index for each identifier costs a look-up per grant, each time a node starts:
about 10 s at 100,000 grants. The table ``study_ids`` (store/schema.py) holds the identifiers
instead, so a node reads those of a permitted set in a few indexed SQL queries.

- Written by the node that receives a study: Orthanc's NEW_STUDY names the new study's
  identifier; :class:`StudyIdRecorder` reads its UID and PatientID on its own thread (the change
  thread only queues) and upserts the row (idempotent). NEW_STUDY and not STABLE_STUDY: it fires
  once, at the first instance, so a study is in search order as soon as Orthanc answers it.
- Removed when this node's Orthanc reports the study DELETED (both in the same queue, in order:
  a study deleted and stored again ends as Orthanc has it).
- Backfilled once, for studies stored before the table existed: Orthanc's ``/studies`` paged
  with ``since``/``limit`` on the same thread, between queued changes, progress kept in the
  store (a restart resumes; one node's finished backfill is every node's).
- Each flush bumps a shared counter (store/versions.py) so that the other nodes look again
  for the permitted studies they had not found, or drop the identifiers they remember after a
  deletion.

A row missing (a node stopped between Orthanc storing a study and the flush, or a study the
backfill's paging skipped because a deletion shifted the pages) costs time only: the directory
asks Orthanc for UIDs the table does not know, and queues what it finds here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql

from ..errors import OrthancCallError
from ..host import Host
from ..store import Database
from ..store.schema import study_ids as table
from ..store.schema import study_ids_backfill as progress
from ..store.statements import batches, upsert
from ..store.versions import STUDY_ARRIVALS, STUDY_DELETIONS, bump

BACKFILL_PAGE = 1000  # studies per /studies page
_BATCH = 500  # queued changes written in one transaction at most
_BACKFILL = "studies"


def row_of(study: dict[str, Any], orthanc_id: str = "") -> dict[str, str] | None:
    """The table row of an expanded Orthanc study (None when it has no StudyInstanceUID)."""
    uid = str(study.get("MainDicomTags", {}).get("StudyInstanceUID", ""))
    orthanc_id = str(study.get("ID") or orthanc_id)
    if not uid or not orthanc_id:
        return None
    return {"orthanc_id": orthanc_id, "study_uid": uid,
            "patient_id": str(study.get("PatientMainDicomTags", {}).get("PatientID", ""))}


class StudyIdTable:
    def __init__(self, db: Database) -> None:
        self._engine = db.engine
        self._upsert = upsert(table, "orthanc_id", db.engine.dialect.name)

    def ids_of(self, uids: Iterable[str]) -> dict[str, str]:
        """uid -> Orthanc identifier of those of ``uids`` the table knows. A UID under several
        PatientIDs (a collision, whose answers the search leaves out) takes the smallest."""
        found: dict[str, str] = {}
        with self._engine.connect() as connection:
            for chunk in batches(sorted(set(uids))):  # sorted: neighbouring index pages
                for uid, orthanc_id in connection.execute(*self._select(chunk)):
                    if uid not in found or orthanc_id < found[uid]:
                        found[uid] = orthanc_id
        return found

    def _select(self, chunk: Sequence[str]) -> tuple[Any, dict[str, Any]]:
        columns = select(table.c.study_uid, table.c.orthanc_id)
        if self._engine.dialect.name == "postgresql":
            # One array parameter: 100,000 UIDs among 1,000,000 rows in 1.6 s against 2.3-3.0 s
            # for IN (...) of 500 parameters (PostgreSQL 15, loaded machine).
            uids = bindparam("uids", type_=postgresql.ARRAY(String))
            return columns.where(table.c.study_uid == func.any(uids)), {"uids": list(chunk)}
        return columns.where(table.c.study_uid.in_(chunk)), {}

    def write(self, rows: list[dict[str, str]], removed: list[str], *, backfill_since: int | None = None,
              finished: bool = False) -> tuple[int | None, int | None]:
        """Upsert ``rows``, delete the identifiers ``removed`` and count both (one transaction);
        with ``backfill_since``, record the backfill's progress too. The counters' new values."""
        arrivals = deletions = None
        with self._engine.begin() as connection:
            if rows:
                connection.execute(self._upsert, rows)
                arrivals = bump(connection, STUDY_ARRIVALS)
            if removed:
                for chunk in batches(removed):
                    connection.execute(delete(table).where(table.c.orthanc_id.in_(chunk)))
                deletions = bump(connection, STUDY_DELETIONS)
            if backfill_since is not None:
                self._progress(connection, backfill_since, time.time() if finished else None)
        return arrivals, deletions

    def backfill_state(self) -> tuple[int, bool]:
        """(next position in /studies, finished)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(progress.c.since, progress.c.finished_at)
                                     .where(progress.c.name == _BACKFILL)).one_or_none()
        return (0, False) if row is None else (int(row.since), row.finished_at is not None)

    def _progress(self, connection: Connection, since: int, finished_at: float | None) -> None:
        updated = connection.execute(progress.update().where(progress.c.name == _BACKFILL)
                                     .values(since=since, finished_at=finished_at)).rowcount
        if not updated:
            connection.execute(progress.insert().values(name=_BACKFILL, since=since, finished_at=finished_at))

    def analyze(self) -> None:
        """Fresh planner statistics after the backfill's bulk load: without them PostgreSQL
        scanned the whole table for each query (0.29 s per 500 UIDs at 1,000,000 rows)."""
        if self._engine.dialect.name == "postgresql":
            with self._engine.begin() as connection:
                connection.execute(text(f"ANALYZE {table.name}"))

    def count(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@dataclass(frozen=True)
class _Change:
    orthanc_id: str
    gone: bool  # DELETED (else: NEW_STUDY, or found by a look-up)


class StudyIdRecorder:
    """The one writer of a node: queued changes first, the backfill when the queue is empty.

    ``on_written(rows, removed)`` tells the node's directory what this node wrote, so that it
    need not read it back; ``own_deletions`` are the deletion counter values this node made
    (a bump of the counter by another node means a study may have left through it).
    """

    def __init__(self, table_: StudyIdTable, host: Host,
                 on_written: Callable[[list[dict[str, str]], list[str]], None]) -> None:
        self.table = table_
        self._host = host
        self._on_written = on_written
        self._queue: queue.SimpleQueue[_Change | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.own_deletions: set[int] = set()
        self.backfill = "waiting"  # waiting | running | done | failed: <why>
        self.backfilled = 0  # studies read by this node's backfill
        self.written = 0

    def arrived(self, orthanc_id: str) -> None:
        self._queue.put(_Change(orthanc_id, gone=False))

    def deleted(self, orthanc_id: str) -> None:
        self._queue.put(_Change(orthanc_id, gone=True))

    def found_by_lookup(self, orthanc_id: str) -> None:
        """Orthanc knew a study the table did not: recorded, unless the backfill (running or
        not yet started) will come to it anyway."""
        if self.backfill == "done":
            self.arrived(orthanc_id)

    def deleted_elsewhere(self, seen: int | None, current: int) -> bool:
        """Whether the deletion counter moved from ``seen`` to ``current`` through another node."""
        if seen is None or current == seen:
            return False
        if current - seen > 10_000:  # too many to tell apart: assume so
            return True
        return any(value not in self.own_deletions for value in range(seen + 1, current + 1))

    def health(self) -> dict[str, object]:
        return {"backfill": self.backfill, "backfilled": self.backfilled, "written": self.written,
                "queued": self._queue.qsize()}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="neuronova-study-ids", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        since, finished = 0, False
        try:
            since, finished = self.table.backfill_state()
        except Exception as exc:  # noqa: BLE001 - the store away at start: backfill retried below
            self.backfill = f"failed: {type(exc).__name__}"
        self.backfill = "done" if finished else self.backfill
        pending: list[_Change] = []  # kept until written: a failed write is tried again
        while not self._stop.is_set():
            pending += self._take(block=finished and not pending)
            if self._stop.is_set():
                return
            try:
                if pending:
                    self.flush(pending)
                    pending = []
                elif not finished:
                    since, finished = self._backfill_page(since)
            except Exception as exc:  # noqa: BLE001 - the store or Orthanc away: tried again
                self._host.log_warning(f"search order table: {type(exc).__name__}: {str(exc)[:200]}")
                self._stop.wait(1.0)

    def _take(self, block: bool) -> list[_Change]:
        changes: list[_Change] = []
        try:
            first = self._queue.get(timeout=1.0) if block else self._queue.get_nowait()
        except queue.Empty:
            return changes
        if first is None:
            return changes
        changes.append(first)
        while len(changes) < _BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                break
            changes.append(item)
        return changes

    def flush(self, changes: list[_Change]) -> None:
        """Write queued changes: the last change of each identifier wins."""
        last = {c.orthanc_id: c for c in changes}
        removed = [i for i, c in last.items() if c.gone]
        rows = [r for r in (self._read(i) for i, c in last.items() if not c.gone) if r is not None]
        if not rows and not removed:
            return
        _, deletions = self.table.write(rows, removed)
        if deletions is not None:
            self.own_deletions.add(deletions)
            if len(self.own_deletions) > 20_000:  # bounded: older values no longer matter
                self.own_deletions = {v for v in self.own_deletions if v > deletions - 10_000}
        self.written += len(rows) + len(removed)
        self._on_written(rows, removed)

    def _read(self, orthanc_id: str) -> dict[str, str] | None:
        try:
            return row_of(self._host.rest_get_json(f"/studies/{orthanc_id}"), orthanc_id)
        except OrthancCallError:
            return None  # deleted meanwhile: its DELETED change follows

    def _backfill_page(self, since: int) -> tuple[int, bool]:
        if since == 0 and self.backfill != "running":
            self._host.log_info("search order table: backfill of the studies stored before it started")
        self.backfill = "running"
        page = self._host.rest_get_json(f"/studies?expand&response-content=MainDicomTags&since={since}"
                                        f"&limit={BACKFILL_PAGE}")
        rows = [r for r in (row_of(s) for s in page) if r is not None]
        finished = len(page) < BACKFILL_PAGE
        self.table.write(rows, [], backfill_since=since + len(page), finished=finished)
        self.backfilled += len(rows)
        self._on_written(rows, [])
        if finished or (since // BACKFILL_PAGE) % 50 == 49:
            self._host.log_info(f"search order table: {since + len(page)} studies backfilled"
                                + (", done" if finished else ""))
        if finished:
            self.table.analyze()
            self.backfill = "done"
        return since + len(page), finished
