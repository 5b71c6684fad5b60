"""Permitted-study search: a QIDO answer restricted to a set of studies of any size, exact.

The DICOMweb plugin takes a StudyInstanceUID list as one DICOM value, which is capped near
64 KiB (about 800 UIDs): one query naming every permitted study silently loses the rest. So
the permitted studies are asked in chunks, each well under the cap, and the answers merged
in the order Orthanc's own DICOMweb answers on its SQLite index (measured on Orthanc 1.13.0 +
DICOMweb 1.24: ascending Orthanc identifier of the resource at the searched level, see
docs/architecture.md). On PostgreSQL (plugin 5.0) Orthanc answers in the order of storage
instead; the gate keeps ascending Orthanc identifier there too (each chunk's answers sorted).

Orthanc identifiers are SHA-1 digests of the UIDs above them (``PatientID|StudyInstanceUID``
for a study, ``...|SeriesInstanceUID`` for a series, ``...|SOPInstanceUID`` for an
instance), so the order is known without asking Orthanc: the permitted studies are sorted by
it once (``StudyDirectory.ordered``) and a study search without matching keys reads only the
chunks of its page. With matching keys, chunks are read in that order until the page is full.
Series and instance searches read every chunk and sort the merged answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..dicom_json import tag_value

# Bytes of UIDs in one internal query: well under the ~64 KiB value cap (about 500 UIDs of
# 64 characters), and a moderate list for the index's IN (...) look-up.
CHUNK_BYTES = 32 * 1024
STUDY_UID, SERIES_UID, SOP_UID, PATIENT_ID = "0020000D", "0020000E", "00080018", "00100020"
# Query keys that do not restrict which resources match.
NON_MATCHING = frozenset({"includefield", "fuzzymatching", "limit", "offset"})
# The attributes an answer needs for its Orthanc identifier, per searched level.
ORDER_TAGS = {
    "/studies": (PATIENT_ID, STUDY_UID),
    "/series": (PATIENT_ID, STUDY_UID, SERIES_UID),
    "/instances": (PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID),
}

Answer = dict[str, Any]
Fetch = Callable[[list[str]], list[Answer]]  # one internal search for a chunk of study UIDs


def orthanc_id(*uids: str) -> str:
    """Orthanc's identifier of a resource from the UIDs down to it (Orthanc's DicomInstanceHasher).

    >>> orthanc_id("P1", "1.2.3")[:17]
    'ce42f924-f6020bea'
    """
    # Not a security use: the digest is Orthanc's naming scheme, reproduced for its order.
    digest = hashlib.sha1("|".join(uids).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def answer_id(answer: Answer, level: str) -> str:
    return orthanc_id(*(tag_value(answer, tag) for tag in ORDER_TAGS[level]))


def chunks(uids: Sequence[str], budget: int = CHUNK_BYTES) -> Iterator[list[str]]:
    """Consecutive runs of ``uids`` whose comma-joined length stays within ``budget``."""
    run: list[str] = []
    size = 0
    for uid in uids:
        if run and size + len(uid) + 1 > budget:
            yield run
            run, size = [], 0
        run.append(uid)
        size += len(uid) + 1
    if run:
        yield run


def is_matching(query: dict[str, str]) -> bool:
    """Whether the query has a matching key (beyond the study list the narrowing sets)."""
    return any(k not in NON_MATCHING and k not in ("StudyInstanceUID", STUDY_UID) for k in query)


def page(level: str, ordered: Sequence[str], fetch: Fetch, keep: Callable[[list[Answer]], list[Answer]],
         offset: int, limit: int, matching: bool) -> list[Answer]:
    """The ``offset``/``limit`` page of the search over the ``ordered`` studies (ascending
    Orthanc study identifier). ``keep`` is the defence-in-depth filter, applied per chunk."""
    if level != "/studies":
        merged = [a for run in chunks(ordered) for a in keep(fetch(run))]
        merged.sort(key=lambda a: answer_id(a, level))
        return merged[offset:offset + limit] if limit else merged[offset:]

    def read(run: list[str]) -> list[Answer]:
        # Orthanc answers a chunk in its own order: ascending Orthanc identifier on SQLite, the
        # order of storage on PostgreSQL (plugin 5.0, tests/integration/test_search_scale.py).
        # Sorted, the gate's order is the same on both and a page is a slice of the whole answer.
        return sorted(keep(fetch(run)), key=lambda a: answer_id(a, level))

    found: list[Answer] = []
    if not matching:
        # Every existing study matches: the page starts at ``offset`` and needs ``limit`` of
        # them (more only when the post-filter leaves some out).
        position = offset
        while position < len(ordered) and not (limit and len(found) >= limit):
            wanted = ordered[position:position + limit] if limit else ordered[position:]
            for run in chunks(wanted):
                found.extend(read(run))
            position += len(wanted)
        return found[:limit] if limit else found
    for run in chunks(ordered):
        found.extend(read(run))
        if limit and len(found) >= offset + limit:
            break
    return found[offset:offset + limit] if limit else found[offset:]
