"""Start a real cluster through ``scripts/cluster up`` (PostgreSQL, N nodes, nginx) and wait
until its ``cluster.json`` is written and the balancer answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.orthanc_server import ROOT, StartedByScript, free_port, stop_process


@dataclass(frozen=True)
class ClusterNode:
    name: str
    http: str
    dicom: int


@dataclass
class Cluster(StartedByScript):
    process: subprocess.Popen[bytes]
    directory: Path
    balancer: str
    nodes: list[ClusterNode]
    data_dir: Path
    admin_password: str
    log_path: Path

    def pids(self) -> dict[str, int]:
        """PIDs of what scripts/cluster started, by name ("postgres", "node-1", ..., "nginx")."""
        pids: dict[str, int] = json.loads((self.directory / "pids.json").read_text())
        return pids

    def stop(self) -> None:
        stop_process(self.process, timeout=90, kill=self._kill_all)

    def _kill_all(self) -> None:
        # Its children run in sessions of their own: each is killed by its PID.
        pids = self.pids() if (self.directory / "pids.json").exists() else {}
        for pid in [self.process.pid, *pids.values()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def cluster_directory() -> Path:
    """A fresh folder that PostgreSQL's own user can reach (pytest's tmp_path is private to
    root, and PostgreSQL refuses to run as root)."""
    directory = Path(tempfile.mkdtemp(prefix="neuronova-cluster-", dir="/tmp"))
    directory.chmod(0o755)
    return directory


def start_cluster(directory: Path, *, nodes: int = 2, env: dict[str, str] | None = None,
                  overlay: dict[str, Any] | None = None, timeout: float = 240.0) -> Cluster:
    full_env = {**os.environ, "NEURONOVA_CLUSTER_DIR": str(directory), "NEURONOVA_CLUSTER_NODES": str(nodes),
                "NEURONOVA_HTTP_PORT": str(free_port()), **(env or {})}
    if overlay is not None:
        overlay_path = directory / "overlay.json"
        overlay_path.write_text(json.dumps(overlay))
        full_env["NEURONOVA_CONFIG_OVERLAY"] = str(overlay_path)
    log_path = directory / "cluster.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([str(ROOT / "scripts" / "cluster"), "up"], env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    description = directory / "cluster.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"scripts/cluster exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if description.exists():
            raw = json.loads(description.read_text())
            data_dir = Path(raw["data_dir"])
            password = full_env.get("NEURONOVA_ADMIN_PASSWORD") or (
                data_dir / "secrets" / "admin-password").read_text().strip()
            cluster = Cluster(process, directory, raw["balancer"],
                              [ClusterNode(n["name"], n["http"], int(n["dicom"])) for n in raw["nodes"]],
                              data_dir, password, log_path)
            if requests.get(cluster.balancer + "/neuronova/health", timeout=5).status_code == 200:
                return cluster
        time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=90)
    raise RuntimeError(f"the cluster did not come up in {timeout} s:\n{log_path.read_text()[-4000:]}")
