"""HTJ2K renditions beside Orthanc's instances: the parts put together, and what they report.

- :mod:`.pipeline`         new instances -> encoder processes -> attachment + result
- :mod:`.encoder_pool`     the supervised encoder processes (third-party codecs run there)
- :mod:`.rendition_store`  results, frame spans, rendition and original files for serving
- :mod:`.backfill`         renditions for instances stored while encoding was off
- :mod:`.claims`           each rendition done by one node, taken over when that node dies
- :mod:`.serving`          WADO-RS answers from renditions and originals

Nothing here raises HTTP errors: :mod:`.api` maps what it gets to answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..host import Host
from ..store import Database
from .backfill import Backfill, BackfillProgress
from .claims import RenditionClaims
from .pipeline import RenditionPipeline
from .rendition_store import DONE, FAILED, SKIPPED, RenditionStore
from .settings import Settings

_ORPHAN_WINDOW = 10_000  # changes looked at again at start, and suspects kept at most
# How often the rendition store's counts are published as Orthanc metrics without anyone
# asking for the stats (Prometheus scrapes the metrics only): the count reads every row.
STORE_METRICS_SECONDS = 60.0


class Htj2kService:
    def __init__(self, settings: Settings, host: Host, db: Database,
                 clock: Callable[[], float] = time.monotonic, node: str = "") -> None:
        self.settings = settings
        self._host = host
        self.store = RenditionStore(settings, host, db)
        self.pipeline = RenditionPipeline(settings, host, self.store, clock)
        self._backfill = Backfill(host, self.store, self.pipeline, settings.backfill_batch)
        self.claims = RenditionClaims(db, node or "node", settings.claim_lease_seconds)
        # instances that end without a result row (deleted meanwhile) release their claim
        self.pipeline.when_done(self._release_unrecorded)
        self._change_seq = -1  # Orthanc's change log, read for orphans (claims.py)
        self._suspects: dict[str, float] = {}  # new instances without claim or result: first seen
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="neuronova-htj2k-claims", daemon=True)
        if settings.enabled:
            self._sweeper.start()

    # -- what Orthanc's callbacks call ----------------------------------------------------

    def enqueue(self, instance_id: str) -> None:
        if self.settings.enabled:
            self.claims.claim(instance_id)
        self.pipeline.enqueue(instance_id)

    def forget(self, instance_id: str) -> None:
        self.store.forget(instance_id)

    def with_rendition(self, sop_uids: list[str]) -> set[str]:
        return self.store.with_rendition(sop_uids)

    def when_rendered(self, callback: Callable[[str], None]) -> None:
        """``callback(study_uid)`` for each rendition this node stores, once it is recorded."""
        self.pipeline.when_stored(callback)

    def stop(self) -> None:
        self._stopping.set()
        self.pipeline.stop()
        self.store.flush()

    def _orphans(self) -> list[str]:
        """New instances of any node (the change log is the shared index's) that still have
        neither a claim nor a result a lease after this node first saw them: their node
        stopped before writing its claim. Adopted here, one node winning each."""
        if self._change_seq < 0:  # at start: the last _ORPHAN_WINDOW changes are looked at again
            last = int(self._host.rest_get_json("/changes?last").get("Last", 0))
            self._change_seq = max(last - _ORPHAN_WINDOW, 0)
        answer = self._host.rest_get_json(f"/changes?since={self._change_seq}&limit=1000")
        now = time.monotonic()
        for change in answer.get("Changes", []):
            if change.get("ChangeType") == "NewInstance" and len(self._suspects) < _ORPHAN_WINDOW:
                self._suspects.setdefault(str(change.get("ID")), now)
        self._change_seq = int(answer.get("Last", self._change_seq))
        due = [i for i, seen in self._suspects.items() if now - seen >= self.settings.claim_lease_seconds]
        if not due and len(self._suspects) < 1000:
            return []
        unresolved = set(self.store.missing(list(self._suspects)))
        for instance_id in list(self._suspects):
            if instance_id not in unresolved:
                del self._suspects[instance_id]  # it has its result
        orphans = [i for i in due if i in unresolved and not self.pipeline.is_queued(i)]
        adopted = self.claims.adopt(orphans)
        for instance_id in orphans:
            self._suspects.pop(instance_id, None)  # claimed by someone now: the lease covers it
        return adopted

    def _release_unrecorded(self, instance_id: str, status: str) -> None:
        if status == SKIPPED:
            self.claims.release(instance_id)

    def _sweep(self) -> None:
        """Claims written, leases renewed, expired claims (a dead node's, or this node's from
        before a restart) taken over and queued here unless they have a result already."""
        interval = min(max(self.settings.claim_lease_seconds / 3, 0.25), 10.0)
        first, published = True, float("-inf")
        while not self._stopping.wait(0 if first else interval):
            if time.monotonic() - published >= STORE_METRICS_SECONDS:
                published = time.monotonic()
                try:
                    self.publish_store_metrics(self.stats())
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    self._host.log_info(f"NeuroNova HTJ2K: store metrics not published: {exc!r}")
            try:
                taken = self.claims.recover() if first else []
                taken += self.claims.tick()
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while: retry
                self._host.log_warning(f"NeuroNova HTJ2K: claims not written, retrying: {exc!r}")
                continue
            first = False
            try:
                taken += self._orphans()
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                self._host.log_info(f"NeuroNova HTJ2K: change log not read for orphans: {exc!r}")
            for instance_id in taken:
                if self.store.status(instance_id) is None:
                    self.pipeline.submit(instance_id)
                else:
                    self.claims.release(instance_id)
            if taken:
                self._host.log_warning(f"NeuroNova HTJ2K: took over {len(taken)} rendition(s) "
                                       "whose node stopped before encoding them")

    # -- backfill -------------------------------------------------------------------------

    @property
    def backfill(self) -> BackfillProgress:
        return self._backfill.progress

    def start_backfill(self) -> BackfillProgress:
        return self._backfill.start()

    def forget_failures(self) -> int:
        return self.store.forget_failures()

    # -- visibility -----------------------------------------------------------------------

    def study_status(self, study_uid: str) -> dict[str, Any] | None:
        """Rendition status of each instance of a study; None when there is no such study."""
        study_id = self._host.lookup_study(study_uid)
        if study_id is None:
            return None
        instances = self._host.rest_get_json(f"/studies/{study_id}/instances")
        ids = [str(i["ID"]) for i in instances]
        rows = self.store.rows(ids)
        status = {i: (rows[i].status if i in rows else ("queued" if self.pipeline.is_queued(i) else "missing"))
                  for i in ids}
        counts: dict[str, int] = {}
        for value in status.values():
            counts[value] = counts.get(value, 0) + 1
        return {
            "study": study_uid, "instances": len(ids), "counts": counts,
            "problems": [{"instance": i, "status": status[i], "error": rows[i].error}
                         for i in ids if status[i] in (FAILED, SKIPPED)],
        }

    def stats(self) -> dict[str, Any]:
        counts = self.store.counts()
        total = int(self._host.rest_get_json("/statistics").get("CountInstances", 0))
        done = counts.of(DONE)
        return {
            "instances": total,
            "with_rendition": done[0],
            "without_rendition": max(total - done[0], 0),
            "failed": counts.of(FAILED)[0],
            "skipped": counts.of(SKIPPED)[0],
            "queued": self.pipeline.pending(),  # waiting for an encoder
            "in_flight": self.pipeline.in_flight(),  # in the encoders now
            "held": self.pipeline.held(),  # of the queued: encoded, stored once the ingest pauses
            "trailing_ingest": self.pipeline.ingest_busy(),  # held back: instances are arriving
            "last_stored_at": self.pipeline.last_stored_at,  # epoch seconds, this node's last rendition
            "encoder_restarts": self.pipeline.restarts(),
            "originals_read": self.pipeline.originals_read(),  # by the encoders: storage folder or REST
            "original_pixel_bytes": done[1],
            "rendition_bytes": done[2],
            "compression_ratio": round(done[1] / done[2], 2) if done[2] else None,
            "average_encode_ms": round(self.pipeline.average_encode_ms(), 2),
            "average_stage_ms": self.pipeline.clock.average_ms(),
            "encoding_enabled": self.settings.enabled,
            "claims_taken_over": self.claims.taken_over,  # renditions of dead nodes (or an earlier life) done here
            "backfill": self.backfill.as_json(),
        }

    def publish_store_metrics(self, stats: dict[str, Any]) -> None:
        """Orthanc's metrics of the rendition store, from ``stats`` (just computed)."""
        for key in ("with_rendition", "without_rendition", "failed", "skipped", "original_pixel_bytes",
                    "rendition_bytes"):
            self._host.set_metric(f"neuronova_htj2k_{key}", float(stats[key]))
        self.pipeline.publish_metrics()
