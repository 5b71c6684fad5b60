"""The search order's table (gate/study_ids.py) on every back end of the plugin store: SQLite,
and real PostgreSQL and MariaDB servers (Debian's packages, started here). Two ``Database``
objects on one URL stand for two nodes: what one node writes, the other's order follows
within a poll of the shared counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neuronova.dicomweb.search import orthanc_id
from neuronova.gate.studies import StudyDirectory
from neuronova.gate.study_ids import StudyIdRecorder, StudyIdTable
from neuronova.store import open_database
from neuronova.store.versions import STUDY_ARRIVALS, STUDY_DELETIONS, VersionWatch
from tests.support.databases import start_mariadb, start_postgres
from tests.unit.fakes import FakeHost, FakeStudy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ids')}/store.sqlite"
        return
    started = start_postgres() if request.param == "postgresql" else start_mariadb()
    try:
        yield started.url
    finally:
        started.stop()


class OrthancIds(FakeHost):
    """Orthanc's real identifiers (SHA-1 of PatientID|StudyInstanceUID) for the fake's studies."""

    def lookup_study(self, study_uid: str) -> str | None:
        self._check()
        study = self.studies.get(study_uid)
        return orthanc_id(study.patient_id, study.uid) if study else None


def test_what_one_node_records_the_other_orders(url: str) -> None:
    one, two = open_database(url), open_database(url)
    uids = [f"1.5.{n}" for n in range(700)]  # more than one IN (...) query
    table_1, table_2 = StudyIdTable(one), StudyIdTable(two)
    rows = [{"orthanc_id": orthanc_id("P1", u), "study_uid": u, "patient_id": "P1"} for u in uids]
    table_1.write(rows[:600], [])
    table_1.write(rows[:10], [])  # idempotent upsert on every dialect
    table_1.analyze()  # what the backfill does when it finishes
    host = OrthancIds([FakeStudy(u, "P1") for u in uids])
    directory = StudyDirectory(host, [], 30.0)
    recorder = StudyIdRecorder(table_2, host, directory.written)
    directory.use_table(table_2, recorder.found_by_lookup)
    watch = VersionWatch(two.engine)
    watch.watch(STUDY_ARRIVALS, directory.remote_arrivals)
    watch.watch(STUDY_DELETIONS, lambda seen, now: directory.forget_ids()
                if recorder.deleted_elsewhere(seen, now) else None)
    watch.poll()
    wanted = frozenset(uids[:650])
    expected = sorted(uids[:650], key=lambda u: orthanc_id("P1", u))
    assert list(directory.ordered(wanted)) == expected
    assert host.calls == 50  # only the UIDs the table did not know
    absent = frozenset({"9.9.9"})
    assert directory.ordered(wanted | absent) == directory.ordered(wanted)
    calls = host.calls

    # Another node stores a study: its row and counter bring it into this node's order.
    table_1.write([{"orthanc_id": orthanc_id("P2", "9.9.9"), "study_uid": "9.9.9", "patient_id": "P2"}], [])
    assert "9.9.9" not in directory.ordered(wanted | absent)
    watch.poll()
    assert "9.9.9" in directory.ordered(wanted | absent) and host.calls == calls

    # Another node deletes studies: this node's remembered ids are read again.
    table_1.write([], [orthanc_id("P1", u) for u in uids[:5]])
    for uid in uids[:5]:
        del host.studies[uid]
    watch.poll()
    assert list(directory.ordered(wanted)) == [u for u in expected if u not in uids[:5]]

    # This node's own deletion (its writer's flush) does not make it forget all it remembers.
    del host.studies[uids[10]]
    recorder.deleted(orthanc_id("P1", uids[10]))
    recorder.flush(recorder._take(block=False))
    epoch = directory._epoch
    watch.poll()
    assert directory._epoch == epoch
    assert uids[10] not in directory.ordered(wanted)

    # The backfill's progress is shared.
    table_1.write([], [], backfill_since=1000)
    assert table_2.backfill_state() == (1000, False)
    table_1.write([], [], backfill_since=1200, finished=True)
    assert table_2.backfill_state() == (1200, True)
    one.engine.dispose()
    two.engine.dispose()
