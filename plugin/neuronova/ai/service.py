"""The AI service ``app.py`` wires: intake of stable studies, workers, leases, metrics.

Threads (all daemon: a non-daemon thread makes Orthanc hang at shutdown):

- Orthanc's change thread only calls :meth:`AiService.on_change`, which puts the event on
  an in-memory queue (no I/O, no lock held for long);
- ``neuronova-ai-intake`` reads those events: it records studies seen (NEW_STUDY,
  NEW_SERIES) and this node's instance arrivals (NEW_INSTANCE) in the store, and on
  STABLE_STUDY evaluates the rules and creates the jobs (idempotent: one job per model and
  study content). Orthanc's STABLE_STUDY is per node: a study is evaluated only once no node
  of the cluster has stored an instance of it for StableAge (the shared ``ai_arrivals``);
  until then the evaluation is deferred to the newest arrival + StableAge;
- ``neuronova-ai-worker-N`` claim due jobs and run them (``requests``, never
  ``orthanc.HttpPost``, which would hold the GIL for the whole inference);
- ``neuronova-ai-monitor`` re-queues what this node left running before a restart, renews
  the leases of running jobs, evaluates studies seen before a restart, publishes metrics.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError, HttpError, OrthancCallError
from ..host import Host
from ..store import Database
from . import retry
from .jobs import AUTO, MANUAL, Job, JobStore, NewJob, ensure_schema
from .rules import evaluate, series_for_model, study_content_key
from .settings import Settings
from .snapshot import load_study, load_study_by_uid, parent_study
from .tokens import TokenIssuer

STABLE, SEEN_STUDY, SEEN_SERIES, RECHECK = "stable", "seen-study", "seen-series", "recheck"
ARRIVAL, DEFERRED = "arrival", "deferred"
_SERIES_CACHE = 10_000  # series -> study of recent arrivals (one look-up per series, not per instance)
METRIC_PREFIX = "neuronova_ai_"


class Stats:
    """Counters of this process (published as metrics)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts = 0
        self.inference_count = 0
        self.inference_total = 0.0
        self.last_inference = 0.0
        self.last_job_latency = 0.0
        self.intake_errors = 0

    def attempt(self, inference_seconds: float | None) -> None:
        with self.lock:
            self.attempts += 1
            if inference_seconds is not None:
                self.inference_count += 1
                self.inference_total += inference_seconds
                self.last_inference = inference_seconds


class AiService:
    def __init__(self, settings: Settings, host: Host, db: Database, tokens: TokenIssuer, node_id: str,
                 backends: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.host = host
        self.node_id = node_id
        self.clock = clock
        ensure_schema(db)
        self.jobs = JobStore(db, clock)
        self.stats = Stats()
        self.disabled_reason = settings.disabled_reason
        self.backends: Mapping[str, Any] = {}
        if not self.disabled_reason:
            if backends is None:
                try:
                    from .clients import build_backends

                    backends = build_backends(settings.models)
                except ImportError as exc:
                    # AI is optional: a missing client library disables it, it does not close the gate.
                    self.disabled_reason = f"the inference client cannot be imported: {exc}"
                    backends = {}
                except ValueError as exc:
                    raise ConfigError(f"Ai.Models: {exc}") from exc
            self.backends = dict(backends)
        self._tokens = tokens
        self._intake: queue.SimpleQueue[tuple[str, str, float]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # Workers claim only after the monitor re-queued what this node left running: else
        # the recovery could take back a job a worker of this very start had just claimed
        # (same node id) and the job would run twice.
        self._recovered = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self._inflight: set[str] = set()  # lease owners of the attempts under way
        self._inflight_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._runner: Any = None
        # Intake thread only: evaluations waiting for the cluster's newest arrival + StableAge
        # (due, study id), their trigger times, and the series -> study look-ups of arrivals.
        self._deferred: list[tuple[float, str]] = []
        self._deferred_trigger: dict[str, float] = {}
        self._series_study: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return not self.disabled_reason

    @property
    def max_attempts(self) -> int:
        return self.settings.retry.max_attempts

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads (once). Called when Orthanc reports ORTHANC_STARTED, so that
        workers do not call the service before Orthanc's HTTP server (which the service
        reads the pixels from) is up."""
        with self._start_lock:
            if self._started or not self.enabled or self._stopping.is_set():
                return
            self._started = True
        from .runner import Runner

        self._runner = Runner(
            self.host, self.backends, self._tokens, self.settings.dicomweb_url,
            {name: m.remote_name for name, m in self.settings.models.items()}, self._stopping.is_set,
        )
        self._spawn("neuronova-ai-monitor", self._monitor)
        self._spawn("neuronova-ai-intake", self._intake_loop)
        for index in range(self.settings.workers):
            self._spawn(f"neuronova-ai-worker-{index + 1}", self._worker)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """Orthanc is stopping: hand running jobs back to the queue, stop the threads."""
        self._stopping.set()
        self._wake.set()
        self._intake.put(("stop", "", 0.0))
        with self._inflight_lock:
            inflight = set(self._inflight)
        for owner in inflight:
            try:
                self.jobs.release_owner(owner, "Orthanc stopped during the attempt")
            except Exception as exc:  # noqa: BLE001 - recovered at the next start anyway
                self.host.log_warning(f"NeuroNova AI: could not re-queue the job of {owner} at shutdown: {exc}")
        deadline = time.monotonic() + 2.0
        for thread in self._threads:
            # Workers blocked in an inference call are not waited for (daemon threads).
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- change events (Orthanc's change thread: enqueue only) ----------------------------

    def on_change(self, change: str, level: str, resource_id: str) -> None:
        if change == "ORTHANC_STARTED":
            self.start()
            return
        if not self.enabled:
            return
        kind = {"STABLE_STUDY": STABLE, "NEW_STUDY": SEEN_STUDY, "NEW_SERIES": SEEN_SERIES,
                "NEW_INSTANCE": ARRIVAL}.get(change)
        if kind is not None:
            self._intake.put((kind, resource_id, self.clock()))

    # -- intake --------------------------------------------------------------------------

    def intake_depth(self) -> int:
        return self._intake.qsize()

    def _intake_loop(self) -> None:
        while not self._stopping.is_set():
            timeout = self.settings.poll_seconds
            if self._deferred:
                timeout = min(timeout, max(0.0, self._deferred[0][0] - self.clock()))
            batch = self._due_deferred()
            try:
                batch.append(self._intake.get(timeout=timeout) if not batch else self._intake.get_nowait())
            except queue.Empty:
                if not batch:
                    continue
            while len(batch) < 1000:
                try:
                    batch.append(self._intake.get_nowait())
                except queue.Empty:
                    break
            try:
                self._intake_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the thread must survive; the studies stay pending
                self._intake_error("intake failed", exc)
                self._stopping.wait(1.0)

    def _intake_error(self, what: str, exc: Exception) -> None:
        with self.stats.lock:
            self.stats.intake_errors += 1
        self.host.log_error(f"NeuroNova AI: {what}: {type(exc).__name__}: {exc}")

    def _due_deferred(self) -> list[tuple[str, str, float]]:
        now = self.clock()
        due = []
        while self._deferred and self._deferred[0][0] <= now:
            _, study_id = heapq.heappop(self._deferred)
            if study_id in self._deferred_trigger:
                due.append((DEFERRED, study_id, self._deferred_trigger.pop(study_id)))
        return due

    def _defer(self, study_id: str, until: float, triggered_at: float) -> None:
        """Evaluate the study again at ``until`` (another node stored an instance recently)."""
        known = self._deferred_trigger.get(study_id)
        self._deferred_trigger[study_id] = triggered_at if known is None else min(known, triggered_at)
        heapq.heappush(self._deferred, (until, study_id))

    def _study_of_instance(self, instance_id: str) -> str | None:
        """Orthanc id of an instance's study: one call per instance, one more per new series."""
        try:
            series = str(self.host.rest_get_json(f"/instances/{instance_id}").get("ParentSeries", ""))
        except OrthancCallError as exc:
            if exc.status == 404:
                return None  # deleted meanwhile
            raise
        if not series:
            return None
        study = self._series_study.get(series)
        if study is None:
            study = parent_study(self.host, series)
            if study is None:
                return None
            if len(self._series_study) >= _SERIES_CACHE:
                self._series_study.clear()
            self._series_study[series] = study
        return study

    def _record_arrivals(self, arrivals: list[tuple[str, float]]) -> None:
        latest: dict[str, float] = {}
        for instance_id, at in arrivals:
            try:
                study = self._study_of_instance(instance_id)
            except Exception as exc:  # noqa: BLE001 - one lost arrival; the study's stable event still comes
                self._intake_error(f"cannot find the study of instance {instance_id}", exc)
                continue
            if study:
                latest[study] = max(at, latest.get(study, at))
        if latest:
            self.jobs.record_arrivals(self.node_id, latest)

    def _intake_batch(self, batch: list[tuple[str, str, float]]) -> None:
        seen: list[str] = []
        arrivals: list[tuple[str, float]] = []
        stable: dict[str, tuple[float, str]] = {}
        for kind, resource_id, at in batch:
            if kind == ARRIVAL:
                arrivals.append((resource_id, at))
            elif kind == SEEN_STUDY:
                seen.append(resource_id)
            elif kind == SEEN_SERIES:
                try:
                    study = parent_study(self.host, resource_id)
                except Exception as exc:  # noqa: BLE001 - one lost sighting; STABLE_STUDY still comes
                    self._intake_error(f"cannot find the study of series {resource_id}", exc)
                    continue
                if study:
                    seen.append(study)
            elif kind in (STABLE, RECHECK, DEFERRED) and (resource_id not in stable or at < stable[resource_id][0]):
                stable[resource_id] = (at, kind)
        # Arrivals first: a stable event in the same batch must see them.
        if arrivals:
            try:
                self._record_arrivals(arrivals)
            except Exception as exc:  # noqa: BLE001 - the stable events below are still handled
                self._intake_error("cannot record instance arrivals", exc)
        if seen:
            try:
                self.jobs.add_pending(dict.fromkeys(seen))
            except Exception as exc:  # noqa: BLE001 - the stable events below are still handled
                self._intake_error("cannot record studies seen", exc)
        for study_id, (at, kind) in stable.items():
            if self._stopping.is_set():
                return
            try:
                self.evaluate_study(study_id, at, require_stable=kind == RECHECK)
            except Exception as exc:  # noqa: BLE001 - the study stays pending and is looked at again
                self._intake_error(f"cannot evaluate study {study_id}", exc)

    def evaluate_study(self, study_id: str, triggered_at: float, require_stable: bool = False) -> list[Job]:
        """Create the jobs the rules give for a stable study (existing ones are kept).

        Stable means stable for the cluster: when some node (this one or another) stored an
        instance of the study less than StableAge ago, the evaluation is deferred to then. The
        nodes that evaluate the same content create the same job (its content key is unique in
        the store), so whichever evaluates first claims the analysis and the others find it."""
        study = load_study(self.host, study_id)
        if study is None:
            self.jobs.remove_pending(study_id)
            return []
        if require_stable and not study.is_stable:
            return []  # still receiving: Orthanc will report it stable later
        last_arrival = self.jobs.last_arrival(study_id)
        if last_arrival is not None and self.clock() - last_arrival < self.settings.stable_age_seconds:
            self._defer(study_id, last_arrival + self.settings.stable_age_seconds, triggered_at)
            return []
        created = []
        for match in evaluate(self.settings.rules, study, self.backends.keys()):
            job, is_new = self.jobs.create(NewJob(
                study_uid=study.uid, series_uid=match.series.uid, patient_id=study.patient_id, model=match.model,
                content_key=study_content_key(match.model, study), trigger=AUTO, rule=match.rule,
                created_by=f"rule:{match.rule}", triggered_at=triggered_at,
            ))
            if is_new:
                created.append(job)
                self.host.log_info(f"NeuroNova AI: job {job.id} ({job.model}) for study {job.study_uid}, "
                                   f"series {job.series_uid}, rule {match.rule}")
        self.jobs.remove_pending(study_id)
        if last_arrival is not None:
            self.jobs.forget_arrivals(study_id, last_arrival)
        if created:
            self._wake.set()
        return created

    # -- manual jobs (REST API) ------------------------------------------------------------

    def submit(self, study_uid: str, model: str, created_by: str, series_uid: str = "") -> tuple[Job, bool]:
        """A job asked for through the API; the same content and model give the same job."""
        if model not in self.settings.models:
            raise HttpError(400, f"unknown model {model!r} (known: {sorted(self.settings.models)})")
        if not self.enabled:
            raise HttpError(503, f"AI is disabled: {self.disabled_reason}")
        if model not in self.backends:
            raise HttpError(503, f"model {model!r} has no inference URL")
        study = load_study_by_uid(self.host, study_uid)
        if study is None:
            raise HttpError(404, "no such study")
        if series_uid:
            series = study.series_by_uid(series_uid)
            if series is None or series.is_ai_result:
                raise HttpError(422, "the series is not an image series of this study")
            rule = "manual"
        else:
            series, rule = series_for_model(self.settings.rules, study, model)
            if series is None:
                raise HttpError(422, "the study has no image series to analyse")
        job, created = self.jobs.create(NewJob(
            study_uid=study.uid, series_uid=series.uid, patient_id=study.patient_id, model=model,
            content_key=study_content_key(model, study), trigger=MANUAL, rule=rule, created_by=created_by,
            triggered_at=self.clock(),
        ))
        if created:
            self._wake.set()
        return job, created

    def retry(self, job_id: str, by: str) -> Job:
        job = self.jobs.retry(job_id, by)
        self._wake.set()
        return job

    # -- workers -------------------------------------------------------------------------

    def _idle_wait(self) -> None:
        timeout = self.settings.poll_seconds
        try:
            due = self.jobs.next_due()
        except Exception:  # noqa: BLE001 - the store is busy or down: poll later
            due = None
        if due is not None:
            timeout = min(timeout, max(0.01, due - self.clock()))
        self._wake.wait(timeout)
        self._wake.clear()

    def _worker(self) -> None:
        while not self._recovered.wait(self.settings.poll_seconds):
            if self._stopping.is_set():
                return
        while not self._stopping.is_set():
            try:
                if not self._work_once():
                    self._idle_wait()
            except Exception as exc:  # noqa: BLE001 - never let a worker die
                self.host.log_error(f"NeuroNova AI: worker error: {type(exc).__name__}: {exc}")
                self._stopping.wait(1.0)

    def _work_once(self) -> bool:
        """Claim and run one due job; False when there was none."""
        owner = f"{self.node_id}/{uuid.uuid4().hex[:16]}"
        # Registered before the claim: stop() hands back whatever this owner holds, even a
        # job claimed while it runs; and a claim that lands after stop() began is handed back
        # here (stop() sets the flag before it looks at the owners).
        with self._inflight_lock:
            self._inflight.add(owner)
        try:
            if self._stopping.is_set():
                return False  # stop() may have just handed a job back: do not take it again
            job = self.jobs.claim(owner, self.settings.lease_seconds)
            if job is None:
                return False
            if self._stopping.is_set():
                self.jobs.unclaim(job, owner)  # the attempt never started
                return True
            started = time.monotonic()
            outcome = self._runner.run(job)
        finally:
            with self._inflight_lock:
                self._inflight.discard(owner)
        self._record(job, owner, outcome, time.monotonic() - started)
        return True

    def _record(self, job: Job, owner: str, outcome: Any, duration: float) -> None:
        from .runner import INTERRUPTED, PERMANENT, SUCCEEDED

        self.stats.attempt(outcome.inference_seconds)
        if outcome.kind == INTERRUPTED or self._stopping.is_set():
            self.jobs.release(job.id, owner, outcome.error or "Orthanc stopped during the attempt")
            return
        if outcome.kind == SUCCEEDED:
            if self.jobs.succeed(job, owner, outcome.result, duration):
                with self.stats.lock:
                    self.stats.last_job_latency = self.clock() - job.triggered_at
                self.host.log_info(f"NeuroNova AI: job {job.id} succeeded (attempt {job.attempts})")
        elif outcome.kind == PERMANENT:
            self.jobs.fail(job, owner, outcome.error, duration)
            self.host.log_warning(f"NeuroNova AI: job {job.id} failed: {outcome.error}")
        else:
            decision = retry.after_transient(self.settings.retry, job.attempts, outcome.error, outcome.retry_after)
            if decision.retry_in is None:
                self.jobs.fail(job, owner, decision.reason, duration)
                self.host.log_warning(f"NeuroNova AI: job {job.id} failed: {decision.reason}")
            else:
                self.jobs.reschedule(job, owner, outcome.error, decision.retry_in, duration)
                self.host.log_info(f"NeuroNova AI: job {job.id} attempt {job.attempts} failed, retry in "
                                   f"{decision.retry_in:.1f} s: {outcome.error}")
        self.publish_metrics()

    # -- monitor -------------------------------------------------------------------------

    def _monitor(self) -> None:
        try:
            recovered = self.jobs.recover(self.node_id)
            if recovered:
                self.host.log_warning(f"NeuroNova AI: {recovered} job(s) interrupted by the last stop are queued again")
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 - their leases expire; they are claimed then
            self.host.log_error(f"NeuroNova AI: recovery failed: {exc}")
        finally:
            self._recovered.set()
        # Studies seen but never evaluated (Orthanc stopped before they became stable, or an
        # evaluation failed): Orthanc does not report them stable after a restart, so they
        # are looked at once StableAge has passed, and then every sweep period.
        sweep = max(60.0, 2 * self.settings.stable_age_seconds)
        next_sweep = time.monotonic() + self.settings.stable_age_seconds
        first_sweep = True
        last_renew = 0.0
        while not self._stopping.wait(min(self.settings.poll_seconds, self.settings.lease_seconds / 3)):
            try:
                now = time.monotonic()
                if now - last_renew >= self.settings.lease_seconds / 3:
                    with self._inflight_lock:
                        owners = list(self._inflight)
                    self.jobs.renew(owners, self.settings.lease_seconds)
                    last_renew = now
                if now >= next_sweep:
                    next_sweep = now + sweep
                    older = None if first_sweep else self.clock() - self.settings.stable_age_seconds - sweep
                    first_sweep = False
                    for study_id in self.jobs.pending(seen_before=older):
                        self._intake.put((RECHECK, study_id, self.clock()))
                self.publish_metrics()
            except Exception as exc:  # noqa: BLE001 - keep monitoring
                self.host.log_warning(f"NeuroNova AI: monitor: {type(exc).__name__}: {exc}")

    def counts(self) -> dict[str, int]:
        return self.jobs.counts()

    def publish_metrics(self) -> None:
        counts = self.jobs.counts()
        with self.stats.lock:
            stats = self.stats
            values = {
                "enabled": 1.0 if self.enabled else 0.0,
                "queue_depth": float(counts["queued"]),
                "jobs_running": float(counts["running"]),
                "jobs_succeeded": float(counts["succeeded"]),
                "jobs_failed": float(counts["failed"]),
                "attempts": float(counts["attempts"]),
                "intake_pending": float(self._intake.qsize()),
                "inference_latency_seconds": stats.last_inference,
                "inference_latency_avg_seconds": stats.inference_total / stats.inference_count
                if stats.inference_count else 0.0,
                "job_latency_seconds": stats.last_job_latency,
            }
        for name, value in values.items():
            self.host.set_metric(METRIC_PREFIX + name, value)

    def health(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False, "reason": self.disabled_reason}
        counts = self.jobs.counts()
        return {
            "enabled": True,
            "models": sorted(self.backends),
            "workers": self.settings.workers if self._started else 0,
            "queued": counts["queued"],
            "running": counts["running"],
            "failed": counts["failed"],
            "succeeded": counts["succeeded"],
        }
