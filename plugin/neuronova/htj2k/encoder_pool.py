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
import dataclasses
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import exchange
from .exchange import StoredFile
from .settings import Settings
from .workers import SupervisedPool

if TYPE_CHECKING:
    from .codec import Rendition


@dataclass(frozen=True)
class Encoded:
    """What an encoder process answers for one instance."""

    rendition: Rendition  # its ``data`` is empty while it waits in ``data_path``
    sop_uid: str
    seconds: float  # wall time in the encoder process (read, parse, encode, verify, package)
    data_path: str | None = None  # the rendition file, written into the exchange folder

    def collected(self) -> Encoded:
        """With the rendition's bytes in memory (the exchange file is removed)."""
        if self.data_path is None:
            return self
        data = exchange.take(self.data_path)
        return dataclasses.replace(self, rendition=dataclasses.replace(self.rendition, data=data), data_path=None)


def encode_job(original: bytes | StoredFile, nice: int | None = None, out_folder: str | None = None,
               idle: bool = False) -> Encoded:
    """Runs in an encoder process: one original in, one verified rendition out (or the
    codec's ``NotEncodable`` / ``VerificationError``; :class:`.exchange.SourceUnavailable` when
    a stored file is not the attachment's content). ``nice``: the process's priority for
    this job (``ProcessNice``; 19 while the ingest is busy, where the system cannot raise it
    again: raising needs root, or RLIMIT_NICE); ``idle``: the job runs only on CPU nothing
    else wants (:func:`set_priority`). With ``out_folder`` the rendition is written there and
    only its description goes back through the pipe."""
    started = time.perf_counter()
    from .codec import encode_rendition

    if nice is not None:
        set_priority(nice, idle)
    data = original.read() if isinstance(original, StoredFile) else original
    rendition = encode_rendition(data)
    path = None
    if out_folder is not None:
        path = exchange.write(out_folder, rendition.data, ".dcm")
        rendition = dataclasses.replace(rendition, data=b"")
    # the SOP Instance UID is read by the codec (no REST call in Orthanc's process for it)
    return Encoded(rendition, rendition.sop_instance_uid, time.perf_counter() - started, path)


def set_priority(nice: int, idle: bool) -> None:
    """Linux's SCHED_IDLE while ``idle`` (the ingest is busy), else the normal policy at
    ``nice``. Why not nice 19 alone: a nice-19 task still gets about 1.5 % of a contended core
    per task and preempts at wake-up like any other; a SCHED_IDLE one runs only when its core
    has nothing else to run, so renditions trailing an ingest take what the ingest leaves.
    Leaving SCHED_IDLE for SCHED_OTHER is allowed unprivileged (the nice value stays within
    RLIMIT_NICE). Both calls act on the calling thread, which is the one running the job."""
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not Linux
        if os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


# How often an encoder process checks that Orthanc is still its parent.
ORPHAN_CHECK_SECONDS = 1.0


def _start_process(nice: int, orthanc: int) -> None:
    """Initializer of each encoder process: yield the CPU, load the codecs once, and end with
    Orthanc (``orthanc``: its PID, given by Orthanc: read here it could already be init's)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    threading.Thread(target=_exit_when_orphaned, args=(orthanc,), name="neuronova-orphan-watch",
                     daemon=True).start()
    from . import codec  # noqa: F401 - imagecodecs, pydicom, numpy: loaded before the first job


def _exit_when_orphaned(parent: int) -> None:
    """An encoder whose Orthanc was killed (``kill -9``, a crash) must not wait for its next
    job for ever. The end of its job pipe tells it (workers.py), as long as no other process
    holds Orthanc's end; this is the second line (orphans were once left idle after a node's
    ``kill -9``, with ProcessPoolExecutor): its parent changes when it is orphaned."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def encoder_pool(settings: Settings, *, warm: bool = True) -> SupervisedPool | None:
    """The supervised pool of ``settings.processes`` encoder processes (None: encode in the
    calling thread, for tests only), started in the background when ``warm``."""
    if settings.processes == 0:
        return None
    context = multiprocessing.get_context("spawn")
    context.set_executable(settings.python)
    pool = SupervisedPool(settings.processes, settings.encode_timeout, context, _start_process,
                          (settings.process_nice, os.getpid()))
    if warm:
        threading.Thread(target=_warm, args=(pool, settings.processes), name="neuronova-htj2k-warm",
                         daemon=True).start()
    return pool


def _warm(pool: SupervisedPool, processes: int) -> None:
    """Start every encoder process now (a pool starts a slot's process on its first job)."""
    threads = [threading.Thread(target=_ping, args=(pool,), daemon=True) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _ping(pool: SupervisedPool) -> None:
    # a pool that cannot start reports it on the first real job (recorded as its failure)
    with contextlib.suppress(Exception):
        pool.run(_ready)
