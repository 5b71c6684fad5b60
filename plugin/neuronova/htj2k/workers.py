"""Worker processes for third-party pixel code, supervised: a job that crashes its process or
runs past its time costs that one job an error, and the pool is started afresh.

Why: :class:`concurrent.futures.ProcessPoolExecutor` alone never recovers. A worker killed
by a decoder (SIGSEGV on a malformed codestream) breaks the pool for good, so every later
job fails with ``BrokenProcessPool``; a decoder that loops forever holds its caller forever.
Here the caller waits at most ``timeout`` seconds, a hung pool's processes are killed, and a
broken or killed pool is replaced before the next job (issue 9: decoders never take the
server, or the rendition service, down).

A restart also ends the jobs that shared the pool with the bad one, and a crash does not say
whose job caused it. So every job whose pool broke is tried once more, alone: retries run one
at a time in a separate one-process pool, where a crash can only be the crashing job's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerFailed(Exception):
    """The worker running the job died or ran out of time (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Broken(Exception):
    """The pool broke under the job (it may or may not be the job's fault)."""


class _Slot:
    """One replaceable process pool."""

    def __init__(self, factory: Callable[[], ProcessPoolExecutor]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self.restarts = 0
        self.closed = False

    def run(self, fn: Callable[..., T], args: tuple[Any, ...], timeout: float) -> T:
        pool, generation = self._current()
        try:
            future: Future[T] = pool.submit(fn, *args)
        except (BrokenProcessPool, RuntimeError) as exc:  # broken, or shut down by a restart
            self._restart(generation)
            raise _Broken() from exc
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            self._restart(generation, kill=True)
            raise WorkerFailed(f"the worker ran longer than {timeout:g} s and was restarted") from None
        except (BrokenProcessPool, CancelledError) as exc:  # cancelled: still queued when a restart came
            self._restart(generation)
            raise _Broken() from exc

    def _current(self) -> tuple[ProcessPoolExecutor, int]:
        with self._lock:
            if self.closed:
                raise WorkerFailed("the worker pool is stopped")
            if self._pool is None:
                self._pool = self._factory()
            return self._pool, self._generation

    def _restart(self, generation: int, *, kill: bool = False) -> None:
        """Drop the pool of ``generation`` unless that was done already; the next job starts
        a new one."""
        with self._lock:
            if self._pool is None or generation != self._generation:
                return
            old, self._pool = self._pool, None
            self._generation += 1
            self.restarts += 1
        if kill:
            _kill_processes(old)
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            self.closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class SupervisedPool:
    """``run(fn, *args)`` in a process of a pool made by ``factory`` (at most ``timeout``
    seconds); a job whose pool broke is retried alone in a one-process pool of
    ``single_factory`` (default: ``factory``)."""

    def __init__(self, factory: Callable[[], ProcessPoolExecutor], timeout: float,
                 single_factory: Callable[[], ProcessPoolExecutor] | None = None) -> None:
        if timeout <= 0:
            raise ValueError("a supervised pool needs a positive timeout")
        self.timeout = timeout
        self._main = _Slot(factory)
        self._alone = _Slot(single_factory or factory)
        self._alone_lock = threading.Lock()  # retries one at a time: a crash there is the job's own

    @property
    def restarts(self) -> int:
        return self._main.restarts + self._alone.restarts

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return self._main.run(fn, args, self.timeout)
        except _Broken:
            pass  # maybe another job's crash: try again alone
        with self._alone_lock:
            try:
                return self._alone.run(fn, args, self.timeout)
            except _Broken:
                raise WorkerFailed("the worker process died (killed by its decoder) and was restarted") from None

    def shutdown(self) -> None:
        self._main.shutdown()
        self._alone.shutdown()


def _kill_processes(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the pool's worker processes: a hung decoder does not answer anything else.
    (``_processes`` is CPython's; a pool without it has nothing left to kill.)"""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):  # already gone, or closed
            pass
