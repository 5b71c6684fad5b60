"""The encoder processes: where third-party codec code reads stored data, outside Orthanc.

Encoding holds the GIL for a few milliseconds of pydicom and NumPy work per frame, which
would delay Orthanc's request threads (the gate's filter needs the GIL); separate processes
keep it out of Orthanc's interpreter altogether, and a decoder that crashes or hangs there
costs its instance a failed rendition, not the server (:mod:`.workers` supervises them).

Orthanc embeds Python, so ``sys.executable`` is Orthanc itself: an interpreter is spawned
explicitly (children receive the plugin's ``sys.path``, venv first). The processes run
``nice``: they get the CPU that ingest and serving leave, which is all of it when Orthanc is
idle. They are started, and have loaded the codecs, before the first instance arrives
(measured: a cold pool cost the first encodes of an ingest over a second each).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .settings import Settings
from .workers import SupervisedPool

if TYPE_CHECKING:
    from .codec import Rendition


@dataclass(frozen=True)
class Encoded:
    """What an encoder process answers for one instance."""

    rendition: Rendition
    sop_uid: str
    seconds: float  # wall time in the encoder process (parse, encode, verify, package)


def encode_job(original: bytes, nice: int | None = None) -> Encoded:
    """Runs in an encoder process: one original in, one verified rendition out (or the
    codec's ``NotEncodable`` / ``VerificationError``). ``nice``: the process's priority for
    this job (19 while the ingest is busy; back to ``ProcessNice`` after, where the system
    allows raising a priority again: as root, or within RLIMIT_NICE)."""
    started = time.perf_counter()
    from .codec import encode_rendition

    if nice is not None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    rendition = encode_rendition(original)
    # read by the codec (no REST call in Orthanc's process per instance for it)
    return Encoded(rendition, rendition.sop_instance_uid, time.perf_counter() - started)


def _start_process(nice: int) -> None:
    """Initializer of each encoder process: yield the CPU, load the codecs once."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    from . import codec  # noqa: F401 - imagecodecs, pydicom, numpy: loaded before the first job


def _ready() -> int:
    return os.getpid()


def encoder_pool(settings: Settings, *, warm: bool = True) -> SupervisedPool | None:
    """The supervised pool of ``settings.processes`` encoder processes (None: encode in the
    calling thread, for tests only), started in the background when ``warm``."""
    if settings.processes == 0:
        return None
    context = multiprocessing.get_context("spawn")
    context.set_executable(settings.python)

    def factory(processes: int = settings.processes) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(processes, mp_context=context, initializer=_start_process,
                                   initargs=(settings.process_nice,))

    pool = SupervisedPool(factory, settings.encode_timeout, single_factory=lambda: factory(1))
    if warm:
        threading.Thread(target=_warm, args=(pool, settings.processes), name="neuronova-htj2k-warm",
                         daemon=True).start()
    return pool


def _warm(pool: SupervisedPool, processes: int) -> None:
    """Start every encoder process now (a pool spawns its processes as jobs arrive)."""
    threads = [threading.Thread(target=_ping, args=(pool,), daemon=True) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _ping(pool: SupervisedPool) -> None:
    # a pool that cannot start reports it on the first real job (recorded as its failure)
    with contextlib.suppress(Exception):
        pool.run(_ready)
