"""What the benchmarks share: a bare Orthanc beside the gated one, and wrk runs.

Every benchmark measures both in the same run on the same data and prints ratios; the
absolute numbers depend on the machine (2 cores here, shared by client and server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugin")]

from tests.support.orthanc_server import OrthancServer, free_port, start_orthanc  # noqa: E402


@dataclass
class BareOrthanc:
    process: subprocess.Popen[bytes]
    base: str
    dicom_port: int
    folder: Path

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


BARE_PLUGINS = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/share/orthanc/plugins/libOrthancGdcm.so"]


def start_bare(extra: dict[str, object] | None = None) -> BareOrthanc:
    """Stock Orthanc + DICOMweb plugin at /dicom-web/ (and GDCM as NeuroNova loads it), no
    NeuroNova, no authentication: the same runtime as the gated one (scripts/runtime-exec)."""
    folder = Path(tempfile.mkdtemp(prefix="bare-orthanc-"))
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "bare", "HttpPort": http_port, "DicomPort": dicom_port, "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": BARE_PLUGINS, "DicomAlwaysAllowStore": True,
        "Gdcm": {"Enable": True, "RestrictTransferSyntaxes": [f"1.2.840.10008.1.2.4.9{n}" for n in range(4)]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, **(extra or {}),
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    command = [str(ROOT / "scripts" / "runtime-exec"), "/usr/sbin/Orthanc", str(folder / "orthanc.json")]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "NEURONOVA_BIND_PATHS": str(folder)})
    base = f"http://127.0.0.1:{http_port}"
    for _ in range(150):
        try:
            if requests.get(base + "/system", timeout=1).ok:
                return BareOrthanc(process, base, dicom_port, folder)
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("bare Orthanc did not start")


def start_gated(env: dict[str, str] | None = None) -> tuple[OrthancServer, Path]:
    folder = Path(tempfile.mkdtemp(prefix="gated-orthanc-"))
    return start_orthanc(folder, env=env), folder


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    def line(self) -> str:
        return f"{self.requests_per_second:9.0f} req/s   p50 {self.p50_ms:7.2f} ms   p99 {self.p99_ms:7.2f} ms"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([0-9.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(base: str, paths: list[str], headers: dict[str, str], seconds: int = 8, connections: int = 4) -> WrkResult:
    """Run wrk with ``connections`` concurrent clients cycling through ``paths`` (loopback only)."""
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError("benchmarks only target loopback")
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua_paths = ",".join(json.dumps(p) for p in paths)
    lua_headers = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    script.write(f"local paths = {{{lua_paths}}}\nlocal n = 0\n{lua_headers}"
                 "request = function()\n  n = n + 1\n  return wrk.format('GET', paths[(n % #paths) + 1])\nend\n"
                 "done = function(summary, latency, requests)\n"
                 "  io.write(string.format('NON2XX %d\\n', summary.errors.status))\nend\n")
    script.close()
    command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency",
               "-s", script.name, base]
    output = subprocess.run(
        command,
        check=True, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"NON2XX (\d+)", output).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, errors)
