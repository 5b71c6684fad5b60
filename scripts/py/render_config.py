"""Write the Orthanc configuration that scripts/run starts, from the production orthanc.json.

Orthanc's ${VAR} substitution only yields strings, so the numeric settings that the
environment chooses (ports, StableAge) are written here. Secrets stay ${VAR} references
and are read from the environment by Orthanc itself.

Environment: NEURONOVA_HTTP_PORT, NEURONOVA_DICOM_PORT, NEURONOVA_STABLE_AGE,
NEURONOVA_REMOTE_ACCESS (default false: loopback only), NEURONOVA_MAX_BODY_MB (Orthanc's
body and archive-file limits), NEURONOVA_MODALITIES (JSON object,
Orthanc's DicomModalities, checked: dicom_modalities.py), NEURONOVA_CONFIG_OVERLAY (path of a JSON merged on top).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from dicom_modalities import loopback_only, modalities


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def render(template_path: str, env: dict[str, str]) -> dict[str, Any]:
    with open(template_path, encoding="utf-8") as handle:
        config: dict[str, Any] = json.load(handle)
    config["HttpPort"] = int(env.get("NEURONOVA_HTTP_PORT", "8042"))
    config["DicomPort"] = int(env.get("NEURONOVA_DICOM_PORT", "4242"))
    remote = env.get("NEURONOVA_REMOTE_ACCESS", "false").lower() == "true"
    config["RemoteAccessAllowed"] = remote
    if not remote:
        loopback_only(config)  # dicom_modalities.py: Orthanc 1.13 cannot bind DICOM to loopback
    # Orthanc reads an allowed request's whole body into memory: its limit bounds STOW-RS and
    # uploads (docs/configuration.md). 0 would mean no limit, which is never written here.
    if env.get("NEURONOVA_MAX_BODY_MB"):
        limit = int(env["NEURONOVA_MAX_BODY_MB"])
        if limit < 1:
            raise SystemExit("NEURONOVA_MAX_BODY_MB must be a positive number of megabytes")
        config["MaximumRequestBodySizeMB"] = config["MaximumFileSizeInArchiveMB"] = limit
    if env.get("NEURONOVA_STABLE_AGE"):
        config["StableAge"] = int(env["NEURONOVA_STABLE_AGE"])
    if env.get("NEURONOVA_MODALITIES"):
        config["DicomModalities"] = modalities(env["NEURONOVA_MODALITIES"], remote)
    if env.get("NEURONOVA_CONFIG_OVERLAY"):
        with open(env["NEURONOVA_CONFIG_OVERLAY"], encoding="utf-8") as handle:
            merge(config, json.load(handle))
    return config


if __name__ == "__main__":
    template, destination = sys.argv[1], sys.argv[2]
    rendered = render(template, dict(os.environ))
    with open(destination, "w", encoding="utf-8") as out:
        json.dump(rendered, out, indent=2)
