"""Search at archive scale: QIDO through the gate against bare Orthanc, same data.

    .venv/bin/python -m bench.search_bench [--studies 10000] [--grants 1000] [--patient-studies 50]
                                           [--repeats 40] [--config-overlay FILE] [--json]

Both servers get the same small synthetic studies (one 2x2 instance each, generated with
pydicom and uploaded in parallel). A doctor holds ``--grants`` grants (every n-th study) and
a patient owns ``--patient-studies`` studies. Each search is timed: the first one (cold
caches), repeated ones (the gate's answer cache), and one 0.3 s after an unrelated instance
arrived (what a search costs while modalities send: the caches of this node are stale). The
bare Orthanc answers the same query over all studies (it has no notion of permission).
The gated answer is checked to be complete: every permitted study, none other.

The memory the node spends on plugin state is the growth of the gated Orthanc's resident set
from "studies loaded" to "grants made and every search run", next to the same growth of the
bare Orthanc (which runs the same searches).

Default: Orthanc's SQLite index (the project's single-node setup). ``--config-overlay FILE``
takes a JSON object ``{"gated": {...}, "bare": {...}, "env": {...}}``: Orthanc configuration
merged into the gated node's overlay and into the bare Orthanc's configuration, and
environment for ``scripts/run``; that is how a run points both at one PostgreSQL server
(e.g. the PostgreSQL plugin's settings that scripts/cluster writes, a separate database for
each). ``--postgres`` starts such a server itself and gives the bare Orthanc the gated node's
PostgreSQL settings. The serialization conflicts each Orthanc logged while the studies were
stored are printed (PostgreSQL: a retried transaction each; a store fails after the last
retry). With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import requests

from bench.common import start_bare, start_gated
from tests.support.tiny_studies import tiny_instance, upload

SECRET = "bench-secret-0123456789abcdefghijklmnopq"


def _rss_kib(root_pid: int) -> int:
    """Resident set of the Orthanc process started under ``root_pid`` (scripts/run execs
    through the runtime's shells: the newest descendant named Orthanc)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        names[pid] = text[text.index("(") + 1:text.rindex(")")]
        parents[pid] = int(text[text.rindex(")") + 2:].split()[1])

    def under(pid: int) -> bool:
        while pid > 1:
            if pid == root_pid:
                return True
            pid = parents.get(pid, 0)
        return False

    found = [pid for pid, name in names.items() if name == "Orthanc" and under(pid)]
    if not found:
        return 0
    for line in Path(f"/proc/{max(found)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(call: Callable[[], requests.Response]) -> tuple[float, requests.Response]:
    start = time.perf_counter()
    answer = call()
    return (time.perf_counter() - start) * 1000.0, answer


def _on_postgres(extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A PostgreSQL server of Debian's (tests/support/databases.py) with one database per
    Orthanc: the bare one's index, the gated one's index and its plugin store. Returns the
    server (to stop) and the overlay pointing the gated node at it (the bare one follows
    once the gated node's configuration is rendered: ``_same_index_settings``)."""
    from bench.common import BARE_PLUGINS
    from tests.support.databases import create_databases, node_env, start_postgres

    server = start_postgres()
    create_databases(server, "bare", "gated", "gated_store")
    bare = {"Plugins": [*BARE_PLUGINS, "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"]}
    return server, {"bare": {**bare, **extra.get("bare", {})}, "gated": extra.get("gated", {}),
                    "env": {**node_env(server, "gated", "gated_store"), **extra.get("env", {})}}


def _same_index_settings(gated_folder: Path, database: Any) -> dict[str, Any]:
    """The PostgreSQL section scripts/run rendered for the gated node, pointed at the bare
    Orthanc's database: both compete for the index under the same settings (an earlier run
    gave the bare one a single connection and the gated five, and blamed the plugin for the
    serialization conflicts that five connections make; docs/runtime-facts.md)."""
    from sqlalchemy import make_url

    rendered = json.loads((gated_folder / "orthanc.json").read_text())["PostgreSQL"]
    return {**rendered, "Database": "bare", "Password": make_url(database.url).password}


def _conflicts(log: str) -> dict[str, int]:
    """Serialization conflicts Orthanc logged (each one a retried transaction) and stores
    that failed after Orthanc's last retry."""
    return {"retried": log.count("could not serialize access"),
            "failed": log.count("Maximum transactions retries reached")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--patient-studies", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=40, help="timed searches per workload and kind")
    parser.add_argument("--threads", type=int, default=8, help="parallel uploads")
    parser.add_argument("--config-overlay", type=Path, help="JSON {gated, bare, env} (e.g. PostgreSQL)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a PostgreSQL server (Debian's) and put both Orthancs' index on it")
    parser.add_argument("--run-script", default="scripts/run", help="scripts/run of another checkout, to compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra: dict[str, Any] = json.loads(args.config_overlay.read_text()) if args.config_overlay else {}
    database = None
    if args.postgres:
        database, extra = _on_postgres(extra)
    every = max(1, args.studies // max(1, args.grants))
    uids = [f"1.2.826.0.1.3680043.10.1234.{n}.{time.time_ns() % 10**9}" for n in range(args.studies)]
    granted = uids[::every][:args.grants]
    granted_set = set(granted)
    patient_of = {u: ("PAT-OWN" if n < args.patient_studies else f"PAT-{n % 997}") for n, u in enumerate(uids)}
    index = "PostgreSQL" if args.postgres else f"overlay {args.config_overlay}" if args.config_overlay else "SQLite"
    print(f"{args.studies} studies, a doctor with {len(granted)} grants, a patient with {args.patient_studies} "
          f"studies; {args.repeats} timed searches per kind; index: {index}\n")
    started = time.perf_counter()
    blobs = [tiny_instance(u, patient_of[u], modality="CT" if n % 3 else "MR") for n, u in enumerate(uids)]
    print(f"generated in {time.perf_counter() - started:.1f} s")
    gated, gated_folder = start_gated({"NEURONOVA_JWT_SECRET": SECRET, "NEURONOVA_ADMIN_PASSWORD": "bench-admin",
                                       **extra.get("env", {})}, script=args.run_script,
                                      overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}, **extra.get("gated", {})})
    if database is not None:
        extra["bare"]["PostgreSQL"] = _same_index_settings(gated_folder, database)
    try:
        bare = start_bare(extra.get("bare"))
    except Exception:
        gated.stop()
        raise
    results: dict[str, dict[str, float]] = {}
    memory: dict[str, int] = {}
    try:
        for name, base, auth in (("bare", bare.base, None), ("gated", gated.base, gated.admin)):
            started = time.perf_counter()
            upload(base, blobs, auth=auth, threads=args.threads)
            print(f"{name}: {len(blobs)} studies stored in {time.perf_counter() - started:.1f} s")
        ingest = {"bare": _conflicts(bare.log()), "gated": _conflicts(gated.log())}
        print(f"serialization conflicts during ingest: {ingest}")
        memory["bare_loaded_kib"] = _rss_kib(bare.process.pid)
        memory["gated_loaded_kib"] = _rss_kib(gated.process.pid)
        session = requests.Session()

        def grant(uid: str) -> None:
            session.post(f"{gated.base}/neuronova/studies/{uid}/grants", auth=gated.admin, timeout=30,
                         json={"subject": "dr.scale", "relation": "reading"}).raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(grant, granted))
        print(f"gated: {len(granted)} grants made in {time.perf_counter() - started:.1f} s\n")
        now = int(time.time())
        doctor = jwt.encode({"sub": "dr.scale", "exp": now + 7200, "realm_access": {"roles": ["doctor"]}},
                            SECRET, algorithm="HS256")
        patient = jwt.encode({"sub": "pat.own", "exp": now + 7200, "patient_id": "PAT-OWN",
                              "realm_access": {"roles": ["patient"]}}, SECRET, algorithm="HS256")
        page_offset = len(granted) // 2
        # name: (token, query, the complete answer expected) - bare Orthanc answers the same
        # query over every study (a patient's: with its PatientID, as an unfiltered PACS would).
        workloads: dict[str, tuple[str, dict[str, str], set[str]]] = {
            "doctor all": (doctor, {"limit": str(2 * len(granted))}, set(granted)),
            "doctor page": (doctor, {"limit": "25", "offset": str(page_offset)}, set()),
            "doctor CT": (doctor, {"ModalitiesInStudy": "CT", "limit": str(2 * len(granted))},
                          {u for n, u in enumerate(uids) if n % 3 and u in granted_set}),
            "patient all": (patient, {}, {u for u in uids if patient_of[u] == "PAT-OWN"}),
        }
        filler = iter(range(10**9))
        for name, (token, params, expected) in workloads.items():
            headers = {"Authorization": f"Bearer {token}"}

            def gate_call(p: dict[str, str] = params, h: dict[str, str] = headers) -> requests.Response:
                return session.get(gated.base + "/dicom-web/studies", params=p, headers=h, timeout=120)

            bare_params = {"PatientID": "PAT-OWN"} if token == patient else params

            def bare_call(p: dict[str, str] = bare_params) -> requests.Response:
                return session.get(bare.base + "/dicom-web/studies", params=p, timeout=120)

            first, answer = _timed(gate_call)
            found = {item["0020000D"]["Value"][0] for item in answer.json()}
            complete = found == expected
            if name == "doctor page":
                complete = len(found) == 25 and found <= granted_set
            warm = [_timed(gate_call)[0] for _ in range(args.repeats)]
            changed = []
            for _ in range(args.repeats):
                blob = tiny_instance(f"1.2.826.0.1.3680043.10.99.{next(filler)}.{now}", "PAT-FILLER")
                session.post(gated.base + "/instances", data=blob, auth=gated.admin, timeout=30).raise_for_status()
                time.sleep(0.3)  # Orthanc reports the change to the plugin asynchronously
                changed.append(_timed(gate_call)[0])
            bare_first = _timed(bare_call)[0]
            bare_times = [_timed(bare_call)[0] for _ in range(args.repeats)]
            row = {"first_ms": first, "warm_p50_ms": statistics.median(warm), "warm_p99_ms": _percentile(warm, 0.99),
                   "after_change_p50_ms": statistics.median(changed),
                   "after_change_p99_ms": _percentile(changed, 0.99), "bare_first_ms": bare_first,
                   "bare_p50_ms": statistics.median(bare_times), "bare_p99_ms": _percentile(bare_times, 0.99),
                   "answers": float(len(found)), "complete": float(complete)}
            results[name] = {k: round(v, 2) for k, v in row.items()}
            verdict = ", complete" if complete else ", INCOMPLETE"
            print(f"{name:12} {len(found):5} answers{verdict}"
                  f"   first {first:8.1f} ms (bare {bare_first:7.1f})")
            print(f"{'':12} repeated     p50 {row['warm_p50_ms']:7.1f}  p99 {row['warm_p99_ms']:7.1f} ms   "
                  f"bare p50 {row['bare_p50_ms']:7.1f}  p99 {row['bare_p99_ms']:7.1f} ms")
            print(f"{'':12} after change p50 {row['after_change_p50_ms']:7.1f}  "
                  f"p99 {row['after_change_p99_ms']:7.1f} ms\n")
        memory["bare_after_kib"] = _rss_kib(bare.process.pid)
        memory["gated_after_kib"] = _rss_kib(gated.process.pid)
    finally:
        bare.stop()
        gated.stop()
        if database is not None:
            database.stop()
    # Both nodes hold the same index: the difference once the studies are loaded is the plugin
    # at rest (Python, its modules, its caches); the gated node's growth from then on is what
    # grants and searches made the plugin hold (Orthanc's own growth over the same searches
    # is the bare node's, which answers bigger searches: it sees everything).
    plugin_rest = memory["gated_loaded_kib"] - memory["bare_loaded_kib"]
    plugin_growth = memory["gated_after_kib"] - memory["gated_loaded_kib"]
    print(f"memory (RSS): gated {memory['gated_loaded_kib'] / 1024:.0f} -> {memory['gated_after_kib'] / 1024:.0f} MiB,"
          f" bare {memory['bare_loaded_kib'] / 1024:.0f} -> {memory['bare_after_kib'] / 1024:.0f} MiB: the plugin "
          f"{plugin_rest / 1024:.0f} MiB at rest, grants and searches added {plugin_growth / 1024:.1f} MiB")
    if args.json:
        print(json.dumps({"studies": args.studies, "grants": len(granted), "patient_studies": args.patient_studies,
                          "searches": results, "memory_kib": memory, "ingest_conflicts": ingest,
                          "plugin_at_rest_kib": plugin_rest, "plugin_growth_kib": plugin_growth}))


if __name__ == "__main__":
    main()
