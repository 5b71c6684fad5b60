"""WADO-RS metadata answers, cached per study while the study stays as it was.

Generating a study's metadata is the DICOMweb plugin's heaviest read (0.3 s for 48 MR slices,
0.6 s for 300 CT slices here), and viewers ask for it on every visit. An answer is kept as long
as its study's version (:meth:`StudyMetadata.version`) is the one it was built under:

- the study's ``LastUpdate`` (Orthanc's index: a new or a deleted instance changes it, on any
  node sharing the index, but only to the second);
- this node's last change to the study (:class:`StudyChanges`): a new instance in it (Orthanc's
  ``NEW_CHILD_INSTANCE`` at study level) and a rendition stored for it (its metadata advertises
  renditions, see ``annotate``), within the same second included;
- the deletions this node has seen (a ``DELETED`` change names only the deleted resource);
- and at most a minute (``TTL_SECONDS``): what other nodes do within one second of
  ``LastUpdate``, and the renditions they store, show within a minute.

Before this, any change on the node made every study's cached metadata stale, so during an
ingest, or while renditions were being stored, every visit rebuilt its study's metadata. A
version is read before its answer is built: a change made meanwhile makes the next request
build it again, never keeps a stale answer.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable

from ..caches import Cache
from ..host import Host

Annotate = Callable[[bytes], bytes]  # rewrites the metadata (the HTJ2K package advertises renditions)
TTL_SECONDS = 60.0


class StudyChanges:
    """When this node last changed each study, as numbers of one increasing sequence.

    Bounded: past ``max_studies`` the older half is forgotten, and a forgotten study reads
    as changed at that moment (one answer built again, never an old version back).

    >>> changes = StudyChanges(max_studies=2)
    >>> changes.version("a") == changes.version("b") == 0
    True
    >>> changes.changed("a"); changes.version("a")
    1
    >>> changes.changed("b"); changes.changed("c")  # past the bound: "a" is forgotten
    >>> changes.version("a") > changes.version("c") > changes.version("b") > 1
    True
    """

    def __init__(self, max_studies: int = 100_000) -> None:
        self._max = max_studies
        self._numbers = itertools.count(1)
        self._last: dict[str, int] = {}  # in the order of their last change
        self._floor = 0  # the version of every study not in _last
        self._lock = threading.Lock()

    def changed(self, study: str) -> None:
        with self._lock:
            self._last.pop(study, None)
            self._last[study] = next(self._numbers)
            if len(self._last) > self._max:
                for old in list(self._last)[: len(self._last) // 2]:
                    del self._last[old]
                self._floor = next(self._numbers)

    def version(self, study: str) -> int:
        with self._lock:
            return self._last.get(study, self._floor)


class StudyMetadata:
    """The cache of metadata answers, keyed by (resource path, public base URL)."""

    def __init__(self, host: Host, *, max_bytes: int = 256 * 1024 * 1024, annotate: Annotate | None = None) -> None:
        self._host = host
        self.annotate = annotate
        self.cache: Cache[tuple[str, str], bytes] = Cache(max_bytes=max_bytes, ttl=TTL_SECONDS)
        self.changes = StudyChanges()  # keyed "id:<Orthanc id>" (new instances), "uid:<UID>" (renditions)
        self.deletions = 0
        self.hits = self.misses = 0
        self._counting = threading.Lock()  # request threads count at once: no increment lost

    def new_instance(self, study_id: str) -> None:
        self.changes.changed(f"id:{study_id}")

    def new_rendition(self, study_uid: str) -> None:
        self.changes.changed(f"uid:{study_uid}")

    def note_deletion(self) -> None:
        self.deletions += 1

    def version(self, study_id: str, study_uid: str) -> Hashable:
        """What the study's metadata answers depend on, as it is now (read before building)."""
        last_update = self._host.rest_get_json(f"/studies/{study_id}").get("LastUpdate", "")
        return (last_update, self.changes.version(f"id:{study_id}"), self.changes.version(f"uid:{study_uid}"),
                self.deletions)

    def answer(self, study_id: str, study_uid: str, key: tuple[str, str], build: Callable[[], bytes]) -> bytes:
        """The cached answer for ``key`` of the study, or the one ``build`` makes (annotated)."""
        version = self.version(study_id, study_uid)
        body = self.cache.get(key, version)
        hit = body is not None
        if body is None:
            body = build()
            if self.annotate is not None:
                body = self.annotate(body)
            self.cache.put(key, body, version=version)
        with self._counting:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
            hits, misses = self.hits, self.misses
        self._host.set_metric("neuronova_dicomweb_metadata_cache_hits_total", float(hits))
        self._host.set_metric("neuronova_dicomweb_metadata_cache_misses_total", float(misses))
        return body
