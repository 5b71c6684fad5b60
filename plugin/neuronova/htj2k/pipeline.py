"""The rendition pipeline: new instances in, verified renditions stored beside them.

Orthanc's change thread only calls :meth:`RenditionPipeline.enqueue` (a queue put). Worker
threads (daemon, ``nice``) hand the original to an encoder process (:mod:`.encoder_pool`; it
reads the file from Orthanc's storage folder itself, or a copy of the bytes Orthanc's REST API
gives, see :mod:`.exchange`), store the rendition with ``PUT /instances/{id}/attachments/htj2k``
and record the result (:mod:`.rendition_store`). A failure never touches the original: the
instance simply keeps being served from it.

Ingest first: while instances keep arriving (one came within a few of the ingest's own gaps,
at most ``ingest_quiet`` seconds ago: :mod:`.ingest_pace`) at most ``jobs_while_ingesting``
instances (default none) are processed, at nice 19, and their renditions are held in memory
rather than written beside the ingest, so renditions trail the ingest instead of competing
with it (viewers get the original meanwhile); once the ingest pauses every worker runs and the
queue drains at the encoders' speed. The queue depth and
whether the pipeline is trailing are in the stats and Orthanc's metrics.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ..errors import OrthancCallError
from ..host import Host
from .encoder_pool import Encoded, encode_job, encoder_pool
from .exchange import SourceUnavailable, StoredFile
from .ingest_pace import IngestPace
from .originals import Originals
from .rendition_store import DONE, FAILED, SKIPPED, RenditionStore
from .settings import Settings

_STOP = "__stop__"
_HELD = "held"  # not a recorded status: the rendition waits in memory for the ingest to pause
_TRAILING_NICE = 19  # encoders' priority while the ingest is busy: only the CPU it leaves
_IDLE_WAIT = 1.0  # seconds: a worker with an empty queue wakes this often (flush, metrics)
_METRICS_EVERY = 0.5  # seconds: metrics stay current while the queue waits for the ingest to pause


class StageClock:
    """Wall time per stage of the pipeline (count, seconds), for the stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, tuple[int, float]] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            count, total = self._stages.get(stage, (0, 0.0))
            self._stages[stage] = (count + 1, total + seconds)

    def since(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.add(stage, now - started)
        return now

    def average_ms(self) -> dict[str, float]:
        with self._lock:
            return {stage: round(total / count * 1000, 2) for stage, (count, total) in self._stages.items()}


class RenditionPipeline:
    def __init__(self, settings: Settings, host: Host, store: RenditionStore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._pace = IngestPace(settings.ingest_quiet, clock)  # tests pass their own clock
        self._host = host
        self._store = store
        self._queue: queue.Queue[str] = queue.Queue()
        self._in_queue: set[str] = set()
        self._lock = threading.Lock()
        self._admission = threading.Condition(self._lock)
        self._working = 0  # instances being processed (fetch, encode, store)
        self._in_flight = 0  # instances in the encoders
        self._held: OrderedDict[str, Encoded] = OrderedDict()  # encoded while the ingest was busy
        self._held_bytes = 0
        self._last_metrics = 0.0
        self._on_done: list[Callable[[str, str], None]] = []  # (instance id, status): the backfill's progress
        self._on_stored: list[Callable[[str], None]] = []  # (study UID): its metadata advertises the rendition
        self.clock = StageClock()
        self.encoded_count = 0
        self.encode_seconds_total = 0.0
        self.last_stored_at: float | None = None  # epoch seconds: when the last rendition became servable
        # started at once when encoding is on; otherwise on the backfill's first job
        self._pool = encoder_pool(settings, warm=settings.enabled)
        # originals and renditions cross to the encoders as files (exchange.py), not through pipes
        self._originals = Originals(host, settings.storage_directory) if self._pool is not None else None
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
        self._pace.arrived()
        self.submit(instance_id)

    def submit(self, instance_id: str) -> bool:
        """Queue an instance (no ingest activity implied: the backfill's way in). False when
        it is queued or being encoded already."""
        with self._lock:
            if instance_id in self._in_queue:
                return False
            self._in_queue.add(instance_id)
        self._queue.put(instance_id)
        return True

    def is_queued(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._in_queue

    def pending(self) -> int:
        """Instances not done yet and not in the encoders: queued, or encoded and held until
        the ingest pauses."""
        with self._lock:
            return len(self._in_queue) - self._in_flight

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def ingest_busy(self) -> bool:
        return self._pace.busy()

    def when_done(self, callback: Callable[[str, str], None]) -> None:
        self._on_done.append(callback)

    def when_stored(self, callback: Callable[[str], None]) -> None:
        """``callback(study_uid)`` once a rendition is stored and recorded (not before: what
        it triggers reads the record)."""
        self._on_stored.append(callback)

    # -- workers --------------------------------------------------------------------------

    def _work(self) -> None:
        try:  # Linux: threads have their own nice value; their share yields to ingest and serving
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.settings.worker_nice)
        except (AttributeError, OSError):
            pass
        while True:
            held = self._held_if_idle()
            if held is not None:
                self._end(held[0], self._store_rendition(*held))
                continue
            # short while renditions are held (stored soon after the ingest pauses); otherwise
            # nothing but the queue has work for this thread, and an idle Orthanc stays idle
            try:
                instance_id = self._queue.get(timeout=0.1 if self.held() else _IDLE_WAIT)
            except queue.Empty:
                self._store.flush()
                self._publish_metrics_now_and_then()
                continue
            if instance_id == _STOP:
                return
            self._wait_for_turn()
            status = FAILED
            try:
                status = self.process(instance_id)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                self._host.log_error(f"NeuroNova HTJ2K: {instance_id}: unexpected {exc!r}")
            finally:
                with self._admission:
                    self._working -= 1
                    self._admission.notify_all()
                if status != _HELD:
                    self._end(instance_id, status)

    def _held_if_idle(self) -> tuple[str, Encoded] | None:
        """A rendition held during the ingest, to store now that it has paused."""
        with self._admission:
            if not self._held or self.ingest_busy():
                return None
            instance_id, encoded = self._held.popitem(last=False)
            self._held_bytes -= len(encoded.rendition.data)
            return instance_id, encoded

    def _wait_for_turn(self) -> None:
        """While the ingest is busy, at most ``jobs_while_ingesting`` instances are processed
        at once and finished renditions wait in memory (up to ``hold_bytes``); checked once
        the instance is taken, so a worker that was waiting on an empty queue when the
        ingest began waits here."""
        while True:
            with self._admission:
                if not self.ingest_busy() or (self._working < self.settings.jobs_while_ingesting
                                              and self._held_bytes <= self.settings.hold_bytes):
                    self._working += 1
                    return
                # woken when the ingest turns quiet (not up to a poll later), else every 50 ms
                self._admission.wait(timeout=min(max(self._pace.quiet_in(), 0.002), 0.05))
            self._publish_metrics_now_and_then()  # the queue grows meanwhile: keep the metric current

    def _end(self, instance_id: str, status: str) -> None:
        with self._lock:
            self._in_queue.discard(instance_id)
        if self._queue.empty():
            self._store.flush()  # the batch of results is written when the queue runs dry
        for callback in self._on_done:
            callback(instance_id, status)
        self._publish_metrics_now_and_then()

    # -- one instance ---------------------------------------------------------------------

    def process(self, instance_id: str) -> str:
        """Encode one instance unless it already has a result. Returns the status recorded,
        or ``held`` when the rendition waits for the ingest to pause before it is stored."""
        from .errors import NotEncodable, VerificationError

        # No look-up in the store: NEW_INSTANCE comes once per instance (a re-sent one is
        # "AlreadyStored", an overwritten one was DELETED first, which dropped its row) and the
        # backfill queues only instances without a result; a result this node recorded is known.
        existing = self._store.known_status(instance_id)
        if existing is not None:
            return existing
        clock = time.perf_counter()
        try:
            source = self._source(instance_id)
        except OrthancCallError:
            return SKIPPED  # deleted meanwhile: nothing to do, nothing to record
        clock = self.clock.since("fetch", clock)
        busy = self.ingest_busy()
        nice = _TRAILING_NICE if busy else self.settings.process_nice
        with self._lock:
            self._in_flight += 1
        try:
            # at most Htj2k.EncodeTimeoutSeconds; a crashed or hung encoder is restarted
            encoded = self._encode(instance_id, source, nice, idle=busy)
        except OrthancCallError:
            return SKIPPED  # deleted while the encoder looked for its file
        except NotEncodable as exc:
            self._store.record(instance_id, "", SKIPPED, error=exc.reason, flush=False)
            return SKIPPED
        except (VerificationError, MemoryError, Exception) as exc:  # noqa: BLE001 - never lose the original
            self._host.log_warning(f"NeuroNova HTJ2K: no rendition for {instance_id}: {type(exc).__name__}: {exc}")
            self._store.record(instance_id, "", FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], flush=False)
            return FAILED
        finally:
            with self._lock:
                self._in_flight -= 1
        self.clock.add("encode_in_process", encoded.seconds)
        self.clock.since("encode", clock)
        with self._admission:
            if self.ingest_busy():  # storing writes to Orthanc's index: after the ingest
                self._held[instance_id] = encoded
                self._held_bytes += len(encoded.rendition.data)
                return _HELD
        return self._store_rendition(instance_id, encoded)

    def _source(self, instance_id: str) -> bytes | StoredFile:
        """A file for the encoder processes (:mod:`.originals`); the bytes themselves when
        encoding in this process (tests)."""
        if self._originals is None:
            return self._host.rest_get(f"/instances/{instance_id}/file")
        return self._originals.source(instance_id)

    def _encode(self, instance_id: str, source: bytes | StoredFile, nice: int, *, idle: bool = False) -> Encoded:
        if self._pool is None or self._originals is None or not isinstance(source, StoredFile):
            return encode_job(source)
        folder = self._originals.exchange
        try:
            try:
                encoded: Encoded = self._pool.run(encode_job, source, nice, folder, idle)
            except SourceUnavailable as exc:  # not the file Orthanc's index describes: the bytes, then
                self._host.log_info(f"NeuroNova HTJ2K: {instance_id}: original read through Orthanc: {exc}")
                source = self._originals.copy(instance_id)
                encoded = self._pool.run(encode_job, source, nice, folder, idle)
            return encoded.collected()
        finally:
            self._originals.done(source)

    def _store_rendition(self, instance_id: str, encoded: Encoded) -> str:
        clock = time.perf_counter()
        rendition = encoded.rendition
        try:
            self._host.rest_put(f"/instances/{instance_id}/attachments/{self.settings.attachment}", rendition.data)
        except OrthancCallError as exc:
            # deleted meanwhile, most likely; anything else is recorded, and the original stays served
            self._store.record(instance_id, encoded.sop_uid, FAILED, error=f"storing the attachment failed: {exc}",
                               flush=False)
            return FAILED
        clock = self.clock.since("store", clock)
        self._store.record(instance_id, encoded.sop_uid, DONE, transfer_syntax=rendition.source_transfer_syntax,
                           original_bytes=rendition.original_pixel_bytes, rendition_bytes=rendition.encoded_bytes,
                           frames=rendition.frames, encode_seconds=rendition.encode_seconds, flush=False)
        self.clock.since("record", clock)
        for callback in self._on_stored:
            callback(rendition.study_instance_uid)
        with self._lock:
            self.encoded_count += 1
            self.encode_seconds_total += rendition.encode_seconds
            self.last_stored_at = time.time()
        return DONE

    # -- visibility -----------------------------------------------------------------------

    def average_encode_ms(self) -> float:
        with self._lock:
            return self.encode_seconds_total / self.encoded_count * 1000 if self.encoded_count else 0.0

    def originals_read(self) -> dict[str, int]:
        """Originals the encoders read from Orthanc's storage folder, and through its REST API."""
        return dict(self._originals.read) if self._originals is not None else {"storage": 0, "rest": 0}

    def restarts(self) -> int:
        return self._pool.restarts if self._pool is not None else 0

    def _publish_metrics_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_metrics >= _METRICS_EVERY:
            self._last_metrics = now
            self.publish_metrics()

    def publish_metrics(self) -> None:
        with self._lock:
            count, seconds, in_flight = self.encoded_count, self.encode_seconds_total, self._in_flight
        self._host.set_metric("neuronova_htj2k_encoded_total", count)
        self._host.set_metric("neuronova_htj2k_encode_seconds_total", seconds)
        self._host.set_metric("neuronova_htj2k_queue", self.pending())
        self._host.set_metric("neuronova_htj2k_in_flight", in_flight)
        self._host.set_metric("neuronova_htj2k_trailing_ingest", 1.0 if self.ingest_busy() else 0.0)
        self._host.set_metric("neuronova_htj2k_encoder_restarts", self.restarts())

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        if self._pool is not None:
            self._pool.shutdown()
        if self._originals is not None:
            self._originals.close()
