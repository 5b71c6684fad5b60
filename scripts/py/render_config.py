"""Write the Orthanc configuration that scripts/run starts, from the production orthanc.json.

Orthanc's ${VAR} substitution only yields strings, so the numeric settings that the
environment chooses (ports, StableAge) are written here. Secrets stay ${VAR} references
and are read from the environment by Orthanc itself.

Environment: NEURONOVA_HTTP_PORT, NEURONOVA_DICOM_PORT, NEURONOVA_STABLE_AGE,
NEURONOVA_REMOTE_ACCESS (default false: loopback only), NEURONOVA_DICOM_CGET (off, or
"unaudited" to allow C-GET, which Orthanc cannot audit), NEURONOVA_MAX_BODY_MB (Orthanc's
body and archive-file limits), NEURONOVA_MODALITIES (JSON object,
Orthanc's DicomModalities, checked: dicom_modalities.py), NEURONOVA_CONFIG_OVERLAY (path of a JSON merged on top).

Several nodes on one database (docs/deployment.md): NEURONOVA_POSTGRES_HOST (set: Orthanc's
index goes to PostgreSQL through its PostgreSQL plugin), NEURONOVA_POSTGRES_PORT [5432],
NEURONOVA_POSTGRES_DATABASE [orthanc], NEURONOVA_POSTGRES_USER [orthanc],
NEURONOVA_POSTGRES_PASSWORD (left a ${VAR} reference: Orthanc reads it from the environment),
NEURONOVA_POSTGRES_STORE_DATABASE [neuronova] (the plugin store's database on the same server,
see ``store_url``), NEURONOVA_NODE_NAME (the node's DatabaseServerIdentifier, the "node" of its
audit events, and its own plugin data folder under NEURONOVA_DATA_DIR/nodes/).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any
from urllib.parse import quote

from dicom_modalities import cget_allowed, loopback_only, modalities, refuse_cget


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


POSTGRESQL_INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"  # orthanc-postgresql 5.0
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _postgres(env: dict[str, str]) -> tuple[str, int, str, str]:
    host = env["NEURONOVA_POSTGRES_HOST"]
    port = int(env.get("NEURONOVA_POSTGRES_PORT") or "5432")
    database = env.get("NEURONOVA_POSTGRES_DATABASE") or "orthanc"
    return host, port, database, env.get("NEURONOVA_POSTGRES_USER") or "orthanc"


def store_url(env: dict[str, str]) -> str:
    """The plugin store's SQLAlchemy URL on the PostgreSQL server of Orthanc's index."""
    host, port, _, user = _postgres(env)
    database = env.get("NEURONOVA_POSTGRES_STORE_DATABASE") or "neuronova"
    password = quote(env.get("NEURONOVA_POSTGRES_PASSWORD", ""), safe="")
    return f"postgresql+psycopg://{quote(user, safe='')}:{password}@{host}:{port}/{database}"


def _cluster(config: dict[str, Any], env: dict[str, str]) -> None:
    if env.get("NEURONOVA_POSTGRES_HOST"):
        host, port, database, user = _postgres(env)
        config["Plugins"] = [*config.get("Plugins", []), POSTGRESQL_INDEX_PLUGIN]
        config["PostgreSQL"] = {
            "EnableIndex": True, "EnableStorage": False,  # files stay in the (shared) StorageDirectory
            "Host": host, "Port": port, "Database": database, "Username": user,
            "Password": "${NEURONOVA_POSTGRES_PASSWORD}",
            # Several Orthanc nodes write the same index: the plugin's exclusive lock must be off.
            # One connection per node: plugin 5.0 runs every transaction SERIALIZABLE and each
            # store bumps the same counter rows, so two connections storing at once conflict
            # ("could not serialize"); Orthanc retries 10 times, then the store fails (503).
            # Measured with 8 parallel uploads (docs/runtime-facts.md): 5 connections made a
            # bare Orthanc fail stores too; 1 made none, and cost less than the retries.
            "Lock": False, "EnableSsl": False, "IndexConnectionsCount": 1,
            "MaximumConnectionRetries": 10, "ConnectionRetryInterval": 2,
        }
    name = env.get("NEURONOVA_NODE_NAME", "")
    if name:
        if not NODE_NAME.fullmatch(name):
            raise SystemExit("NEURONOVA_NODE_NAME: letters, digits, '.', '_', '-' (64 at most)")
        # Orthanc tells the nodes of one index apart by this (e.g. for its own housekeeping).
        config["DatabaseServerIdentifier"] = name
        config["IndexDirectory"] = "${NEURONOVA_DATA_DIR}/nodes/" + name + "/orthanc-index"
        neuronova = config.setdefault("NeuroNova", {})
        neuronova["NodeName"] = name
        neuronova["DataDirectory"] = "${NEURONOVA_DATA_DIR}/nodes/" + name + "/neuronova"


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
    allow_cget = cget_allowed(env.get("NEURONOVA_DICOM_CGET", "").lower())
    if not allow_cget:
        refuse_cget(config)
    if env.get("NEURONOVA_MODALITIES"):
        config["DicomModalities"] = modalities(env["NEURONOVA_MODALITIES"], remote, allow_cget)
    _cluster(config, env)
    if env.get("NEURONOVA_CONFIG_OVERLAY"):
        with open(env["NEURONOVA_CONFIG_OVERLAY"], encoding="utf-8") as handle:
            merge(config, json.load(handle))
    return config


if __name__ == "__main__":
    if sys.argv[1:] == ["--store-url"]:
        print(store_url(dict(os.environ)))
        raise SystemExit(0)
    template, destination = sys.argv[1], sys.argv[2]
    rendered = render(template, dict(os.environ))
    with open(destination, "w", encoding="utf-8") as out:
        json.dump(rendered, out, indent=2)
