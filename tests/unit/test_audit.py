import dataclasses
import time
from pathlib import Path

from neuronova import audit
from neuronova.audit import AuditEvent, AuditSettings, AuditWriter
from neuronova.store import open_database


def event(n: int, user: str = "u") -> AuditEvent:
    return AuditEvent(time.time(), user, "doctor", "127.0.0.1", "GET", "wado-rs", f"/x/{n}", "1.2", "allow", "ok",
                      "110103")


def test_writer_batches_and_flushes_everything_on_close(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    writer = AuditWriter(db, capacity=50, batch=20, settings=AuditSettings(enqueue_wait_seconds=5.0))
    for n in range(1000):  # more than the queue holds: callers wait, nothing is dropped
        writer.record(event(n, "u" if n % 2 else "v"))
    writer.close()
    assert writer.written == 1000 and writer.failures == 0
    assert len(audit.query(db, limit=5000)) == 1000
    assert len(audit.query(db, user="u", limit=5000)) == 500
    page = audit.query(db, limit=10, offset=990)
    assert [r["uri"] for r in page] == [f"/x/{n}" for n in range(990, 1000)]


def test_flush_writes_at_once_without_waiting_for_the_gathering_window(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    writer = AuditWriter(db, gather_seconds=60.0)  # a window no test could wait out
    for n in range(3):
        writer.record(event(n))
    started = time.monotonic()
    writer.flush()
    assert time.monotonic() - started < 10
    assert [r["uri"] for r in audit.query(db, limit=10)] == ["/x/0", "/x/1", "/x/2"]
    writer.close()
    writer.flush()  # the writer has stopped: returns instead of waiting for nobody
    assert writer.written == 3


def test_an_event_row_and_its_json_hold_every_field() -> None:
    e = dataclasses.replace(event(7), node="node-a")
    assert e.as_row() == dataclasses.asdict(e)
    assert e.as_json() == {**dataclasses.asdict(e), "time": audit.iso_utc(e.time)}


def test_time_parsing() -> None:
    assert audit.parse_time("0") == 0.0
    assert audit.parse_time("1970-01-01T00:01:00Z") == 60.0
    assert audit.parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert audit.iso_utc(0.5) == "1970-01-01T00:00:00.500Z"


def test_written_events_are_mirrored_and_a_failing_mirror_loses_nothing(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a.sqlite")
    mirrored: list[AuditEvent] = []

    def mirror(e: AuditEvent) -> None:
        if e.uri == "/x/3":
            raise RuntimeError("Orthanc's audit log is not writable")
        mirrored.append(e)

    errors: list[str] = []
    writer = AuditWriter(db, mirror=mirror, on_error=errors.append)
    for n in range(10):
        writer.record(event(n))
    writer.close()
    assert [e.uri for e in mirrored] == [f"/x/{n}" for n in range(10) if n != 3]
    assert writer.written == 10 and writer.mirror_failures == 1 and len(errors) == 1
    assert len(audit.query(db)) == 10
