"""Originals read by the encoder processes from Orthanc's storage folder, renditions handed back
as files: only a file proven to be the attachment (size and MD5) is encoded, anything else
falls back to the bytes Orthanc's REST API gives, originals are never written, and no
exchange file is left behind. Real encoder processes (spawned interpreters)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neuronova.htj2k import exchange
from neuronova.htj2k import settings as htj2k_settings
from neuronova.htj2k.codec import encode_rendition
from neuronova.htj2k.exchange import SourceUnavailable, StoredFile
from neuronova.htj2k.service import Htj2kService
from neuronova.store import open_database
from tests.support.clock import ManualClock
from tests.support.dicom_factory import make_study

from .test_htj2k_pipeline import FakeOrthanc, wait_until


class StorageOrthanc(FakeOrthanc):
    """Keeps each instance as Orthanc's FilesystemStorage does: folder/xx/yy/uuid."""

    def __init__(self, files: dict[str, bytes], folder: Path, system: dict[str, Any] | None = None) -> None:
        super().__init__(files)
        self.folder = folder
        self.system = system or {"StorageAreaPlugin": None, "StorageCompression": False}
        self.uuids = {instance_id: f"{n:02x}{n:02x}aaaa-0000-4000-8000-{n:012x}" for n, instance_id in enumerate(files)}
        for instance_id in self.uuids:
            path = self.path(instance_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[instance_id])
        self.file_gets = 0

    def path(self, instance_id: str) -> Path:
        uuid = self.uuids[instance_id]
        return self.folder / uuid[0:2] / uuid[2:4] / uuid

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        if uri.endswith("/file"):
            self.file_gets += 1
        return super().rest_get(uri, after_plugins)

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if uri == "/system":
            return self.system
        parts = uri.strip("/").split("/")
        if parts[2:] == ["attachments", "dicom", "info"] and parts[1] in self.files:
            data = self.files[parts[1]]
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            return {"Uuid": self.uuids[parts[1]], "UncompressedSize": len(data), "CompressedSize": len(data),
                    "UncompressedMD5": md5, "CompressedMD5": md5, "ContentType": 1}
        return super().rest_get_json(uri, after_plugins)


@pytest.fixture
def files() -> dict[str, bytes]:
    study = make_study("CT_small.dcm", patient_id="P-2", patient_name="EX^CHANGE", slices=3)
    return {f"id-{n}": blob for n, blob in enumerate(study.files())}


def run(tmp_path: Path, host: StorageOrthanc) -> dict[str, Any]:
    raw = {"Processes": 1, "Workers": 2, "PythonExecutable": sys.executable, "IngestQuietMilliseconds": 0}
    settings = htj2k_settings.parse(raw, {"StorageDirectory": str(host.folder)})
    svc = Htj2kService(settings, host, open_database(f"sqlite:///{tmp_path}/store.sqlite"), clock=ManualClock())
    try:
        for instance_id in host.files:
            svc.pipeline.submit(instance_id)
        wait_until(lambda: svc.stats()["with_rendition"] + svc.stats()["failed"] == len(host.files), 120)
        originals = svc.pipeline._originals  # what the test checks: nothing left behind
        assert originals is not None and os.listdir(originals.exchange) == []
        folder = originals.exchange
        return svc.stats()
    finally:
        svc.stop()
        assert not os.path.exists(folder)


def renditions_are_the_codecs(host: StorageOrthanc, originals: dict[str, bytes]) -> None:
    for instance_id, original in originals.items():
        assert host.attachments[instance_id] == encode_rendition(original).data
        assert host.path(instance_id).read_bytes() == original == host.files[instance_id]  # never written


def test_the_encoders_read_originals_from_the_storage_folder(tmp_path: Path, files: dict[str, bytes]) -> None:
    host = StorageOrthanc(files, tmp_path / "storage")
    stats = run(tmp_path, host)
    assert stats["with_rendition"] == 3 and stats["originals_read"] == {"storage": 3, "rest": 0}
    assert host.file_gets == 0
    renditions_are_the_codecs(host, files)


def test_a_stored_file_that_is_not_the_attachment_is_never_encoded(tmp_path: Path, files: dict[str, bytes]) -> None:
    host = StorageOrthanc(files, tmp_path / "storage")
    damaged = bytearray(files["id-1"])
    damaged[-1] ^= 0xFF  # same size, other pixels: only the MD5 tells
    host.path("id-1").write_bytes(bytes(damaged))
    host.path("id-2").unlink()  # e.g. kept by a storage plugin elsewhere
    stats = run(tmp_path, host)
    assert stats["with_rendition"] == 3 and stats["originals_read"] == {"storage": 1, "rest": 2}
    assert host.file_gets == 2
    for instance_id, original in files.items():  # every rendition is the original's, from Orthanc's bytes
        assert host.attachments[instance_id] == encode_rendition(original).data
    assert host.path("id-1").read_bytes() == bytes(damaged)  # left as it was


def test_with_a_storage_plugin_originals_come_through_orthanc(tmp_path: Path, files: dict[str, bytes]) -> None:
    host = StorageOrthanc(files, tmp_path / "storage", system={"StorageAreaPlugin": "s3", "StorageCompression": False})
    stats = run(tmp_path, host)
    assert stats["originals_read"] == {"storage": 0, "rest": 3} and host.file_gets == 3
    renditions_are_the_codecs(host, files)


def test_compressed_storage_is_not_read_directly() -> None:
    assert htj2k_settings.storage_directory({"StorageCompression": True, "StorageDirectory": "/x"}) is None
    assert htj2k_settings.storage_directory({"StorageDirectory": "/x/y"}) == "/x/y"
    assert htj2k_settings.parse({}).storage_directory is None  # no Orthanc configuration: REST only


def test_a_stored_file_proves_its_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    md5 = hashlib.md5(b"abcdef", usedforsecurity=False).hexdigest()
    assert StoredFile(str(path), 6, md5).read() == b"abcdef"
    assert StoredFile(str(path), 6).read() == b"abcdef"
    other = hashlib.md5(b"abcdeg", usedforsecurity=False).hexdigest()
    for wrong in (StoredFile(str(path), 6, other), StoredFile(str(path), 5, md5), StoredFile(str(path), 7, md5),
                  StoredFile(str(tmp_path / "none"), 6, md5)):
        with pytest.raises(SourceUnavailable):
            wrong.read()


def test_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f"neuronova-htj2k-{int(dead.stdout)}-x"
    alive = tmp_path / f"neuronova-htj2k-{os.getppid()}-y"
    other = tmp_path / "something-else"
    for folder in (stale, alive, other):
        folder.mkdir()
    mine = exchange.create(str(tmp_path))
    try:
        assert not stale.exists() and alive.exists() and other.exists() and os.path.isdir(mine)
        path = exchange.write(mine, b"x" * 10, ".dcm")
        assert exchange.take(path) == b"x" * 10 and not os.path.exists(path)
    finally:
        exchange.remove(mine)
