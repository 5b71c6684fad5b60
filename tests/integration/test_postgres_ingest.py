"""Parallel ingest into a NeuroNova node whose Orthanc index is on PostgreSQL (the scale-out
setup, docs/deployment.md): every store succeeds and every instance is in the index.

Orthanc's PostgreSQL plugin 5.0 runs each transaction SERIALIZABLE and every store updates
the same counter rows, so two index connections storing at once conflict; Orthanc retries a
conflicting transaction 10 times, then fails the store (503). The node renders one index
connection (scripts/py/render_config.py): its stores never conflict with each other, which
this test sees in Orthanc's log as well as in the answers. It also holds that the plugin no
longer calls Orthanc's services before Orthanc has started (orthanc_bridge.py, metrics).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.support.databases import DatabaseServer, create_databases, node_env, start_postgres
from tests.support.orthanc_server import OrthancServer, start_orthanc
from tests.support.tiny_studies import tiny_instance

pytestmark = pytest.mark.integration

THREADS, STUDIES_PER_THREAD = 8, 40
STUDIES = THREADS * STUDIES_PER_THREAD
# Consecutive uploads share patients (the same patient row written by parallel stores) and
# each study is new (the collision check reads the index for each one).
PATIENTS = 13


@dataclass
class Node:
    server: OrthancServer
    database: DatabaseServer


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    database = start_postgres()
    try:
        create_databases(database, "orthanc", "neuronova")
        # The defaults a deployment runs with (HTJ2K renditions written as attachments while
        # the ingest goes on), on PostgreSQL.
        server = start_orthanc(tmp_path_factory.mktemp("pg-ingest"),
                               env={**node_env(database, "orthanc", "neuronova"),
                                    "NEURONOVA_ADMIN_PASSWORD": "pg-ingest-admin"}, timeout=120)
        try:
            yield Node(server, database)
        finally:
            server.stop()
    finally:
        database.stop()


def test_parallel_uploads_all_succeed_without_serialization_conflicts(node: Node) -> None:
    server = node.server
    uids = [f"1.2.826.0.1.3680043.10.5511.{n}" for n in range(STUDIES)]
    blobs = [tiny_instance(uid, f"PAT-PG-{n % PATIENTS}") for n, uid in enumerate(uids)]
    session = requests.Session()

    def post(blob: bytes) -> tuple[int, str]:
        answer = session.post(server.base + "/instances", data=blob, auth=server.admin, timeout=120)
        return answer.status_code, answer.text[:300]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(post, blobs))
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:3]
    stored = session.get(server.base + "/studies", params={"expand": "true"}, auth=server.admin, timeout=60)
    assert stored.status_code == 200
    assert sorted(s["MainDicomTags"]["StudyInstanceUID"] for s in stored.json()) == sorted(uids)
    statistics = session.get(server.base + "/statistics", auth=server.admin, timeout=30).json()
    assert (statistics["CountInstances"], statistics["CountPatients"]) == (STUDIES, PATIENTS)
    log = server.log()
    assert "could not serialize access" not in log  # not even one retried store
    assert "Maximum transactions retries reached" not in log


def test_the_plugin_waits_for_orthanc_to_start_before_calling_it(node: Node) -> None:
    log = node.server.log()
    assert "NeuroNova" in log and "gate armed" in log
    assert "during its initialization" not in log
    metrics = requests.get(node.server.base + "/tools/metrics-prometheus", auth=node.server.admin, timeout=30)
    assert metrics.status_code == 200
    assert "neuronova_htj2k_queue" in metrics.text  # what the plugin published does reach Orthanc
