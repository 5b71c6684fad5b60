"""AI work is done once across the nodes of a cluster (issue 10, point 3): a real cluster from
``scripts/cluster up`` (PostgreSQL, two nodes, nginx) and the real reference service on
loopback, started once for the module.

- A study whose instances arrive through both nodes (C-STORE to node 1, then STOW-RS to node 2
  while node 1's own StableAge runs out) is analysed once, after the whole study is stable.
- ``kill -9`` of the node running a job in the middle of the inference (the service's delay):
  the other node takes the job over once the lease has run out, and one SEG and one SR are
  stored. This test kills a node, so it runs last.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts

from ai_client.reference_service import ReferenceServer, ServiceConfig
from ai_client.testing import mr_head_series, part10
from tests.support.cluster import Cluster, cluster_directory, start_cluster
from tests.support.orthanc_server import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "cluster ai admin password"
SCU_AET = "CLUSTERAISCU"
STABLE_AGE = 2
LEASE_SECONDS = 5  # the smallest Ai.LeaseSeconds allowed: the take-over comes quickly
DELAY_SECONDS = 6.0  # the slow service's delay: long enough to kill a node mid-inference
SLOW = "stroke_risk_slow"


@dataclass
class World:
    cluster: Cluster
    fast: ReferenceServer
    slow: ReferenceServer

    @property
    def admin(self) -> tuple[str, str]:
        return self.cluster.admin

    def jobs(self, base: str, study: str) -> list[dict[str, Any]]:
        answer = requests.get(base + "/neuronova/ai/jobs", params={"study": study}, auth=self.admin, timeout=30)
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    def modalities(self, base: str, study: str) -> list[str]:
        """Modality of every instance of the study (Orthanc's index, shared by the nodes)."""
        found = requests.post(base + "/tools/lookup", data=study, auth=self.admin, timeout=30).json()
        study_id = next(item["ID"] for item in found if item["Type"] == "Study")
        series = requests.get(f"{base}/studies/{study_id}/series", auth=self.admin, timeout=30).json()
        return sorted(s["MainDicomTags"].get("Modality", "") for s in series for _ in s["Instances"])



def head(seed: str, slices: int, description: str) -> list[Dataset]:
    datasets = mr_head_series(seed=seed, slices=slices, patient_id=f"PAT-{seed.upper()}")
    for ds in datasets:
        ds.StudyDescription = description
    return datasets


def c_store(port: int, datasets: list[Dataset]) -> list[int]:
    ae = AE(ae_title=SCU_AET)
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", port, ae_title="NEURONOVA")
    assert assoc.is_established, "C-STORE association refused"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def stow(base: str, datasets: list[Dataset], auth: tuple[str, str]) -> None:
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part10(ds) + b"\r\n"
                    for ds in datasets) + b"--" + boundary.encode() + b"--\r\n"
    answer = requests.post(base + "/dicom-web/studies", data=body, auth=auth, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: scripts/install installs it")
    fast = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=4))
    slow = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=4, answer="seed",
                                                           delay_seconds=DELAY_SECONDS))
    fast.start_background()
    slow.start_background()
    directory = cluster_directory()
    overlay = {"NeuroNova": {"Ai": {
        "PollSeconds": 0.2, "LeaseSeconds": LEASE_SECONDS, "ReadTimeoutSeconds": 60,
        "Rules": [
            {"Name": "split", "StudyDescription": "^SPLIT", "Models": ["stroke_risk"]},
            {"Name": "slow", "StudyDescription": "^SLOW", "Models": [SLOW]},
        ],
        "Models": {SLOW: {"Url": slow.url, "RemoteName": "stroke_risk"}},
    }}}
    cluster = start_cluster(directory, nodes=2, overlay=overlay, env={
        "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD, "NEURONOVA_INFERENCE_URL": fast.url,
        "NEURONOVA_MODALITIES": json.dumps({SCU_AET: [SCU_AET, "127.0.0.1", free_port()]}),
        "NEURONOVA_STABLE_AGE": str(STABLE_AGE),
    })
    try:
        yield World(cluster, fast, slow)
    finally:
        cluster.stop()
        fast.stop()
        slow.stop()
        if cluster.process.returncode == 0:
            shutil.rmtree(directory, ignore_errors=True)


def test_a_study_received_through_both_nodes_gives_one_job_and_one_seg_and_sr(world: World) -> None:
    node_1, node_2 = world.cluster.nodes
    datasets = head("split", slices=6, description="SPLIT across two nodes")
    study = str(datasets[0].StudyInstanceUID)
    assert c_store(node_1.dicom, datasets[:3]) == [0, 0, 0]
    # Node 2 keeps receiving, one instance every 3/4 StableAge: node 1's own StableAge runs out
    # (Orthanc checks once a second) before node 2's last instance, so node 1 reports the study
    # stable with only part of it; node 2's StableAge does not run out in between.
    for ds in datasets[3:]:
        time.sleep(STABLE_AGE * 0.75)
        stow(node_2.http, [ds], world.admin)
    job = wait_for(lambda: (js := world.jobs(world.cluster.balancer, study)) and js[0]["status"] in
                   ("succeeded", "failed") and js[0], 60, "the job of the split study")
    assert (job["status"], job["attempts"], job["rule"]) == ("succeeded", 1, "split"), job
    assert job["result"]["mask"]["frames"] == 6  # the whole study, not node 1's part
    # Both nodes' stable events have come and gone (StableAge after the last instance each):
    # still one job, and the study holds the images, one SEG and one SR.
    time.sleep(STABLE_AGE + 1)
    for base in (node_1.http, node_2.http):
        assert [j["id"] for j in world.jobs(base, study)] == [job["id"]]
        assert world.modalities(base, study) == ["MR"] * 6 + ["SEG", "SR"]
    assert world.fast.counters["inference_ok"] == 1


def test_a_node_killed_mid_inference_loses_its_job_to_the_other_node(world: World) -> None:
    datasets = head("slow", slices=3, description="SLOW inference")
    study = str(datasets[0].StudyInstanceUID)
    assert c_store(world.cluster.nodes[0].dicom, datasets) == [0, 0, 0]
    running = wait_for(lambda: (js := world.jobs(world.cluster.balancer, study)) and js[0]["status"] == "running"
                       and js[0], 60, "the job running")
    victim = running["running_on"]
    names = [n.name for n in world.cluster.nodes]
    assert victim in names, running
    survivor = next(n for n in world.cluster.nodes if n.name != victim)
    # the inference is under way (the service has the request, and sleeps on its answer)
    wait_for(lambda: world.slow.counters["inference_requests"] >= 1, DELAY_SECONDS, "the inference request")
    os.kill(world.cluster.pids()[victim], signal.SIGKILL)

    job = wait_for(lambda: (j := world.jobs(survivor.http, study)[0])["status"] in ("succeeded", "failed") and j,
                   LEASE_SECONDS + DELAY_SECONDS + 45, "the job taken over")
    assert (job["status"], job["attempts"]) == ("succeeded", 2), job  # the killed attempt, then the survivor's
    detail = requests.get(f"{survivor.http}/neuronova/ai/jobs/{job['id']}", auth=world.admin, timeout=30).json()
    assert [e["event"] for e in detail["history"]] == ["succeeded"]  # the dead node recorded nothing
    # nothing lost, nothing done twice: the three images, one SEG, one SR, one job
    assert world.modalities(survivor.http, study) == ["MR"] * 3 + ["SEG", "SR"]
    assert [j["id"] for j in world.jobs(survivor.http, study)] == [job["id"]]
    assert world.slow.counters["inference_requests"] == 2 and world.slow.counters["inference_ok"] >= 1
