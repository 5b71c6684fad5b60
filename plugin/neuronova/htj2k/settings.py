"""Configuration of the HTJ2K renditions: the ``NeuroNova.Htj2k`` section."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import option
from ..errors import ConfigError


@dataclass(frozen=True)
class Settings:
    enabled: bool  # encode new instances (serving existing renditions never stops)
    workers: int  # threads that fetch, hand over to the encoders and store; 0: two per core
    # encoder processes (no GIL contention with Orthanc's threads; third-party decoders run there,
    # never in Orthanc's process); 0: encode in the threads, inside Orthanc (for tests, not production)
    processes: int
    python: str  # interpreter that runs the encoder processes (they get the plugin's sys.path)
    encode_timeout: float  # seconds one instance may take in an encoder process before it is killed
    worker_nice: int  # the pipeline's threads (fetch, store) yield the CPU to Orthanc's ingest and HTTP threads
    process_nice: int  # the encoder processes once the ingest pauses (19 while it is busy)
    ingest_quiet: float  # seconds without a new instance after which the ingest counts as paused
    jobs_while_ingesting: int  # instances being encoded at most while the ingest is busy (renditions trail)
    hold_bytes: int  # renditions encoded during a busy ingest wait in memory (this much) to be stored after it
    attachment: str  # the user content type declared in Orthanc's "UserContentType"
    cache_bytes: int  # in-memory cache of rendition and original files being served
    backfill_batch: int
    claim_lease_seconds: float = 30.0  # claims.py: how long a dead node's renditions wait for a taker
    # Orthanc's StorageDirectory, where the encoders read originals themselves (exchange.py);
    # None: no such folder (compressed storage), originals go through Orthanc's REST API
    storage_directory: str | None = None


def embedded_python() -> str:
    """The interpreter of the Python that Orthanc's plugin embeds (sys.executable is Orthanc
    itself there): Debian's /usr/bin/pythonX.Y of the same version."""
    return f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"


def storage_directory(orthanc_config: Mapping[str, Any]) -> str | None:
    """Where Orthanc's default storage area keeps the files (Orthanc's own default when the
    option is absent, relative to its working directory), unless it compresses them. A
    storage plugin may keep them elsewhere: every file read there is checked against the
    attachment's MD5 (exchange.py), and /system says whether such a plugin is loaded."""
    if orthanc_config.get("StorageCompression", False):
        return None
    # not checked for existence: Orthanc creates the folder after loading its plugins
    return os.path.abspath(os.path.expandvars(str(orthanc_config.get("StorageDirectory", "OrthancStorage"))))


def parse(raw: Mapping[str, Any], orthanc_config: Mapping[str, Any] | None = None) -> Settings:
    settings = Settings(
        enabled=option(raw, "Enabled", bool, True),
        workers=option(raw, "Workers", int, 0) or 2 * (os.cpu_count() or 1),
        processes=option(raw, "Processes", int, os.cpu_count() or 1),
        python=option(raw, "PythonExecutable", str, embedded_python()),
        encode_timeout=float(option(raw, "EncodeTimeoutSeconds", int, 600)),
        worker_nice=option(raw, "WorkerNice", int, 10),
        process_nice=option(raw, "ProcessNice", int, 10),
        ingest_quiet=option(raw, "IngestQuietMilliseconds", int, 150) / 1000,
        jobs_while_ingesting=option(raw, "JobsWhileIngesting", int, 0),
        hold_bytes=option(raw, "HoldMegabytes", int, 64) * 1024 * 1024,
        attachment=option(raw, "Attachment", str, "htj2k"),
        cache_bytes=option(raw, "CacheMegabytes", int, 256) * 1024 * 1024,
        backfill_batch=option(raw, "BackfillBatch", int, 500),
        claim_lease_seconds=option(raw, "ClaimLeaseSeconds", float, 30.0),
        storage_directory=None if orthanc_config is None else storage_directory(orthanc_config),
    )
    if not 1 <= settings.workers <= 64:
        raise ConfigError("Htj2k.Workers must be between 1 and 64 (0: two per core)")
    if not 0 <= settings.processes <= 64:
        raise ConfigError("Htj2k.Processes must be between 0 and 64")
    if settings.processes and not os.access(settings.python, os.X_OK):
        raise ConfigError(f"Htj2k.PythonExecutable {settings.python} is not an executable")
    if not 1 <= settings.encode_timeout <= 86400:
        raise ConfigError("Htj2k.EncodeTimeoutSeconds must be between 1 and 86400")
    if not 0 <= settings.worker_nice <= 19:
        raise ConfigError("Htj2k.WorkerNice must be between 0 and 19")
    if not 0 <= settings.process_nice <= 19:
        raise ConfigError("Htj2k.ProcessNice must be between 0 and 19")
    if not 0 <= settings.ingest_quiet <= 60:
        raise ConfigError("Htj2k.IngestQuietMilliseconds must be between 0 and 60000")
    if not 0 <= settings.jobs_while_ingesting <= settings.workers:
        raise ConfigError("Htj2k.JobsWhileIngesting must be between 0 and Htj2k.Workers")
    if not 0 <= settings.hold_bytes <= 4096 * 1024 * 1024:
        raise ConfigError("Htj2k.HoldMegabytes must be between 0 and 4096")
    if not settings.attachment.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("Htj2k.Attachment must be the name of a UserContentType")
    if settings.backfill_batch < 1:
        raise ConfigError("Htj2k.BackfillBatch must be positive")
    if not 1.0 <= settings.claim_lease_seconds <= 3600.0:
        raise ConfigError("Htj2k.ClaimLeaseSeconds must be between 1 and 3600")
    return settings
