"""The first permitted-study search after a restart, at a large permitted set.

    .venv/bin/python -m bench.search_cold_bench --data DIR [--studies 20000] [--restarts 3] [--json]

The first run on an empty ``DIR`` stores ``--studies`` small synthetic studies (one 2x2
instance each, uploaded in parallel) into a gated Orthanc whose data lives in ``DIR``, and
grants every one of them to one doctor; later runs reuse that data (ingest once, measure
several builds of the plugin on the same index). The grants are written straight into the
plugin store while Orthanc is stopped (the grant API costs a store transaction each; how grants
are made is not what is measured), plus 10 % more granted UIDs that are not stored.

Then, ``--restarts`` times: Orthanc is started on ``DIR``, the bench waits until the node
reports its search order table filled (``search_order`` in /neuronova/health, when the
build has one), and times the doctor's first search (``limit=25``: the permitted set is put
in Orthanc's order first), then a second page (order cached: the page alone). Their
difference is the cost of ordering the permitted set, printed per grant. Resident set of the
Orthanc process before and after the first search. The machine is shared: rely on the
ratios between first and second search, and on several restarts.

    .venv/bin/python -m bench.search_cold_bench --table-rows 1000000 --permitted 100000 [--postgres]

measures the plugin's side alone at the issue's scale, without Orthanc: a store whose search
order table holds ``--table-rows`` studies, and the first ``StudyDirectory.ordered`` of
``--permitted`` of them (every one in the table: Orthanc is never asked), then a cached one,
with the Python heap the directory keeps (tracemalloc). ``--postgres`` runs it on a PostgreSQL
server of Debian's (tests/support/databases.py) instead of SQLite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
import requests
from sqlalchemy import create_engine, insert, select, update

from bench.common import OrthancServer, start_orthanc
from bench.search_bench import _rss_kib
from tests.support.tiny_studies import tiny_instance, upload

SECRET = "cold-bench-secret-0123456789abcdefghijkl"
ENV = {"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "cold-admin"}
OVERLAY: dict[str, Any] = {"NeuroNova": {"Htj2k": {"Enabled": False}}}
DOCTOR = "dr.cold"


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.10.777.{n}"


def _start(data: Path) -> OrthancServer:
    return start_orthanc(data, env=ENV, overlay=OVERLAY, timeout=300)


def _ingest(data: Path, studies: int, threads: int) -> None:
    marker, stored_marker = data / f"cold-bench-{studies}", data / f"cold-bench-{studies}-stored"
    if marker.exists():
        return
    if not stored_marker.exists():
        _store(data, studies, threads)
        stored_marker.write_text("ok")
    _grant(data, [_uid(n) for n in range(studies)] + [_uid(10**7 + n) for n in range(studies // 10)])
    marker.write_text("ok")


def _store(data: Path, studies: int, threads: int) -> None:
    server = _start(data)
    try:
        started = time.perf_counter()
        blobs = (tiny_instance(_uid(n), f"PAT-{n % 997}", modality="CT" if n % 3 else "MR") for n in range(studies))
        stored = upload(server.base, blobs, auth=server.admin, threads=threads)
        print(f"{stored} studies stored in {time.perf_counter() - started:.1f} s")
    finally:
        server.stop()


def _grant(data: Path, uids: list[str]) -> None:
    # Imported late: the plugin package is on sys.path once bench.common is imported.
    from neuronova.store.schema import grants, state_versions

    engine = create_engine(f"sqlite:///{data / 'neuronova' / 'neuronova.sqlite'}")
    with engine.begin() as connection:
        known = set(connection.execute(select(grants.c.study_uid).where(grants.c.subject == DOCTOR)).scalars())
        rows = [{"study_uid": u, "subject": DOCTOR, "relation": "reading", "created_at": time.time(),
                 "created_by": "bench"} for u in uids if u not in known]
        for start in range(0, len(rows), 5000):
            connection.execute(insert(grants), rows[start:start + 5000])
        connection.execute(update(state_versions).where(state_versions.c.name == "grants")
                           .values(version=state_versions.c.version + 1))
    engine.dispose()
    print(f"{len(rows)} grants written ({len(uids)} wanted)")


def _wait_for_order_table(server: OrthancServer, timeout: float = 1800) -> float | None:
    """Seconds until the node says its search order table is filled (None: no such table)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        health = requests.get(server.base + "/neuronova/health", timeout=30).json()
        state = health.get("search_order")
        if state is None:
            return None
        if state.get("backfill") == "done":
            return time.perf_counter() - started
        time.sleep(0.5)
    raise RuntimeError("the search order table was not filled in time")


def _search(server: OrthancServer, token: str, offset: int) -> tuple[float, int]:
    started = time.perf_counter()
    answer = requests.get(server.base + "/dicom-web/studies", params={"limit": "25", "offset": str(offset)},
                          headers={"Authorization": f"Bearer {token}"}, timeout=600)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, len(answer.json())


def _measure(data: Path, studies: int) -> dict[str, float]:
    server = _start(data)
    try:
        backfill = _wait_for_order_table(server)
        time.sleep(1.0)  # let the start-up work settle
        token = jwt.encode({"sub": DOCTOR, "exp": int(time.time()) + 3600, "realm_access": {"roles": ["doctor"]}},
                           SECRET, algorithm="HS256")
        before = _rss_kib(server.process.pid)
        first, count = _search(server, token, 0)
        after = _rss_kib(server.process.pid)
        second, count2 = _search(server, token, studies // 2)
        if count != 25 or count2 != 25:
            raise RuntimeError(f"incomplete pages: {count}, {count2}")
        return {"first_s": first, "second_s": second, "backfill_wait_s": -1.0 if backfill is None else backfill,
                "rss_growth_kib": float(after - before), "rss_after_kib": float(after)}
    finally:
        server.stop()


def _table_scale(rows: int, permitted: int, postgres: bool, folder: Path | None) -> dict[str, float]:
    import tempfile
    import tracemalloc

    from neuronova.dicomweb.search import orthanc_id
    from neuronova.gate.studies import StudyDirectory
    from neuronova.gate.study_ids import StudyIdTable
    from neuronova.store import open_database
    from tests.unit.fakes import FakeHost

    server = None
    if postgres:
        from tests.support.databases import start_postgres

        server = start_postgres()
        url = server.url
    else:
        url = f"sqlite:///{folder or tempfile.mkdtemp(prefix='cold-table-')}/store.sqlite"
    try:
        db = open_database(url)
        table = StudyIdTable(db)
        started = time.perf_counter()
        for start in range(table.count(), rows, 10_000):  # a reused folder holds them already
            table.write([{"orthanc_id": orthanc_id(f"PAT-{n % 997}", _uid(n)), "study_uid": _uid(n),
                          "patient_id": f"PAT-{n % 997}"} for n in range(start, min(rows, start + 10_000))], [])
        table.analyze()  # as the backfill does when it finishes
        print(f"{rows} rows written in {time.perf_counter() - started:.1f} s ({db.engine.dialect.name})")
        wanted = frozenset(_uid(n) for n in range(0, rows, max(1, rows // permitted)))
        host = FakeHost([])
        directory = StudyDirectory(host, [], 30.0)
        directory.use_table(table, lambda _id: None)
        started = time.perf_counter()
        ordered = directory.ordered(wanted)
        first = time.perf_counter() - started
        started = time.perf_counter()
        directory.ordered(wanted)
        cached = time.perf_counter() - started
        directory.forget_ids()  # as after a deletion through another node: read again from the table
        started = time.perf_counter()
        directory.ordered(wanted)
        again = time.perf_counter() - started
        # The heap a directory keeps for the set (tracemalloc slows Python down: measured apart).
        fresh = StudyDirectory(host, [], 30.0)
        fresh.use_table(table, lambda _id: None)
        tracemalloc.start()
        fresh.ordered(wanted)
        heap, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if len(ordered) != len(wanted) or host.calls:
            raise RuntimeError("the table did not answer every permitted study")
        result = {"permitted": float(len(wanted)), "first_s": first, "cached_s": cached, "after_forget_s": again,
                  "heap_mib": heap / 2**20}
        print(f"{len(wanted)} permitted of {rows}: first ordered() {first * 1000:.0f} ms "
              f"({first * 1e6 / len(wanted):.1f} us per study), cached {cached * 1e6:.0f} us, after forget_ids "
              f"{again * 1000:.0f} ms; heap kept {heap / 2**20:.1f} MiB")
        db.engine.dispose()
        return result
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="data folder, reused between runs (also with --table-rows)")
    parser.add_argument("--table-rows", type=int, default=0, help="measure the table alone, this many rows")
    parser.add_argument("--permitted", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="with --table-rows: on PostgreSQL")
    parser.add_argument("--studies", type=int, default=20000)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="parallel uploads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.table_rows:
        result = _table_scale(args.table_rows, args.permitted, args.postgres, args.data)
        if args.json:
            print(json.dumps(result))
        return
    if args.data is None:
        parser.error("--data is required")
    _ingest(args.data, args.studies, args.threads)
    grants = args.studies + args.studies // 10
    runs = [_measure(args.data, args.studies) for _ in range(args.restarts)]
    for n, run in enumerate(runs):
        print(f"restart {n + 1}: first search {run['first_s'] * 1000:8.0f} ms, second page "
              f"{run['second_s'] * 1000:6.0f} ms, ordering {(run['first_s'] - run['second_s']) * 1e6 / grants:6.1f} "
              f"us/grant; RSS +{run['rss_growth_kib'] / 1024:.1f} MiB (now {run['rss_after_kib'] / 1024:.0f} MiB); "
              f"waited {run['backfill_wait_s']:.1f} s for the order table")
    first = statistics.median(r["first_s"] for r in runs)
    second = statistics.median(r["second_s"] for r in runs)
    summary = {"studies": args.studies, "grants": grants, "first_ms": first * 1000, "second_ms": second * 1000,
               "ordering_us_per_grant": (first - second) * 1e6 / grants,
               "rss_growth_kib": statistics.median(r["rss_growth_kib"] for r in runs)}
    print(f"median: first {summary['first_ms']:.0f} ms, second {summary['second_ms']:.0f} ms, "
          f"{summary['ordering_us_per_grant']:.1f} us per grant")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
