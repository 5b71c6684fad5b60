"""A plain Orthanc with the DICOMweb plugin at /dicom-web/ (no NeuroNova, no authentication), in
the same runtime as the gated one: the reference the benchmarks and the conformance tests
compare NeuroNova with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.orthanc_server import ROOT, free_port

BARE_PLUGINS = ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/share/orthanc/plugins/libOrthancGdcm.so"]


@dataclass
class BareOrthanc:
    process: subprocess.Popen[bytes]
    base: str
    dicom_port: int
    folder: Path

    @property
    def dicomweb(self) -> str:
        return self.base + "/dicom-web"

    def log(self) -> str:
        return (self.folder / "orthanc.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


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
    command = [str(ROOT / "scripts" / "runtime-exec"), "/usr/sbin/Orthanc", str(folder / "orthanc.json")]
    with open(folder / "orthanc.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "NEURONOVA_BIND_PATHS": str(folder)})
    base = f"http://127.0.0.1:{http_port}"
    for _ in range(150):
        if process.poll() is not None:
            raise RuntimeError(f"bare Orthanc exited with {process.returncode}")
        try:
            if requests.get(base + "/system", timeout=1).ok:
                return BareOrthanc(process, base, dicom_port, folder)
        except requests.ConnectionError:
            time.sleep(0.2)
    process.terminate()
    process.wait(timeout=30)
    raise RuntimeError("bare Orthanc did not start")
