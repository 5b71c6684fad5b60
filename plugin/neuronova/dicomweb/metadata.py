"""WADO-RS metadata answers, cached per study while the study stays as it was.

Generating a study's metadata is the DICOMweb plugin's heaviest read (0.3 s for 48 MR slices,
0.6 s for 300 CT slices here), and viewers ask for it on every visit. An answer is kept until
its study changes, which is told by what the study is now (:meth:`StudyMetadata.version`):

- its ``LastUpdate`` and the Orthanc identifiers of its instances (a new or deleted instance,
  on any node sharing the index, changes the list);
- the instances of it that have a rendition (the answer advertises them, see ``annotate``),
  read from the rendition store that every node writes;
- how many deletions this node has seen (an instance deleted and stored again within the
  second of ``LastUpdate`` keeps its identifier).

Before this, any change on the node (each new instance, each rendition stored) made every
study's cached metadata stale: during an ingest, or while renditions were being stored, every
visit rebuilt its study's metadata. Checking the version costs two index reads and one
store query per request (about a millisecond for a few hundred instances). A version is read
before the answer is built, so a change made meanwhile only makes the next request rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ..caches import Cache
from ..host import Host

Annotate = Callable[[bytes], bytes]  # rewrites the metadata (the HTJ2K package advertises renditions)
Rendered = Callable[[list[str]], Hashable]  # the renditions of these instances, as far as the answer depends on them


class StudyMetadata:
    """The cache of metadata answers, keyed by (resource path, public base URL)."""

    def __init__(self, host: Host, *, max_bytes: int = 256 * 1024 * 1024, annotate: Annotate | None = None,
                 rendered: Rendered | None = None) -> None:
        self._host = host
        self.annotate = annotate
        self.rendered = rendered
        self.cache: Cache[tuple[str, str], bytes] = Cache(max_bytes=max_bytes)
        self.deletions = 0  # deletions seen by this node (note_deletion)
        self.hits = self.misses = 0

    def note_deletion(self) -> None:
        self.deletions += 1

    def version(self, study_id: str) -> Hashable:
        """What the study's metadata answers depend on, as it is now."""
        last_update = self._host.rest_get_json(f"/studies/{study_id}").get("LastUpdate", "")
        listed = self._host.rest_get_json(f"/studies/{study_id}/instances?expand=false")
        instances = sorted(str(i["ID"]) if isinstance(i, dict) else str(i) for i in listed)  # ids (1.13), or objects
        rendered = self.rendered(instances) if self.rendered is not None else None
        return last_update, tuple(instances), rendered, self.deletions

    def answer(self, study_id: str, key: tuple[str, str], build: Callable[[], bytes]) -> bytes:
        """The cached answer for ``key`` of the study, or the one ``build`` makes (annotated)."""
        version = self.version(study_id)
        body = self.cache.get(key, version)
        if body is not None:
            self.hits += 1
        else:
            self.misses += 1
            body = build()
            if self.annotate is not None:
                body = self.annotate(body)
            self.cache.put(key, body, version=version)
        self._host.set_metric("neuronova_dicomweb_metadata_cache_hits_total", float(self.hits))
        self._host.set_metric("neuronova_dicomweb_metadata_cache_misses_total", float(self.misses))
        return body
