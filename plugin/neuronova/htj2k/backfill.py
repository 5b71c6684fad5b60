"""The backfill: renditions for instances stored while encoding was off (or failed before).

It walks Orthanc's instances in pages of ``BackfillBatch``, queues those without a result
in the pipeline (as the backfill's own, not as ingest: it never holds new instances back)
and waits while the queue is long, so memory stays bounded and the walk can stop anywhere.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ..host import Host
from .pipeline import RenditionPipeline
from .rendition_store import FAILED, RenditionStore


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


class Backfill:
    def __init__(self, host: Host, store: RenditionStore, pipeline: RenditionPipeline, batch: int) -> None:
        self._host = host
        self._store = store
        self._pipeline = pipeline
        self._batch = batch
        self._lock = threading.Lock()
        self._ids: set[str] = set()  # queued by this run, not done yet
        self.progress = BackfillProgress()
        pipeline.when_done(self._done)

    def start(self) -> BackfillProgress:
        with self._lock:
            if self.progress.state == "running":
                return self.progress
            self.progress = BackfillProgress(state="running", started_at=time.time())
        threading.Thread(target=self._run, name="neuronova-htj2k-backfill", daemon=True).start()
        return self.progress

    def _done(self, instance_id: str, status: str) -> None:
        with self._lock:
            if instance_id in self._ids:
                self._ids.discard(instance_id)
                self.progress.done += 1
                self.progress.failures += status == FAILED

    def _run(self) -> None:
        progress = self.progress
        try:
            total = int(self._host.rest_get_json("/statistics").get("CountInstances", 0))
            progress.total = max(total - self._store.known_count(), 0)
            since = 0
            while True:
                ids = self._host.rest_get_json(f"/instances?since={since}&limit={self._batch}")
                if not ids:
                    break
                since += len(ids)
                for instance_id in self._store.missing(ids):
                    with self._lock:
                        self._ids.add(instance_id)
                    # queued already by the ingest: counted when that job ends, or now if it just did
                    if not self._pipeline.submit(instance_id) and not self._pipeline.is_queued(instance_id):
                        self._done(instance_id, "")
                while self._pipeline.pending() > 2 * self._batch:  # bounded memory, resumable at any point
                    time.sleep(0.1)
            while True:
                with self._lock:
                    if not self._ids:
                        break
                time.sleep(0.1)
            progress.state = "finished"
        except Exception as exc:  # noqa: BLE001 - reported by GET /neuronova/htj2k/backfill
            progress.state, progress.error = "failed", f"{type(exc).__name__}: {exc}"
        progress.finished_at = time.time()
