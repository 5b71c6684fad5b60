"""Scale-out: WADO-RS frames and QIDO through the balancer with 2 nodes against 1 node, and
the memory each node spends.

    .venv/bin/python -m bench.cluster_bench [--seconds 8] [--slices 20] [--clients 4,32] [--json]

Two runs of ``scripts/cluster up`` (real PostgreSQL, nginx in front), one with 1 node and one
with 2, each loaded with the same study (512x512 16-bit CT slices from a real CT, the same
files) and the same grant; wrk drives the clients through the balancer as a doctor with that
grant. The memory is each node's resident set (RSS of its process tree: scripts/run and the
Orthanc it starts) after the load. With ``--json`` the last line is one JSON object.
Loopback only; a benchmark, not a test (2 cores here, shared by wrk, nginx and the nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import jwt
import requests

from bench.common import WrkResult, wrk
from tests.support.cluster import Cluster, cluster_directory, start_cluster
from tests.support.dicom_factory import Study, make_study

SECRET = "cluster-bench-secret-0123456789abcdefghijk"
ADMIN_PASSWORD = "cluster bench admin"
UNCOMPRESSED = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
ANY_TS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, ()))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def load(cluster: Cluster, study: Study) -> None:
    for blob in study.files():
        requests.post(cluster.nodes[0].http + "/instances", data=blob, auth=cluster.admin,
                      timeout=60).raise_for_status()
    requests.post(f"{cluster.balancer}/neuronova/studies/{study.study_uid}/grants", auth=cluster.admin,
                  json={"subject": "dr.bench", "relation": "reading"}, timeout=10).raise_for_status()


def run(nodes: int, study: Study, seconds: int, clients: list[int]) -> tuple[dict[str, WrkResult], dict[str, float]]:
    directory = cluster_directory()
    cluster = start_cluster(directory, nodes=nodes, env={"NEURONOVA_JWT_SECRET": SECRET,
                                                         "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    results: dict[str, WrkResult] = {}
    try:
        load(cluster, study)
        token = jwt.encode({"sub": "dr.bench", "exp": int(time.time()) + 3600, "realm_access": {"roles": ["doctor"]}},
                           SECRET, algorithm="HS256")
        auth = {"Authorization": f"Bearer {token}"}
        s, se = study.study_uid, study.series_uids[0]
        frames = [f"/dicom-web/studies/{s}/series/{se}/instances/{i}/frames/1" for i in study.sop_uids]
        workloads = {
            "frames, uncomp.": (frames, {**auth, "Accept": UNCOMPRESSED}),
            "frames, any TS": (frames, {**auth, "Accept": ANY_TS}),
            "QIDO studies": (["/dicom-web/studies?PatientID=BENCH"], auth),
        }
        time.sleep(2.0)  # the grant reaches every node (within 1 s), renditions settle
        for name, (paths, headers) in workloads.items():
            for count in clients:
                wrk(cluster.balancer, paths, headers, seconds=2, connections=count)  # warm every node
                results[f"{name} {count}"] = wrk(cluster.balancer, paths, headers, seconds=seconds, connections=count)
        memory = {name: rss_mb(pid) for name, pid in cluster.pids().items() if name.startswith("node-")}
    finally:
        cluster.stop()
        if cluster.process.returncode == 0:
            shutil.rmtree(directory, ignore_errors=True)
    return results, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--clients", default="4,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    study = make_study("693_UNCR.dcm", patient_id="BENCH", patient_name="BENCH^CT", slices=args.slices)
    print(f"{args.slices} slices 512x512x16, {args.seconds} s per run (wrk), through nginx\n")
    one, memory_one = run(1, study, args.seconds, clients)
    two, memory_two = run(2, study, args.seconds, clients)
    ratios: dict[str, float] = {}
    for key in one:
        ratios[key] = round(two[key].requests_per_second / one[key].requests_per_second, 2)
        print(f"{key:20} 1 node   {one[key].line()}   non-2xx {one[key].errors}")
        print(f"{key:20} 2 nodes  {two[key].line()}   non-2xx {two[key].errors}")
        print(f"{key:20} ratio    {ratios[key]:9.2f}x throughput   "
              f"p99 {two[key].p99_ms - one[key].p99_ms:+.2f} ms\n")
    print(f"RSS per node after the load, MiB: 1 node {memory_one}; 2 nodes {memory_two}")
    if args.json:
        print(json.dumps({
            "throughput_2_vs_1": ratios,
            "requests_per_second": {"1": {k: round(v.requests_per_second) for k, v in one.items()},
                                    "2": {k: round(v.requests_per_second) for k, v in two.items()}},
            "p99_ms": {"1": {k: v.p99_ms for k, v in one.items()}, "2": {k: v.p99_ms for k, v in two.items()}},
            "rss_mb_per_node": {"1": memory_one, "2": memory_two},
        }))


if __name__ == "__main__":
    main()
