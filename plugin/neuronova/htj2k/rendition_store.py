"""The rendition store: which instance has which result, where its frames are, and the files.

Results live in the plugin store (table ``htj2k_renditions``: one row per instance, done,
failed or skipped); the rendition itself is an Orthanc attachment of the instance. Rows are
written in batches (one transaction for many instances: a commit costs more than the row),
and every reader flushes first, so what is read is always what was recorded. A result not
yet flushed when Orthanc dies costs nothing but time: its instance has no row, so the next
backfill encodes it again and overwrites the attachment with the same bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

from ..caches import Cache
from ..errors import OrthancCallError
from ..host import Host
from ..store import Database
from ..store.schema import htj2k_claims
from ..store.schema import htj2k_renditions as table
from ..store.statements import batches, upsert
from .encapsulation import FrameSpan
from .settings import Settings

DONE, FAILED, SKIPPED = "done", "failed", "skipped"

_BATCH = 64  # rows per transaction at most


@dataclass(frozen=True)
class StoredRendition:
    data: bytes
    frames: tuple[FrameSpan, ...]


@dataclass(frozen=True)
class Counts:
    """Per status: instances, original pixel bytes, rendition bytes."""

    by_status: dict[str, tuple[int, int, int]]

    def of(self, status: str) -> tuple[int, int, int]:
        return self.by_status.get(status, (0, 0, 0))


class RenditionStore:
    def __init__(self, settings: Settings, host: Host, db: Database) -> None:
        self.settings = settings
        self._host = host
        self._db = db
        self._index: dict[str, tuple[FrameSpan, ...] | None] = {}  # instance id -> spans (None: no rendition)
        self.files: Cache[tuple[str, str], bytes] = Cache(max_bytes=settings.cache_bytes)
        self._pending: dict[str, dict[str, Any]] = {}  # rows recorded, not yet written
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer: rows reach the table in the order recorded
        self._upsert = upsert(table, "instance_id", db.engine.dialect.name)

    # -- results --------------------------------------------------------------------------

    def status(self, instance_id: str) -> str | None:
        with self._pending_lock:
            row = self._pending.get(instance_id)
        if row is not None:
            return str(row["status"])
        with self._db.engine.connect() as connection:
            found = connection.execute(
                select(table.c.status).where(table.c.instance_id == instance_id)).scalar_one_or_none()
        return None if found is None else str(found)

    def known_status(self, instance_id: str) -> str | None:
        """The result recorded by this node, without asking the database (None: not known)."""
        with self._pending_lock:
            row = self._pending.get(instance_id)
        if row is not None:
            return str(row["status"])
        return DONE if self._index.get(instance_id) is not None else None

    def record(self, instance_id: str, sop_uid: str, status: str, *, error: str = "", transfer_syntax: str = "",
               original_bytes: int = 0, rendition_bytes: int = 0, frames: Iterable[FrameSpan] = (),
               encode_seconds: float = 0.0, flush: bool = True) -> None:
        """Record one result; with ``flush=False`` it joins the next batch (the caller flushes
        when its queue runs dry; a full batch is written at once)."""
        spans = tuple(frames)
        row = {
            "instance_id": instance_id, "sop_uid": sop_uid, "status": status, "transfer_syntax": transfer_syntax,
            "original_bytes": original_bytes, "rendition_bytes": rendition_bytes,
            "frames_index": json.dumps([list(span) for span in spans]), "encode_seconds": encode_seconds,
            "error": error, "updated_at": time.time(),
        }
        with self._pending_lock:
            self._pending[instance_id] = row
            full = len(self._pending) >= _BATCH
        if status == DONE:
            self._index[instance_id] = spans
            self.files.drop(("htj2k", instance_id))
        if flush or full:
            self.flush()

    def flush(self) -> None:
        """Write the rows recorded so far (one transaction)."""
        with self._write_lock:
            with self._pending_lock:
                rows, self._pending = list(self._pending.values()), {}
            if not rows:
                return
            with self._db.engine.begin() as connection:
                connection.execute(self._upsert, rows)  # one statement, executed for many rows
                # a result written ends its claim, in the same transaction (claims.py)
                connection.execute(delete(htj2k_claims).where(
                    htj2k_claims.c.instance_id.in_([row["instance_id"] for row in rows])))

    def forget(self, instance_id: str) -> None:
        """The instance was deleted (its attachment went with it)."""
        self.flush()
        self._index.pop(instance_id, None)
        self.files.drop(("dicom", instance_id))
        self.files.drop(("htj2k", instance_id))
        with self._db.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.instance_id == instance_id))

    def forget_failures(self) -> int:
        """Drop failed results so that the next backfill tries those instances again."""
        self.flush()
        with self._db.engine.begin() as connection:
            removed = connection.execute(delete(table).where(table.c.status == FAILED)).rowcount
        self._index.clear()
        return int(removed or 0)

    def missing(self, ids: list[str]) -> list[str]:
        """Those of ``ids`` without any result."""
        self.flush()
        with self._db.engine.connect() as connection:
            known = set(connection.execute(select(table.c.instance_id).where(table.c.instance_id.in_(ids))).scalars())
        return [i for i in ids if i not in known]

    def known_count(self) -> int:
        self.flush()
        with self._db.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def rows(self, ids: list[str]) -> dict[str, Any]:
        """instance id -> row (status, error, ...) of those of ``ids`` that have a result."""
        self.flush()
        found: dict[str, Any] = {}
        with self._db.engine.connect() as connection:
            for chunk in batches(ids):
                found.update({r.instance_id: r for r in connection.execute(
                    select(table).where(table.c.instance_id.in_(chunk)))})
        return found

    def counts(self) -> Counts:
        """Per status, the rows written and the rows recorded but not written yet, without
        writing them (monitoring polls the stats: a flush per poll would write the batch of
        results one transaction per poll). One statement: the written rows of the instances
        with a pending row are left out and the pending rows counted instead, so a batch
        written meanwhile is counted once, whichever version the statement sees."""
        with self._pending_lock:
            pending = list(self._pending.values())
        query = select(table.c.status, func.count(), func.sum(table.c.original_bytes),
                       func.sum(table.c.rendition_bytes))
        if pending:
            query = query.where(table.c.instance_id.not_in([row["instance_id"] for row in pending]))
        with self._db.engine.connect() as connection:
            rows = connection.execute(query.group_by(table.c.status)).all()
        by_status = {str(row[0]): (int(row[1]), int(row[2] or 0), int(row[3] or 0)) for row in rows}
        for row in pending:
            count, original, rendition = by_status.get(row["status"], (0, 0, 0))
            by_status[row["status"]] = (count + 1, original + row["original_bytes"], rendition + row["rendition_bytes"])
        return Counts(by_status)

    # -- serving --------------------------------------------------------------------------

    def spans(self, instance_id: str) -> tuple[FrameSpan, ...] | None:
        """Frame spans of the instance's rendition, or None when it has none (yet)."""
        if instance_id in self._index:
            return self._index[instance_id]
        with self._db.engine.connect() as connection:
            row = connection.execute(
                select(table.c.status, table.c.frames_index).where(table.c.instance_id == instance_id)).first()
        spans = tuple(FrameSpan(*span) for span in json.loads(row.frames_index)) if row and row.status == DONE else None
        if row is not None:  # instances without a row may get one any moment: not cached
            self._index[instance_id] = spans
        return spans

    def rendition(self, instance_id: str) -> StoredRendition | None:
        spans = self.spans(instance_id)
        if spans is None:
            return None
        uri = f"/instances/{instance_id}/attachments/{self.settings.attachment}"
        version = file_version()
        try:
            data = self.files.get(("htj2k", instance_id), version)
            if data is None:
                data = self._host.rest_get(uri + "/data")
                self.files.put(("htj2k", instance_id), data, version=version)
        except OrthancCallError:
            self._index.pop(instance_id, None)  # attachment gone (e.g. restored index): serve the original
            return None
        return StoredRendition(data, spans)

    def original(self, instance_id: str) -> bytes:
        return self.original_with_version(instance_id)[0]

    def original_with_version(self, instance_id: str) -> tuple[bytes, str]:
        """The stored original and the version per-instance caches are keyed by."""
        version = file_version()
        data = self.files.get(("dicom", instance_id), version)
        if data is None:
            data = self._host.rest_get(f"/instances/{instance_id}/file")
            self.files.put(("dicom", instance_id), data, version=version)
        return data, version

    def with_rendition(self, sop_uids: list[str]) -> set[str]:
        """Which of these SOP Instance UIDs have a rendition (for metadata)."""
        self.flush()
        found: set[str] = set()
        with self._db.engine.connect() as connection:
            for chunk in batches(sop_uids):
                found.update(connection.execute(
                    select(table.c.sop_uid).where(table.c.sop_uid.in_(chunk), table.c.status == DONE)).scalars())
        return found


def file_version() -> str:
    """Cached files are valid for a minute at most. Instances never change in place; a deleted
    one is dropped at once by :meth:`RenditionStore.forget`, and the minute bounds what another
    node sharing the index could change (delete and store different bytes under the same UIDs)."""
    return str(int(time.monotonic() // 60))
