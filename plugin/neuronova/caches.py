"""The one cache type used on the request path: a bounded, thread-safe LRU map.

Bounded by entries, by bytes, or both. An entry may expire (``ttl``) and may carry a
``version``: ``get(key, version)`` misses when the entry was stored for another version
(e.g. a study's LastUpdate), so a changed resource is never answered from the cache.

>>> c: Cache[str, bytes] = Cache(max_bytes=100)
>>> c.put("a", b"x" * 10, version="v1")
>>> c.get("a", "v1"), c.get("a", "v2")
(b'xxxxxxxxxx', None)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Cache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    version: Hashable
    expires: float
    size: int


def _size(value: object) -> int:
    return len(value) if isinstance(value, bytes | bytearray | memoryview | str) else 1


class Cache(Generic[K, V]):
    def __init__(self, *, max_entries: int | None = None, max_bytes: int | None = None, ttl: float | None = None,
                 size_of: Callable[[V], int] = _size, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries is None and max_bytes is None:
            raise ValueError("a cache needs a bound (max_entries or max_bytes)")
        self._max_entries, self._max_bytes, self._ttl = max_entries, max_bytes, ttl
        self._size_of, self._clock = size_of, clock
        self._data: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K, version: Hashable = None) -> V | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry.version != version or entry.expires < self._clock():
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry.value

    def put(self, key: K, value: V, *, version: Hashable = None, ttl: float | None = None) -> None:
        size = self._size_of(value) if self._max_bytes is not None else 0
        if self._max_bytes is not None and size > self._max_bytes // 4:
            return  # one huge value must not evict everything else
        ttl = self._ttl if ttl is None else ttl
        expires = self._clock() + ttl if ttl is not None else float("inf")
        with self._lock:
            self._remove(key)
            self._data[key] = _Entry(value, version, expires, size)
            self._bytes += size
            while (self._max_entries is not None and len(self._data) > self._max_entries) or (
                    self._max_bytes is not None and self._bytes > self._max_bytes):
                self._bytes -= self._data.popitem(last=False)[1].size

    def drop(self, key: K) -> None:
        with self._lock:
            self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def _remove(self, key: K) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= old.size
