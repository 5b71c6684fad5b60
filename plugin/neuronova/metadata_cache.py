"""A cache of WADO-RS metadata answers, checked against the study's LastUpdate.

Generating study/series metadata is the DICOMweb plugin's heaviest read, and orthanc-python
4.0 holds the GIL during internal calls (docs/runtime-facts.md), so a cold answer blocks
other Python work. Viewers ask the same metadata again and again; a hit costs one light
look-up of the study's LastUpdate, so a study that changes is never served stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class MetadataCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str], version: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: tuple[str, str], version: str, body: bytes) -> None:
        if len(body) > self._max_bytes // 4:
            return  # one huge study must not evict everything else
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[key] = (version, body)
            self._bytes += len(body)
            while self._bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= len(evicted)
