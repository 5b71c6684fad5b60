"""The plugin's configuration: the ``"NeuroNova"`` section of Orthanc's configuration.

Each domain package parses its own sub-section (``Gate``, ``Htj2k``, ``Ai``) in its
``settings.py``; this module holds the top level and the small parsing helpers they share.
Any problem raises :class:`ConfigError`, which leaves the gate closed.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

SECTION = "NeuroNova"


def section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a JSON object")
    return value


def option(parent: Mapping[str, Any], key: str, kind: type[T], default: T) -> T:
    """Read ``parent[key]`` as ``kind`` (ints may be given as strings, since Orthanc's
    ``${VAR}`` substitution only yields strings)."""
    if key not in parent or parent[key] is None:
        return default
    value = parent[key]
    if kind is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True  # type: ignore[return-value]
        if lowered in ("false", "0", "no", "off", ""):
            return False  # type: ignore[return-value]
    if kind in (int, float) and isinstance(value, str) and not isinstance(value, bool):
        try:
            return kind(value.strip())  # type: ignore[call-arg]
        except ValueError as exc:
            raise ConfigError(f"{key} must be a number, not {value!r}") from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be of type {kind.__name__}, not {type(value).__name__}")
    return value


def string_list(parent: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = parent.get(key)
    if value is None:
        return default
    if isinstance(value, str):  # "a,b" from an environment variable
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Settings:
    data_dir: str
    database_url: str
    node_name: str  # names this node in the shared audit trail (one trail for the cluster)
    gate: Mapping[str, Any]
    htj2k: Mapping[str, Any]
    ai: Mapping[str, Any]


def load(orthanc_config: Mapping[str, Any]) -> Settings:
    """Parse the top level of the ``NeuroNova`` section (sub-sections are parsed by their packages)."""
    if SECTION not in orthanc_config:
        raise ConfigError(f'the Orthanc configuration has no "{SECTION}" section')
    nn = section(orthanc_config, SECTION)
    data_dir = option(nn, "DataDirectory", str, "")
    if not data_dir:
        raise ConfigError("NeuroNova.DataDirectory is required")
    os.makedirs(data_dir, exist_ok=True)
    database_url = option(nn, "Database", str, "") or (
        "sqlite:///" + os.path.join(os.path.abspath(data_dir), "neuronova.sqlite")
    )
    # NodeName, else Orthanc's DatabaseServerIdentifier (set per node on a shared index), else
    # the host name: whatever tells the nodes of one store apart.
    node_name = (option(nn, "NodeName", str, "") or str(orthanc_config.get("DatabaseServerIdentifier") or "")
                 or socket.gethostname())[:64]
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", node_name):
        raise ConfigError("NeuroNova.NodeName: letters, digits, '.', '_', ':', '-' only")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        node_name=node_name,
        gate=section(nn, "Gate"),
        htj2k=section(nn, "Htj2k"),
        ai=section(nn, "Ai"),
    )
