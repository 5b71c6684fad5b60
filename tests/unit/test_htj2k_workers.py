"""The supervised worker pool: a crashing or hanging job costs that job an error, the pool goes on."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

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
    context = multiprocessing.get_context("fork")
    return SupervisedPool(lambda: ProcessPoolExecutor(workers, mp_context=context), timeout)


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
        assert workers.restarts == 2  # it crashed its pool, then (tried alone) the single one
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


def test_jobs_sharing_the_pool_with_a_crash_are_tried_again() -> None:
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
        assert results["innocent"] == 6
    finally:
        workers.shutdown()


def test_a_stopped_pool_refuses_jobs() -> None:
    workers = pool()
    workers.shutdown()
    with pytest.raises(WorkerFailed, match="stopped"):
        workers.run(double, 1)
    with pytest.raises(ValueError):
        pool(timeout=0)
