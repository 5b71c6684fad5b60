"""Worker processes for third-party pixel code, supervised: a job that crashes its process or
runs past its time costs that one job an error, and its process is started afresh.

Each process serves one job at a time over a pipe of its own, and a caller holds the process
for the whole job. So a process that dies (SIGSEGV in a decoder on a malformed codestream)
can only have died of the job it was running: that job fails, the others go on (issue 9:
decoders never take the server, or the rendition service, down). A job that runs past
``timeout`` seconds has its process killed. The next job on that slot starts a new process.

Why not :class:`concurrent.futures.ProcessPoolExecutor` (used here before): one crashed
worker breaks the whole executor, every job sharing it fails and none can tell whose job it
was (they were retried one at a time in a second pool); and a job's timeout ran from its
submission, so a job queued behind a long one (a large multi-frame instance) could be taken
for a hung one and kill the pool. Here a job is one ``send`` and one ``recv`` on the caller's
own thread, which waits for the answer in ``poll`` without the GIL; the CPU is about what the
executor's manager and feeder threads used (docs/runtime-facts.md).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerFailed(Exception):
    """The worker running the job died or ran out of time (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _serve(connection: Connection, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """A worker process: run each ``(fn, args)`` received, answer ``(True, result)`` or
    ``(False, exception)``; end when the parent's end of the pipe closes."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            fn, args = connection.recv()
        except (EOFError, OSError):
            return  # the pool was shut down, or Orthanc is gone
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = (False, exc)
        try:
            connection.send(reply)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception that does not pickle
            connection.send((False, RuntimeError(f"the worker's answer could not be sent: {exc!r}")))


class _Worker:
    """One process and the parent's end of its pipe."""

    def __init__(self, context: BaseContext, initializer: Callable[..., None] | None,
                 initargs: tuple[Any, ...]) -> None:
        self.connection, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child, initializer, initargs),  # type: ignore[attr-defined]
                                       name="neuronova-worker", daemon=True)
        self.process.start()
        child.close()  # the child's end lives in the child only: its death is an end of file here

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> tuple[bool, Any]:
        """``(True, fn(*args))`` or ``(False, the exception it raised)``, from the process;
        EOFError/OSError when the process died, TimeoutError when it is late."""
        self.connection.send((fn, args))
        if not self.connection.poll(timeout):
            raise TimeoutError
        answer: tuple[bool, Any] = self.connection.recv()
        return answer

    def stop(self, *, kill: bool = False) -> None:
        """Close the pipe (a healthy process then ends by itself) or kill the process."""
        if kill:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self.process.kill()
        self.connection.close()
        with contextlib.suppress(OSError, ValueError, AssertionError):
            self.process.join(5 if kill else 0)


class SupervisedPool:
    """``run(fn, *args)`` in one of ``processes`` processes of ``context`` (each started with
    ``initializer(*initargs)`` when its slot is first used), at most ``timeout`` seconds."""

    def __init__(self, processes: int, timeout: float, context: BaseContext,
                 initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> None:
        if timeout <= 0:
            raise ValueError("a supervised pool needs a positive timeout")
        if processes < 1:
            raise ValueError("a supervised pool needs a process")
        self.timeout = timeout
        self._context, self._initializer, self._initargs = context, initializer, initargs
        # Idle slots: a started worker, or None for a slot whose process starts on its next job.
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(processes):
            self._idle.put(None)
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self.restarts = 0  # processes replaced after a crash or a timeout
        self.closed = False

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        worker: _Worker | None = self._take()
        assert worker is not None
        try:
            ok, value = worker.call(fn, args, self.timeout)
        except (TimeoutError, EOFError, OSError) as exc:  # the process's failure, not the job's
            self._replace(worker)
            worker = None  # its slot starts a new process on its next job
            if self.closed:
                raise WorkerFailed("the worker pool is stopped") from None
            if isinstance(exc, TimeoutError):
                raise WorkerFailed(f"the worker ran longer than {self.timeout:g} s and was restarted") from None
            raise WorkerFailed("the worker process died (killed by its decoder) and was restarted") from None
        finally:
            self._give_back(worker)
        if ok:
            return value  # type: ignore[no-any-return]
        raise value  # the job's own exception (NotEncodable, OSError, ...): its process is fine

    def _take(self) -> _Worker:
        """An idle worker (started now if its slot has none); waits while every one is busy."""
        if self.closed:
            raise WorkerFailed("the worker pool is stopped")
        worker = self._idle.get()
        if self.closed:
            self._idle.put(worker)  # wakes the next waiter, which refuses too
            raise WorkerFailed("the worker pool is stopped")
        try:
            worker = worker or _Worker(self._context, self._initializer, self._initargs)
        except BaseException:
            self._idle.put(None)
            raise
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker | None) -> None:
        if worker is not None:
            with self._lock:
                self._busy.discard(worker)
            if self.closed:
                worker.stop()
        self._idle.put(None if worker is None or self.closed else worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker that died or hung (a hung decoder answers nothing else)."""
        with self._lock:
            self._busy.discard(worker)
            if not self.closed:
                self.restarts += 1
        worker.stop(kill=True)

    def shutdown(self) -> None:
        """Stop every process: idle ones now, busy ones killed (their jobs fail)."""
        self.closed = True
        with self._lock:
            busy = list(self._busy)
        for worker in busy:
            worker.stop(kill=True)
        while True:
            try:
                idle = self._idle.get_nowait()
            except queue.Empty:
                break
            if idle is not None:
                idle.stop()
        self._idle.put(None)  # a caller waiting for a slot wakes up and is refused
