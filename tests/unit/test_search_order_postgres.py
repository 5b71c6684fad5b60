"""Permitted-study search (dicomweb/search.py) when Orthanc answers in the order of storage,
not ascending Orthanc identifier: what Orthanc does on its PostgreSQL index (plugin 5.0,
measured in tests/integration/test_search_scale.py). The gate's answers keep one order, and
every page is the slice of the complete answer."""

from __future__ import annotations

import random
from typing import Any

from neuronova.dicomweb import search

STORED = {f"1.2.{n}": ("P1" if n % 3 else "P2", "CT" if n % 2 else "MR") for n in range(300)}
_rng = random.Random(7)
STORAGE_ORDER = {uid: n for n, uid in enumerate(_rng.sample(sorted(STORED), len(STORED)))}


def _answer(uid: str) -> dict[str, Any]:
    patient, modality = STORED[uid]
    return {search.STUDY_UID: {"vr": "UI", "Value": [uid]}, search.PATIENT_ID: {"vr": "LO", "Value": [patient]},
            "00080061": {"vr": "CS", "Value": [modality]}}


def _orthanc_on_postgresql(modality: str) -> search.Fetch:
    def fetch(run: list[str]) -> list[dict[str, Any]]:
        found = [u for u in run if u in STORED and (not modality or STORED[u][1] == modality)]
        return [_answer(u) for u in sorted(found, key=STORAGE_ORDER.__getitem__)]
    return fetch


def test_pages_are_slices_of_the_complete_answer_in_orthanc_identifier_order() -> None:
    ordered = sorted(STORED, key=lambda u: search.orthanc_id(STORED[u][0], u))
    for modality in ("", "MR"):
        fetch = _orthanc_on_postgresql(modality)
        complete = search.page("/studies", ordered, fetch, lambda r: r, 0, 0, bool(modality))
        ids = [search.answer_id(a, "/studies") for a in complete]
        assert ids == sorted(ids) and len(ids) == len([u for u in STORED if not modality or STORED[u][1] == modality])
        for offset, limit in ((0, 7), (13, 40), (150, 10), (295, 10)):
            got = search.page("/studies", ordered, fetch, lambda r: r, offset, limit, bool(modality))
            assert got == complete[offset:offset + limit], (modality, offset, limit)
