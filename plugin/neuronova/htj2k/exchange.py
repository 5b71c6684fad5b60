"""Files between Orthanc's process and the encoder processes, instead of bytes through pipes.

Seen with py-spy on Orthanc and its encoders (issue 12): handing a 0.5 MB original to an
encoder and its 115 kB rendition back through :class:`concurrent.futures.ProcessPoolExecutor`
kept the encoders waiting longer than they encoded. The pipes hold 64 kB, and every chunk
waits for one of the executor's threads in Orthanc's process to get the GIL back (shared with
the pipeline's workers and Orthanc's request threads): the encoders sat in ``write`` and on
the result queue's lock. So only small messages cross the pipes now: the
encoder reads the original from Orthanc's storage folder itself (:class:`StoredFile`, checked
against the attachment's size and MD5) or from a copy written here, and writes the rendition
into this folder; the pipeline reads it back with one ``read`` (the GIL released) and removes it.

The folder is private to one Orthanc process (its pid in the name), in ``/dev/shm`` where that
exists (memory, no disk I/O), removed when the pipeline stops; folders of processes that are
gone (``kill -9``) are removed when the next one starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_PREFIX = "neuronova-htj2k-"


class SourceUnavailable(Exception):
    """The original could not be read from the storage folder as Orthanc stored it (another
    storage area, compressed storage, deleted meanwhile): the pipeline hands the bytes over."""


@dataclass(frozen=True)
class StoredFile:
    """An original the encoder reads itself. ``md5`` (Orthanc's UncompressedMD5) for a file
    of Orthanc's storage folder, proving it is the attachment's content; None for a copy the
    pipeline wrote from the bytes Orthanc gave it.

    Why the MD5 (0.75 ms of a 0.5 MB slice) and not the file's own UIDs (~0.04 ms with the
    gate's header_tags): Orthanc checks the MD5 whenever it reads a file from disk and refuses
    a corrupted one (docs/runtime-facts.md). A rendition of a file that has the instance's UIDs
    but other pixels would show what Orthanc itself will not serve."""

    path: str
    size: int
    md5: str | None = None

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as file:  # read only: originals are never modified
                data = file.read(self.size + 1)
        except OSError as exc:
            raise SourceUnavailable(f"{self.path}: {exc}") from exc
        if len(data) != self.size:
            raise SourceUnavailable(f"{self.path}: {len(data)} bytes, the attachment has {self.size}")
        if self.md5 is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != self.md5.lower():
            raise SourceUnavailable(f"{self.path}: not the attachment's content (MD5 differs)")
        return data


def base_folder() -> str:
    """Memory-backed when the system has it (the rendition files live for milliseconds)."""
    shm = "/dev/shm"  # noqa: S108 - the folder made in it is private (mkdtemp: mode 0700)
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def create(base: str | None = None) -> str:
    """A new private folder for this process; stale ones of dead processes are removed."""
    parent = base or base_folder()
    _remove_stale(parent)
    return tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent)


def remove(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def write(folder: str, data: bytes, suffix: str) -> str:
    """Write ``data`` to a new file of ``folder``; returns its path."""
    descriptor, path = tempfile.mkstemp(suffix=suffix, dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
    except BaseException:
        discard(path)
        raise
    return path


def take(path: str) -> bytes:
    """The content of a file of the folder, which is removed."""
    try:
        with open(path, "rb") as file:
            return file.read()
    finally:
        discard(path)


def discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_stale(parent: str) -> None:
    for folder in Path(parent).glob(f"{_PREFIX}*-*"):
        pid = folder.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to clean
    return True
