"""NEURONOVA_MODALITIES -> Orthanc's DicomModalities, checked (used by render_config.py).

Orthanc 1.13 has no option for the address its DICOM server listens on (it binds every
interface; ``HttpBindAddresses`` is for HTTP only). Without remote access, DICOM is therefore
kept to loopback by permissions instead: every modality must be on a loopback host, nothing is
allowed to unknown peers (``DicomAlwaysAllow*`` false, C-ECHO included) and a modality's
requests must come from its configured host (``DicomCheckModalityHost``). Orthanc's DICOM port
is also bound to loopback then, by the runtime's preload library (scripts/lib/preload.c).

C-GET is refused unless ``NEURONOVA_DICOM_CGET=unaudited``: Orthanc 1.13 tells neither a plugin
nor Lua what its C-GET SCP sends, so a C-GET could not be audited (docs/security.md, "DICOM
network"); C-MOVE is audited (plugin/neuronova/dicom_move.py) and every modality supports it.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

# Orthanc's per-modality permissions (the extended DicomModalities form).
PERMISSIONS = ("AllowEcho", "AllowFind", "AllowFindWorklist", "AllowGet", "AllowMove", "AllowStore",
               "AllowStorageCommitment")
ALWAYS_ALLOW = ("DicomAlwaysAllowEcho", "DicomAlwaysAllowStore", "DicomAlwaysAllowFind",
                "DicomAlwaysAllowFindWorklist", "DicomAlwaysAllowMove", "DicomAlwaysAllowGet")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_only(config: dict[str, Any]) -> None:
    """Without remote access: no DICOM operation for peers that are not configured modalities."""
    config.update({option: False for option in ALWAYS_ALLOW})
    config["DicomCheckModalityHost"] = True


CGET_OPT_IN = "unaudited"


def cget_allowed(value: str) -> bool:
    """NEURONOVA_DICOM_CGET: "" or "off" (the default) refuses C-GET, "unaudited" allows it."""
    if value in ("", "off"):
        return False
    if value == CGET_OPT_IN:
        return True
    raise SystemExit(f"NEURONOVA_DICOM_CGET must be off or {CGET_OPT_IN}, not {value!r}")


def refuse_cget(config: dict[str, Any]) -> None:
    """No C-GET for peers that are not configured modalities either."""
    config["DicomAlwaysAllowGet"] = False


def modalities(raw: str, remote_access: bool, allow_cget: bool = False) -> dict[str, Any]:
    """Two forms per modality: ``[AET, Host, Port]`` (Orthanc allows that modality every
    operation), or ``{"AET", "Host", "Port", "AllowEcho", "AllowStore", "AllowFind",
    "AllowMove", "AllowGet", ...}``, where a permission left out is **refused** (Orthanc itself
    would grant it). Without remote access every Host must be a loopback address. Unless
    ``allow_cget``, C-GET is refused to every modality (the list form gets every permission but
    AllowGet) and a modality asking ``AllowGet`` stops the start. Any problem
    stops the start (SystemExit), like every configuration error."""
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"NEURONOVA_MODALITIES is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise SystemExit("NEURONOVA_MODALITIES must be a JSON object {name: modality}")
    result: dict[str, Any] = {}
    for name, entry in parsed.items():
        if isinstance(entry, list):
            if len(entry) not in (3, 4):
                raise SystemExit(f"modality {name}: [AET, Host, Port] expected")
            aet, host, port = entry[0], entry[1], entry[2]
            rendered: Any = list(entry)
            if not allow_cget:
                rendered = {"AET": aet, "Host": host, "Port": port, **{p: True for p in PERMISSIONS},
                            "AllowGet": False}
                if len(entry) == 4:
                    rendered["Manufacturer"] = entry[3]
        elif isinstance(entry, dict):
            aet, host, port = entry.get("AET"), entry.get("Host"), entry.get("Port")
            unknown = [k for k in entry if k.startswith("Allow") and k not in PERMISSIONS]
            if unknown:
                raise SystemExit(f"modality {name}: unknown permission(s) {unknown}")
            for permission in PERMISSIONS:
                if not isinstance(entry.get(permission, False), bool):
                    raise SystemExit(f"modality {name}: {permission} must be true or false")
            rendered = {**entry, **{p: entry.get(p, False) for p in PERMISSIONS}}
            if rendered["AllowGet"] and not allow_cget:
                raise SystemExit(f"modality {name} asks AllowGet, but C-GET cannot be audited on Orthanc 1.13: "
                                 f"use C-MOVE, or set NEURONOVA_DICOM_CGET={CGET_OPT_IN} to allow it unaudited")
        else:
            raise SystemExit(f"modality {name}: a list [AET, Host, Port] or an object expected")
        if not isinstance(aet, str) or not 0 < len(aet) <= 16:
            raise SystemExit(f"modality {name}: AET must be 1 to 16 characters")
        if not isinstance(host, str) or not host:
            raise SystemExit(f"modality {name}: Host missing")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise SystemExit(f"modality {name}: Port must be a number from 1 to 65535")
        if not remote_access and not _is_loopback(host):
            raise SystemExit(f"modality {name} is at {host}, but remote access is off "
                             "(NEURONOVA_REMOTE_ACCESS=true opens DICOM and HTTP to the network)")
        result[name] = rendered
    return result
