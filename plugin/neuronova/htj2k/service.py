"""HTJ2K renditions beside Orthanc's instances: encoded off the ingest path, verified, kept
as an attachment, found again for serving, and backfilled when missed.

Orthanc's change thread only calls :meth:`Htj2kService.enqueue` (a queue put). Encoder
threads (daemon; ``nice`` so that ingest and HTTP threads keep the CPU first) read the
original, encode and verify it (imagecodecs releases the GIL), store the rendition with
``PUT /instances/{id}/attachments/htj2k`` and record the result in the plugin store. A
failure never touches the original: the instance simply keeps being served from it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..caches import Cache
from ..errors import HttpError, OrthancCallError
from ..host import Host
from ..store import Database
from ..store.schema import htj2k_renditions as table
from .encapsulation import FrameSpan
from .settings import Settings
from .workers import SupervisedPool

DONE, FAILED, SKIPPED = "done", "failed", "skipped"

_STOP = "__stop__"


@dataclass(frozen=True)
class StoredRendition:
    data: bytes
    frames: tuple[FrameSpan, ...]


@dataclass
class BackfillProgress:
    state: str = "idle"  # idle | running | finished | failed
    total: int = 0
    done: int = 0
    failures: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        elapsed = (self.finished_at or time.time()) - self.started_at if self.started_at else 0.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        return {
            "state": self.state, "done": self.done, "total": self.total, "failures": self.failures,
            "rate_per_second": round(rate, 2),
            "estimated_seconds_left": round(left / rate, 1) if rate > 0 and self.state == "running" else None,
            "error": self.error,
        }


class Htj2kService:
    def __init__(self, settings: Settings, host: Host, db: Database) -> None:
        self.settings = settings
        self._host = host
        self._db = db
        self._queue: queue.Queue[str] = queue.Queue()
        self._in_queue: set[str] = set()
        self._lock = threading.Lock()
        self._index: dict[str, tuple[FrameSpan, ...] | None] = {}  # instance id -> spans (None: no rendition)
        self.files: Cache[tuple[str, str], bytes] = Cache(max_bytes=settings.cache_bytes)
        self.backfill = BackfillProgress()
        self._backfill_ids: set[str] = set()
        self.encode_seconds_total = 0.0
        self.stage_seconds: dict[str, tuple[int, float]] = {}  # stage -> (count, seconds)
        self.encoded_count = 0
        self._pool = _encoder_pool(settings)
        self._threads = [
            threading.Thread(target=self._work, name=f"neuronova-htj2k-{n}", daemon=True)
            for n in range(settings.workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- intake ---------------------------------------------------------------------------

    def enqueue(self, instance_id: str) -> None:
        """Called on Orthanc's change thread for NEW_INSTANCE: never blocks."""
        if not self.settings.enabled:
            return
        with self._lock:
            if instance_id in self._in_queue:
                return
            self._in_queue.add(instance_id)
        self._queue.put(instance_id)

    def forget(self, instance_id: str) -> None:
        """The instance was deleted (its attachment went with it)."""
        self._index.pop(instance_id, None)
        self.files.drop(("dicom", instance_id))
        self.files.drop(("htj2k", instance_id))
        with self._db.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.instance_id == instance_id))

    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        try:  # Linux: threads have their own nice value; encoding yields to ingest and serving
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.settings.worker_nice)
        except (AttributeError, OSError):
            pass
        while True:
            instance_id = self._queue.get()
            if instance_id == _STOP:
                return
            try:
                status = self.process(instance_id)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                status = FAILED
                self._host.log_error(f"NeuroNova HTJ2K: {instance_id}: unexpected {exc!r}")
            finally:
                with self._lock:
                    self._in_queue.discard(instance_id)
                    if instance_id in self._backfill_ids:
                        self._backfill_ids.discard(instance_id)
                        self.backfill.done += 1
                        self.backfill.failures += status == FAILED
            self.publish_metrics()

    # -- encoding -------------------------------------------------------------------------

    def process(self, instance_id: str) -> str:
        """Encode one instance unless it already has a result. Returns the status recorded."""
        from .codec import encode_rendition  # imagecodecs and pydicom load with the first job
        from .errors import NotEncodable, VerificationError

        with self._db.engine.connect() as connection:
            existing = connection.execute(
                select(table.c.status).where(table.c.instance_id == instance_id)).scalar_one_or_none()
        if existing is not None:
            return str(existing)
        clock = time.perf_counter()
        try:
            original = self._host.rest_get(f"/instances/{instance_id}/file")
            tags = self._host.rest_get_json(f"/instances/{instance_id}")
        except OrthancCallError:
            return SKIPPED  # deleted meanwhile: nothing to do, nothing to record
        sop_uid = str(tags.get("MainDicomTags", {}).get("SOPInstanceUID", ""))
        self._time("fetch", clock)
        clock = time.perf_counter()
        try:
            if self._pool is not None:
                # at most Htj2k.EncodeTimeoutSeconds; a crashed or hung encoder is restarted
                rendition = self._pool.run(encode_rendition, original)
            else:
                rendition = encode_rendition(original)
        except NotEncodable as exc:
            self._record(instance_id, sop_uid, SKIPPED, error=exc.reason)
            return SKIPPED
        except (VerificationError, MemoryError, Exception) as exc:  # noqa: BLE001 - never lose the original
            self._host.log_warning(f"NeuroNova HTJ2K: no rendition for {instance_id}: {type(exc).__name__}: {exc}")
            self._record(instance_id, sop_uid, FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
            return FAILED
        self._time("encode", clock)
        clock = time.perf_counter()
        try:
            self._host.rest_put(f"/instances/{instance_id}/attachments/{self.settings.attachment}", rendition.data)
        except OrthancCallError as exc:
            self._record(instance_id, sop_uid, FAILED, error=f"storing the attachment failed: {exc}")
            return FAILED
        self._time("store", clock)
        clock = time.perf_counter()
        self._record(instance_id, sop_uid, DONE, transfer_syntax=rendition.source_transfer_syntax,
                     original_bytes=rendition.original_pixel_bytes, rendition_bytes=rendition.encoded_bytes,
                     frames=rendition.frames, encode_seconds=rendition.encode_seconds)
        self._index[instance_id] = rendition.frames
        self.files.drop(("htj2k", instance_id))
        self._time("record", clock)
        with self._lock:
            self.encoded_count += 1
            self.encode_seconds_total += rendition.encode_seconds
        return DONE

    def _time(self, stage: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            count, total = self.stage_seconds.get(stage, (0, 0.0))
            self.stage_seconds[stage] = (count + 1, total + elapsed)

    def _record(self, instance_id: str, sop_uid: str, status: str, *, error: str = "", transfer_syntax: str = "",
                original_bytes: int = 0, rendition_bytes: int = 0, frames: Iterable[FrameSpan] = (),
                encode_seconds: float = 0.0) -> None:
        row = {
            "instance_id": instance_id, "sop_uid": sop_uid, "status": status, "transfer_syntax": transfer_syntax,
            "original_bytes": original_bytes, "rendition_bytes": rendition_bytes,
            "frames_index": json.dumps([list(span) for span in frames]), "encode_seconds": encode_seconds,
            "error": error, "updated_at": time.time(),
        }
        dialect = self._db.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(**row)
        statement = statement.on_conflict_do_update(index_elements=["instance_id"], set_=row)
        with self._db.engine.begin() as connection:
            connection.execute(statement)

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
        version = _file_version()
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
        version = _file_version()
        data = self.files.get(("dicom", instance_id), version)
        if data is None:
            data = self._host.rest_get(f"/instances/{instance_id}/file")
            self.files.put(("dicom", instance_id), data, version=version)
        return data, version

    def with_rendition(self, sop_uids: list[str]) -> set[str]:
        """Which of these SOP Instance UIDs have a rendition (for metadata)."""
        found: set[str] = set()
        with self._db.engine.connect() as connection:
            for start in range(0, len(sop_uids), 500):
                chunk = sop_uids[start:start + 500]
                found.update(connection.execute(
                    select(table.c.sop_uid).where(table.c.sop_uid.in_(chunk), table.c.status == DONE)).scalars())
        return found

    # -- backfill -------------------------------------------------------------------------

    def start_backfill(self) -> BackfillProgress:
        with self._lock:
            if self.backfill.state == "running":
                return self.backfill
            self.backfill = BackfillProgress(state="running", started_at=time.time())
        threading.Thread(target=self._backfill, name="neuronova-htj2k-backfill", daemon=True).start()
        return self.backfill

    def _backfill(self) -> None:
        progress = self.backfill
        try:
            progress.total = self._count_missing()
            since = 0
            batch = self.settings.backfill_batch
            while True:
                ids = self._host.rest_get_json(f"/instances?since={since}&limit={batch}")
                if not ids:
                    break
                since += len(ids)
                missing = self._missing(ids)
                with self._lock:
                    self._backfill_ids.update(missing)
                for instance_id in missing:
                    with self._lock:
                        if instance_id in self._in_queue:
                            continue
                        self._in_queue.add(instance_id)
                    self._queue.put(instance_id)
                while self._queue.qsize() > 2 * batch:  # bounded memory, resumable at any point
                    time.sleep(0.1)
            while True:
                with self._lock:
                    if not self._backfill_ids:
                        break
                time.sleep(0.1)
            progress.state = "finished"
        except Exception as exc:  # noqa: BLE001 - reported by GET /neuronova/htj2k/backfill
            progress.state, progress.error = "failed", f"{type(exc).__name__}: {exc}"
        progress.finished_at = time.time()

    def _missing(self, ids: list[str]) -> list[str]:
        with self._db.engine.connect() as connection:
            known = set(connection.execute(select(table.c.instance_id).where(table.c.instance_id.in_(ids))).scalars())
        return [i for i in ids if i not in known]

    def _count_missing(self) -> int:
        total = int(self._host.rest_get_json("/statistics").get("CountInstances", 0))
        with self._db.engine.connect() as connection:
            known = int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        return max(total - known, 0)

    def forget_failures(self) -> int:
        """Drop failed results so that the next backfill tries those instances again."""
        with self._db.engine.begin() as connection:
            removed = connection.execute(delete(table).where(table.c.status == FAILED)).rowcount
        self._index.clear()
        return int(removed or 0)

    # -- visibility -----------------------------------------------------------------------

    def study_status(self, study_uid: str) -> dict[str, Any]:
        study_id = self._host.lookup_study(study_uid)
        if study_id is None:
            raise HttpError(404, "no such study")
        instances = self._host.rest_get_json(f"/studies/{study_id}/instances")
        ids = [str(i["ID"]) for i in instances]
        with self._db.engine.connect() as connection:
            rows = {r.instance_id: r for r in connection.execute(select(table).where(table.c.instance_id.in_(ids)))}
        status = {i: (rows[i].status if i in rows else ("queued" if i in self._in_queue else "missing")) for i in ids}
        counts: dict[str, int] = {}
        for value in status.values():
            counts[value] = counts.get(value, 0) + 1
        return {
            "study": study_uid, "instances": len(ids), "counts": counts,
            "problems": [{"instance": i, "status": status[i], "error": rows[i].error}
                         for i in ids if status[i] in (FAILED, SKIPPED)],
        }

    def stats(self) -> dict[str, Any]:
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(table.c.status, func.count(), func.sum(table.c.original_bytes),
                       func.sum(table.c.rendition_bytes)).group_by(table.c.status)).all()
        by_status = {row[0]: (int(row[1]), int(row[2] or 0), int(row[3] or 0)) for row in rows}
        total = int(self._host.rest_get_json("/statistics").get("CountInstances", 0))
        done = by_status.get(DONE, (0, 0, 0))
        with self._lock:
            average = self.encode_seconds_total / self.encoded_count if self.encoded_count else 0.0
            stages = dict(self.stage_seconds)
        return {
            "instances": total,
            "with_rendition": done[0],
            "without_rendition": max(total - done[0], 0),
            "failed": by_status.get(FAILED, (0, 0, 0))[0],
            "skipped": by_status.get(SKIPPED, (0, 0, 0))[0],
            "queued": self.pending(),
            "original_pixel_bytes": done[1],
            "rendition_bytes": done[2],
            "compression_ratio": round(done[1] / done[2], 2) if done[2] else None,
            "average_encode_ms": round(average * 1000, 2),
            "average_stage_ms": {stage: round(total / count * 1000, 2) for stage, (count, total) in stages.items()},
            "encoding_enabled": self.settings.enabled,
            "backfill": self.backfill.as_json(),
        }

    def publish_metrics(self) -> None:
        with self._lock:
            count, seconds = self.encoded_count, self.encode_seconds_total
        self._host.set_metric("neuronova_htj2k_encoded_total", count)
        self._host.set_metric("neuronova_htj2k_encode_seconds_total", seconds)
        self._host.set_metric("neuronova_htj2k_queue", self.pending())

    def publish_store_metrics(self) -> None:
        stats = self.stats()
        for key in ("with_rendition", "without_rendition", "failed", "skipped", "original_pixel_bytes",
                    "rendition_bytes"):
            self._host.set_metric(f"neuronova_htj2k_{key}", float(stats[key]))

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        if self._pool is not None:
            self._pool.shutdown()


def _file_version() -> str:
    """Cached files are valid for a minute at most. Instances never change in place; a deleted
    one is dropped at once by :meth:`Htj2kService.forget`, and the minute bounds what another
    node sharing the index could change (delete and store different bytes under the same UIDs)."""
    return str(int(time.monotonic() // 60))


def _lower_priority(nice: int) -> None:
    os.nice(nice)


def _encoder_pool(settings: Settings) -> SupervisedPool | None:
    """Encoder processes: encoding holds the GIL for a few milliseconds of pydicom and NumPy
    work per frame, which would delay Orthanc's request threads (the gate's filter needs the
    GIL); separate processes keep it out of Orthanc's interpreter altogether.

    Orthanc embeds Python, so ``sys.executable`` is Orthanc itself: spawn an interpreter
    explicitly. Spawned children receive the plugin's ``sys.path`` (venv first). Supervised
    (:mod:`.workers`): third-party decoders read stored data there, and one that crashes or
    hangs costs its instance a failed rendition, not the pool.
    """
    if settings.processes == 0:
        return None
    context = multiprocessing.get_context("spawn")
    context.set_executable(settings.python)

    def factory(processes: int = settings.processes) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(processes, mp_context=context, initializer=_lower_priority,
                                   initargs=(settings.worker_nice,))

    return SupervisedPool(factory, settings.encode_timeout, single_factory=lambda: factory(1))
