"""Permitted-study search (dicomweb/search.py, StudyDirectory.ordered) against an in-memory
model of Orthanc's QIDO: answers in ascending Orthanc id, a UID list of any length."""

from __future__ import annotations

from typing import Any

from neuronova.dicomweb import search
from neuronova.gate.studies import StudyDirectory
from tests.unit.fakes import FakeHost, FakeStudy


def _answer(uid: str, patient: str, modality: str) -> dict[str, Any]:
    return {search.STUDY_UID: {"vr": "UI", "Value": [uid]}, search.PATIENT_ID: {"vr": "LO", "Value": [patient]},
            "00080061": {"vr": "CS", "Value": [modality]}}


STORED = {f"1.2.{n}": ("P1" if n % 3 else "P2", "CT" if n % 2 else "MR") for n in range(200)}


def _orthanc(uids: list[str], modality: str = "") -> list[dict[str, Any]]:
    """What the DICOMweb plugin answers for one UID list (and a ModalitiesInStudy key)."""
    found = [_answer(u, *STORED[u]) for u in uids if u in STORED and (not modality or STORED[u][1] == modality)]
    return sorted(found, key=lambda a: search.answer_id(a, "/studies"))


def _ordered(uids: set[str]) -> list[str]:
    return sorted((u for u in uids if u in STORED), key=lambda u: search.orthanc_id(STORED[u][0], u))


def test_chunks_stay_within_the_budget_and_keep_every_uid() -> None:
    uids = [f"1.2.840.{n:060d}" for n in range(2000)]
    runs = list(search.chunks(uids))
    assert [u for run in runs for u in run] == uids
    assert len(runs) > 1 and all(len(",".join(run)) <= search.CHUNK_BYTES for run in runs)


def test_every_page_is_the_slice_of_the_complete_answer() -> None:
    permitted = {u for u in STORED if int(u.rsplit(".", 1)[1]) % 5} | {f"9.9.{n}" for n in range(50)}
    ordered = _ordered(permitted)
    calls: list[int] = []

    def fetch_with(modality: str) -> search.Fetch:
        def fetch(run: list[str]) -> list[dict[str, Any]]:
            calls.append(len(run))
            return _orthanc(run, modality)
        return fetch

    for modality in ("", "MR"):
        complete = _orthanc(ordered, modality)
        for offset, limit in ((0, 0), (0, 7), (13, 40), (150, 10), (500, 5)):
            got = search.page("/studies", ordered, fetch_with(modality), lambda r: r, offset, limit, bool(modality),)
            expected = complete[offset:offset + limit] if limit else complete[offset:]
            assert got == expected, (modality, offset, limit)


def test_a_page_without_matching_keys_reads_only_its_chunks() -> None:
    ordered = _ordered(set(STORED))
    calls: list[list[str]] = []

    def fetch(run: list[str]) -> list[dict[str, Any]]:
        calls.append(run)
        return _orthanc(run)

    got = search.page("/studies", ordered, fetch, lambda r: r, 100, 10, False)
    assert [a[search.STUDY_UID]["Value"][0] for a in got] == ordered[100:110]
    assert calls == [ordered[100:110]]  # only the page


def test_answers_left_out_by_the_post_filter_are_made_up_from_the_next_studies() -> None:
    ordered = _ordered(set(STORED))
    got = search.page("/studies", ordered, _orthanc, lambda r: [a for a in r if STORED[
        a[search.STUDY_UID]["Value"][0]][0] == "P1"], 0, 20, False)
    assert len(got) == 20 and all(a[search.PATIENT_ID]["Value"][0] == "P1" for a in got)


def test_study_order_is_looked_up_once_and_follows_arrivals_and_deletions() -> None:
    host = FakeHost([FakeStudy(u, "P1") for u in ("3.3", "1.1")])
    directory = StudyDirectory(host, [], 30.0)
    wanted = frozenset({"1.1", "2.2", "3.3"})
    assert directory.ordered(wanted) == ("1.1", "3.3")  # the fake's Orthanc ids sort like the UIDs
    calls = host.calls
    assert directory.ordered(wanted) == ("1.1", "3.3") and host.calls == calls
    host.studies["2.2"] = FakeStudy("2.2", "P1")
    directory.invalidate()  # an arrival: only the missing UID is asked again
    assert directory.ordered(wanted) == ("1.1", "2.2", "3.3")
    calls = host.calls
    directory.invalidate(hierarchy=True, deleted=("SERIES", "series-x"))  # the study stays
    assert directory.ordered(wanted) == ("1.1", "2.2", "3.3") and host.calls == calls
    del host.studies["1.1"]
    directory.invalidate(hierarchy=True, deleted=("STUDY", "study-1.1"))  # only its entry goes
    assert directory.ordered(wanted) == ("2.2", "3.3") and host.calls == calls + 1
    del host.studies["2.2"]
    directory.invalidate(hierarchy=True)  # unknown: every id is looked up again
    assert directory.ordered(wanted) == ("3.3",) and host.calls == calls + 4
