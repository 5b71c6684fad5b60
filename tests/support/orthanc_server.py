"""Start a real Orthanc with the NeuroNova plugin through scripts/run, on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


def stop_process(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, timeout: float = 30.0,
                 kill: Callable[[], None] | None = None) -> None:
    """Ask ``process`` to stop with ``sig``; after ``timeout`` seconds, ``kill`` it (SIGKILL
    by default) and reap it."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        (kill or process.kill)()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StartedByScript:
    """What scripts/run and scripts/cluster both give: the admin's password and a log file."""

    admin_password: str
    log_path: Path

    @property
    def admin(self) -> tuple[str, str]:
        return ("admin", self.admin_password)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class OrthancServer(StartedByScript):
    process: subprocess.Popen[bytes]
    base: str
    http_port: int
    dicom_port: int
    data_dir: Path
    admin_password: str
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)


def orthanc_pid(server: OrthancServer) -> int:
    """scripts/run execs its way down to Orthanc (same PID); else find it in the session."""
    pid = server.process.pid
    if Path(f"/proc/{pid}/comm").read_text().strip() == "Orthanc":
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == pid and (entry / "comm").read_text().strip() == "Orthanc":
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("no Orthanc process found")


def start_orthanc(data_dir: Path, *, env: dict[str, str] | None = None, overlay: dict[str, Any] | None = None,
                  wait_status: int | None = 200, timeout: float = 60.0, script: str = "scripts/run",
                  http_port: int | None = None, dicom_port: int | None = None) -> OrthancServer:
    """Run ``scripts/run`` (the README's command) and wait until /neuronova/health answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    http_port = http_port or free_port()
    dicom_port = dicom_port or free_port()
    full_env = {
        **os.environ,
        "NEURONOVA_DATA_DIR": str(data_dir),
        "NEURONOVA_HTTP_PORT": str(http_port),
        "NEURONOVA_DICOM_PORT": str(dicom_port),
        **(env or {}),
    }
    if overlay is not None:
        overlay_path = data_dir / "overlay.json"
        overlay_path.write_text(json.dumps(overlay))
        full_env["NEURONOVA_CONFIG_OVERLAY"] = str(overlay_path)
    log_path = data_dir / "orthanc.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([str(ROOT / script)], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{http_port}"
    password = full_env.get("NEURONOVA_ADMIN_PASSWORD", "")
    deadline = time.monotonic() + timeout
    server = OrthancServer(process, base, http_port, dicom_port, data_dir, password, log_path)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            answer = requests.get(base + "/neuronova/health", timeout=2)
            if wait_status is None or answer.status_code == wait_status:
                if not password:
                    server.admin_password = (data_dir / "secrets" / "admin-password").read_text().strip()
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not become healthy in {timeout} s:\n{server.log()[-4000:]}")
