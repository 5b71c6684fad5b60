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
    worker_nice: int  # encoder threads yield the CPU to Orthanc's ingest and HTTP threads
    attachment: str  # the user content type declared in Orthanc's "UserContentType"
    cache_bytes: int  # in-memory cache of rendition and original files being served
    backfill_batch: int


def embedded_python() -> str:
    """The interpreter of the Python that Orthanc's plugin embeds (sys.executable is Orthanc
    itself there): Debian's /usr/bin/pythonX.Y of the same version."""
    return f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"


def parse(raw: Mapping[str, Any]) -> Settings:
    settings = Settings(
        enabled=option(raw, "Enabled", bool, True),
        workers=option(raw, "Workers", int, 0) or 2 * (os.cpu_count() or 1),
        processes=option(raw, "Processes", int, os.cpu_count() or 1),
        python=option(raw, "PythonExecutable", str, embedded_python()),
        encode_timeout=float(option(raw, "EncodeTimeoutSeconds", int, 600)),
        worker_nice=option(raw, "WorkerNice", int, 10),
        attachment=option(raw, "Attachment", str, "htj2k"),
        cache_bytes=option(raw, "CacheMegabytes", int, 256) * 1024 * 1024,
        backfill_batch=option(raw, "BackfillBatch", int, 500),
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
    if not settings.attachment.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("Htj2k.Attachment must be the name of a UserContentType")
    if settings.backfill_batch < 1:
        raise ConfigError("Htj2k.BackfillBatch must be positive")
    return settings
