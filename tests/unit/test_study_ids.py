"""The search order's StudyInstanceUID -> Orthanc id table (gate/study_ids.py) and the
directory reading it (StudyDirectory.ordered): a real SQLite store, an in-memory Host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from neuronova.dicomweb.search import orthanc_id
from neuronova.gate.studies import StudyDirectory
from neuronova.gate.study_ids import BACKFILL_PAGE, StudyIdRecorder, StudyIdTable
from neuronova.store import Database, open_database
from neuronova.store.schema import study_ids
from tests.support.waiting import wait_for
from tests.unit.fakes import FakeHost, FakeStudy


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path}/store.sqlite")


def _row(uid: str, patient: str = "P1") -> dict[str, str]:
    return {"orthanc_id": orthanc_id(patient, uid), "study_uid": uid, "patient_id": patient}


def _ids_stored(db: Database) -> set[str]:
    with db.engine.connect() as connection:
        return set(connection.execute(select(study_ids.c.orthanc_id)).scalars())


class PagedHost(FakeHost):
    """Orthanc's /studies?expand&since&limit too, in ascending Orthanc id like Orthanc."""

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if not uri.startswith("/studies?"):
            return super().rest_get_json(uri, after_plugins)
        self._check()
        params = dict(p.partition("=")[::2] for p in uri.split("?", 1)[1].split("&"))
        studies = sorted(({"ID": orthanc_id(s.patient_id, s.uid), "MainDicomTags": {"StudyInstanceUID": s.uid},
                           "PatientMainDicomTags": {"PatientID": s.patient_id}} for s in self.studies.values()),
                         key=lambda s: str(s["ID"]))
        since, limit = int(params["since"]), int(params["limit"])
        return studies[since:since + limit]


def test_the_table_answers_the_ids_of_a_set_and_forgets_deleted_studies(db: Database) -> None:
    table = StudyIdTable(db)
    rows = [_row(f"1.2.{n}") for n in range(1200)]  # more than one IN (...) query
    arrivals, deletions = table.write(rows, [])
    assert arrivals is not None and deletions is None
    table.write([_row("1.2.5")], [])  # idempotent
    wanted = {f"1.2.{n}" for n in range(0, 1300, 3)}
    assert table.ids_of(wanted) == {r["study_uid"]: r["orthanc_id"] for r in rows if r["study_uid"] in wanted}
    _, deletions = table.write([], [orthanc_id("P1", "1.2.3")])
    assert deletions is not None
    assert "1.2.3" not in table.ids_of(wanted) and table.count() == 1199


def test_a_uid_under_two_patient_ids_takes_the_smaller_id(db: Database) -> None:
    table = StudyIdTable(db)
    table.write([_row("9.9", "PA"), _row("9.9", "PB")], [])
    assert table.ids_of(["9.9"]) == {"9.9": min(orthanc_id("PA", "9.9"), orthanc_id("PB", "9.9"))}


def test_the_order_comes_from_the_table_without_asking_orthanc(db: Database) -> None:
    uids = [f"1.3.{n}" for n in range(50)]
    host = FakeHost([FakeStudy(u, "P1") for u in uids])
    table = StudyIdTable(db)
    table.write([_row(u) for u in uids], [])
    directory = StudyDirectory(host, [], 30.0)
    confirmed: list[str] = []
    directory.use_table(table, confirmed.append)
    got = directory.ordered(frozenset(uids))
    assert list(got) == sorted(uids, key=lambda u: orthanc_id("P1", u))
    assert host.calls == 0 and not confirmed


def test_uids_unknown_to_the_table_are_asked_once(db: Database) -> None:
    host = FakeHost([FakeStudy("1.1", "P1"), FakeStudy("2.2", "P1")])
    table = StudyIdTable(db)
    table.write([_row("1.1")], [])
    directory = StudyDirectory(host, [], 30.0)
    confirmed: list[str] = []
    directory.use_table(table, confirmed.append)
    wanted = frozenset({"1.1", "2.2", "3.3"})
    assert set(directory.ordered(wanted)) == {"1.1", "2.2"}
    assert host.calls == 2 and confirmed == ["study-2.2"]  # 2.2 and 3.3 asked; 2.2 to be recorded
    directory.invalidate()  # an arrival on this node: 3.3 is looked for in the table only
    assert set(directory.ordered(wanted)) == {"1.1", "2.2"} and host.calls == 2
    table.write([_row("3.3")], [])  # recorded by whichever node stored it
    directory.remote_arrivals(1, 2)
    assert set(directory.ordered(wanted)) == {"1.1", "2.2", "3.3"} and host.calls == 2


def test_deletions_leave_the_order_without_a_full_look_up(db: Database) -> None:
    host = FakeHost([])
    table = StudyIdTable(db)
    table.write([_row(u) for u in ("1.1", "2.2", "3.3")], [])
    directory = StudyDirectory(host, [], 30.0)
    directory.use_table(table, lambda _id: None)
    wanted = frozenset({"1.1", "2.2", "3.3"})
    assert len(directory.ordered(wanted)) == 3
    gone = orthanc_id("P1", "2.2")
    directory.invalidate(hierarchy=True, deleted=("STUDY", gone))  # this node's DELETED change ...
    table.write([], [gone])
    directory.written([], [gone])  # ... and its writer's flush
    assert set(directory.ordered(wanted)) == {"1.1", "3.3"}
    table.write([], [orthanc_id("P1", "1.1")])  # through another node
    directory.forget_ids()
    assert directory.ordered(wanted) == ("3.3",)
    assert host.calls == 2  # Orthanc is asked only about the two studies gone, once each
    directory.forget_ids()
    assert directory.ordered(wanted) == ("3.3",) and host.calls == 2


def test_the_recorder_writes_arrivals_and_deletions_in_order(db: Database) -> None:
    host = FakeHost([FakeStudy("1.1", "P1"), FakeStudy("2.2", "P2")])
    written: list[tuple[int, int]] = []
    recorder = StudyIdRecorder(StudyIdTable(db), host, lambda rows, removed: written.append((len(rows), len(removed))))
    recorder.arrived("study-1.1")
    recorder.arrived("study-2.2")
    recorder.arrived("study-4.4")  # deleted before its turn: no row
    recorder.flush(recorder._take(block=False))
    assert recorder.table.ids_of(["1.1", "2.2", "4.4"]) == {"1.1": "study-1.1", "2.2": "study-2.2"}
    recorder.arrived("study-1.1")
    recorder.deleted("study-1.1")  # the last change of an id wins
    recorder.flush(recorder._take(block=False))
    assert recorder.table.ids_of(["1.1", "2.2"]) == {"2.2": "study-2.2"}
    assert written == [(2, 0), (0, 1)]
    assert recorder.own_deletions and not recorder.deleted_elsewhere(0, max(recorder.own_deletions))
    assert recorder.deleted_elsewhere(0, max(recorder.own_deletions) + 1)


def test_the_backfill_pages_through_orthanc_and_resumes(db: Database) -> None:
    uids = [f"1.4.{n}" for n in range(BACKFILL_PAGE + 10)]
    host = PagedHost([FakeStudy(u, f"P{n % 3}") for n, u in enumerate(uids)])
    recorder = StudyIdRecorder(StudyIdTable(db), host, lambda rows, removed: None)
    since, finished = recorder._backfill_page(0)
    assert (since, finished) == (BACKFILL_PAGE, False) and recorder.table.backfill_state() == (BACKFILL_PAGE, False)
    again = StudyIdRecorder(StudyIdTable(db), host, lambda rows, removed: None)  # after a restart
    since, finished = again._backfill_page(again.table.backfill_state()[0])
    assert finished and again.table.backfill_state() == (len(uids), True) and again.backfill == "done"
    assert recorder.table.ids_of(uids) == {u: orthanc_id(f"P{n % 3}", u) for n, u in enumerate(uids)}


def test_the_writer_thread_keeps_a_change_until_it_is_written(db: Database) -> None:
    host = PagedHost([FakeStudy("1.6.1", "P1")])
    recorder = StudyIdRecorder(StudyIdTable(db), host, lambda rows, removed: None)
    host.fail = True  # Orthanc (or the store) away for a while
    recorder.start()
    try:
        recorder.arrived("study-1.6.1")
        wait_for(lambda: any("search order table" in line for line in host.logs), timeout=10, what="a failure")
        assert not _ids_stored(db)
        host.fail = False
        wait_for(lambda: "study-1.6.1" in _ids_stored(db), timeout=10, what="the change written once Orthanc answers")
        wait_for(lambda: recorder.backfill == "done", timeout=10, what="the backfill")
    finally:
        recorder.stop()
