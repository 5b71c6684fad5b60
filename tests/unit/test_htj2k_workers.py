"""The supervised worker pool: a crashing or hanging job costs that job an error, the other
jobs and the pool go on."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from neuronova.htj2k.workers import SupervisedPool, WorkerFailed


def double(value: int) -> int:
    return 2 * value


def crash(_value: int) -> int:
    faulthandler.disable()  # pytest's fault handler would print this (expected) crash
    os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder's buffer overrun does to its process
    return 0


def hang(_value: int) -> int:
    time.sleep(3600)
    return 0


def slowly_double(value: int) -> int:
    time.sleep(0.5)
    return 2 * value


def pool(timeout: float = 30.0, workers: int = 1) -> SupervisedPool:
    return SupervisedPool(workers, timeout, multiprocessing.get_context("fork"))


def fail(message: str) -> int:
    raise FileNotFoundError(message)  # an OSError of the job's own, not a broken pipe


def test_jobs_run_in_worker_processes() -> None:
    workers = pool()
    try:
        assert workers.run(double, 21) == 42
        assert workers.run(os.getpid) != os.getpid()
    finally:
        workers.shutdown()


def test_a_crashing_job_fails_alone_and_the_pool_is_restarted() -> None:
    workers = pool()
    try:
        with pytest.raises(WorkerFailed, match="died"):
            workers.run(crash, 1)
        assert workers.restarts == 1  # its process, and nothing else
        assert workers.run(double, 4) == 8  # the next job is served by a fresh process
    finally:
        workers.shutdown()


def test_a_hanging_job_is_killed_after_the_timeout() -> None:
    workers = pool(timeout=1.0)
    try:
        with pytest.raises(WorkerFailed, match="longer than 1 s"):
            workers.run(hang, 1)
        assert workers.restarts == 1
        assert workers.run(double, 5) == 10
    finally:
        workers.shutdown()


def test_jobs_beside_a_crash_go_on_in_their_own_processes() -> None:
    workers = pool(workers=2)
    results: dict[str, object] = {}

    def innocent() -> None:
        try:
            results["innocent"] = workers.run(slowly_double, 3)
        except WorkerFailed as exc:
            results["innocent"] = exc

    try:
        thread = threading.Thread(target=innocent)
        thread.start()
        time.sleep(0.1)  # the innocent job is running when the other one crashes the pool
        with pytest.raises(WorkerFailed):
            workers.run(crash, 1)
        thread.join(timeout=60)
        assert results["innocent"] == 6 and workers.restarts == 1
    finally:
        workers.shutdown()


def test_a_job_raising_gives_its_exception_and_keeps_its_process() -> None:
    workers = pool()
    try:
        first = workers.run(os.getpid)
        with pytest.raises(FileNotFoundError, match="no such thing"):
            workers.run(fail, "no such thing")
        assert workers.run(os.getpid) == first and workers.restarts == 0
    finally:
        workers.shutdown()


def test_callers_wait_for_a_free_process() -> None:
    workers = pool(workers=2)
    try:
        threads = [threading.Thread(target=lambda: results.append(workers.run(slowly_double, 1))) for _ in range(5)]
        results: list[int] = []
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == [2] * 5
        assert len({workers.run(os.getpid) for _ in range(6)}) <= 2  # two processes served them all
    finally:
        workers.shutdown()


def test_the_timeout_counts_a_job_s_own_run_not_its_wait_for_a_process() -> None:
    """Two jobs of 0.5 s on one process with a 0.8 s timeout: the second waits 0.5 s for the
    process, then runs 0.5 s, and is not taken for a hung one."""
    workers = pool(timeout=0.8)
    results: list[int] = []
    try:
        threads = [threading.Thread(target=lambda: results.append(workers.run(slowly_double, 2))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == [4, 4] and workers.restarts == 0
    finally:
        workers.shutdown()


def test_shutdown_ends_the_processes_and_a_waiting_caller() -> None:
    workers = pool()
    pid = workers.run(os.getpid)
    outcome: list[str] = []

    def call(fn: Callable[[int], int]) -> None:
        try:
            outcome.append(str(workers.run(fn, 1)))
        except WorkerFailed as exc:
            outcome.append(exc.reason)

    busy = threading.Thread(target=call, args=(hang,))
    busy.start()
    time.sleep(0.3)  # the only process is busy hanging
    waiter = threading.Thread(target=call, args=(double,))
    waiter.start()
    time.sleep(0.2)  # and a second caller waits for it
    workers.shutdown()
    busy.join(timeout=30)
    waiter.join(timeout=30)
    assert outcome == ["the worker pool is stopped"] * 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _state(pid) not in ("gone", "Z"):
        time.sleep(0.05)
    assert _state(pid) in ("gone", "Z")  # killed (a zombie until multiprocessing reaps it)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_stopped_pool_refuses_jobs() -> None:
    workers = pool()
    workers.shutdown()
    with pytest.raises(WorkerFailed, match="stopped"):
        workers.run(double, 1)
    with pytest.raises(ValueError):
        pool(timeout=0)
    with pytest.raises(ValueError):
        pool(workers=0)
