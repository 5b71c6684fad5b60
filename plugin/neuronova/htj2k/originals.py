"""Where an encoder process gets each original from (see :mod:`.exchange` for why files).

1. Orthanc's storage folder, when Orthanc's own storage area keeps uncompressed files there
   (no storage plugin, no ``StorageCompression``: asked once from ``/system``): the file is
   ``StorageDirectory/uu/ui/uuid`` of ``GET /instances/{id}/attachments/dicom/info``, and the
   encoder checks its size and MD5 against that answer before reading a pixel of it.
2. Otherwise, or when that check fails, a copy of ``GET /instances/{id}/file`` written into
   the exchange folder, removed once the job is over. Orthanc's files are only ever read.
"""

from __future__ import annotations

import os
import threading

from ..host import Host
from . import exchange
from .exchange import StoredFile


class Originals:
    def __init__(self, host: Host, storage_directory: str | None) -> None:
        self._host = host
        self._storage_directory = storage_directory
        self._folder: str | bool | None = False  # the storage folder read; False: not asked yet
        self.exchange = exchange.create()  # renditions come back here, copies go here
        self._lock = threading.Lock()
        self.read = {"storage": 0, "rest": 0}  # where the encoders got originals from (stats)

    def source(self, instance_id: str) -> StoredFile:
        """What the encoder reads for the instance (OrthancCallError: the instance is gone)."""
        folder = self._storage_folder()
        if folder is not None:
            info = self._host.rest_get_json(f"/instances/{instance_id}/attachments/dicom/info")
            uuid, md5 = str(info.get("Uuid", "")), info.get("UncompressedMD5")
            size = int(info.get("UncompressedSize", -1))
            # FilesystemStorage's layout; a compressed file differs in size (and is never read)
            if len(uuid) > 4 and "/" not in uuid and md5 and size == int(info.get("CompressedSize", -2)):
                return StoredFile(os.path.join(folder, uuid[0:2], uuid[2:4], uuid), size, str(md5))
        return self.copy(instance_id)

    def copy(self, instance_id: str) -> StoredFile:
        """The bytes Orthanc gives, as a file of the exchange folder."""
        original = self._host.rest_get(f"/instances/{instance_id}/file")
        return StoredFile(exchange.write(self.exchange, original, ".orig"), len(original))

    def done(self, source: StoredFile) -> None:
        """The job that read ``source`` is over: counted, and a copy removed."""
        copied = source.md5 is None
        with self._lock:
            self.read["rest" if copied else "storage"] += 1
        if copied:
            exchange.discard(source.path)  # a copy written here, never Orthanc's file

    def close(self) -> None:
        exchange.remove(self.exchange)

    def _storage_folder(self) -> str | None:
        if self._folder is False:
            folder = self._storage_directory
            if folder is not None:
                system = self._host.rest_get_json("/system")
                if system.get("StorageAreaPlugin") or system.get("StorageCompression"):
                    folder = None
            self._folder = folder
        return self._folder if isinstance(self._folder, str) else None
