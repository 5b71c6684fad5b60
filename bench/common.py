"""What the benchmarks share: a bare Orthanc beside the gated one, and wrk runs.

Every benchmark measures both in the same run on the same data and prints ratios; the
absolute numbers depend on the machine (2 cores here, shared by client and server).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugin")]

from tests.support.bare_orthanc import BARE_PLUGINS, BareOrthanc, start_bare  # noqa: E402
from tests.support.orthanc_server import OrthancServer, start_orthanc  # noqa: E402

__all__ = ["BARE_PLUGINS", "ROOT", "BareOrthanc", "OrthancServer", "WrkResult", "start_bare", "start_gated", "wrk"]


def start_gated(env: dict[str, str] | None = None, overlay: dict[str, object] | None = None,
                script: str = "scripts/run") -> tuple[OrthancServer, Path]:
    folder = Path(tempfile.mkdtemp(prefix="gated-orthanc-"))
    return start_orthanc(folder, env=env, overlay=overlay, script=script), folder


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
