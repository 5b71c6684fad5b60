"""scripts/run's rendering for several nodes on one PostgreSQL (scripts/py/render_config.py)
and scripts/cluster's balancer configuration (scripts/py/cluster.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from neuronova import config

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "py"
ROOT = SCRIPTS.parents[1]


def _load(name: str) -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # render_config imports dicom_modalities as a sibling
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"_scripts_{name}"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def render(**env: str) -> dict[str, Any]:
    result: dict[str, Any] = _load("render_config").render(str(ROOT / "orthanc.json"), env)
    return result


def test_a_node_on_postgresql() -> None:
    rendered = render(NEURONOVA_POSTGRES_HOST="10.0.0.5", NEURONOVA_POSTGRES_PORT="6432",
                      NEURONOVA_POSTGRES_USER="pacs", NEURONOVA_NODE_NAME="node-7")
    assert rendered["Plugins"][-1] == "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
    pg = rendered["PostgreSQL"]
    assert (pg["EnableIndex"], pg["EnableStorage"], pg["Lock"]) == (True, False, False)  # shared index
    assert (pg["Host"], pg["Port"], pg["Database"], pg["Username"]) == ("10.0.0.5", 6432, "orthanc", "pacs")
    assert pg["Password"] == "${NEURONOVA_POSTGRES_PASSWORD}"  # never written into the file
    assert rendered["DatabaseServerIdentifier"] == "node-7"
    assert rendered["NeuroNova"]["NodeName"] == "node-7"
    assert rendered["NeuroNova"]["DataDirectory"] == "${NEURONOVA_DATA_DIR}/nodes/node-7/neuronova"
    assert rendered["StorageDirectory"] == "${NEURONOVA_DATA_DIR}/orthanc-storage"  # shared


def test_a_single_node_is_unchanged() -> None:
    rendered = render()
    assert "PostgreSQL" not in rendered and "DatabaseServerIdentifier" not in rendered
    assert all("PostgreSQL" not in plugin for plugin in rendered["Plugins"])


def test_the_store_url_quotes_the_password() -> None:
    url = _load("render_config").store_url({"NEURONOVA_POSTGRES_HOST": "127.0.0.1",
                                            "NEURONOVA_POSTGRES_PASSWORD": "p@ss/w:rd"})
    assert url == "postgresql+psycopg://orthanc:p%40ss%2Fw%3Ard@127.0.0.1:5432/neuronova"


def test_a_bad_node_name_is_refused() -> None:
    with pytest.raises(SystemExit):
        render(NEURONOVA_NODE_NAME="../other")


def test_the_node_name_reaches_the_settings(tmp_path: Path) -> None:
    section = {"NeuroNova": {"DataDirectory": str(tmp_path)}}
    assert config.load({**section, "DatabaseServerIdentifier": "node-2"}).node_name == "node-2"
    assert config.load({"NeuroNova": {"DataDirectory": str(tmp_path), "NodeName": "a1"}}).node_name == "a1"
    with pytest.raises(config.ConfigError):
        config.load({"NeuroNova": {"DataDirectory": str(tmp_path), "NodeName": "no spaces"}})


def test_the_balancer_lists_every_node_and_streams_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = _load("cluster")
    env = {"NEURONOVA_CLUSTER_DIR": str(tmp_path), "NEURONOVA_DATA_DIR": str(tmp_path / "data"),
           "NEURONOVA_CLUSTER_NODES": "3", "NEURONOVA_HTTP_PORT": "9000",
           "NEURONOVA_NODE_HTTP_PORTS": "9001,9002,9003", "NEURONOVA_NODE_DICOM_PORTS": "9101,9102,9103"}
    c = cluster.Cluster(env)
    described = c.describe()
    assert described == {"balancer": "http://127.0.0.1:9000", "data_dir": str(tmp_path / "data"), "nodes": [
        {"name": f"node-{i}", "http": f"http://127.0.0.1:900{i}", "dicom": 9100 + i} for i in (1, 2, 3)]}
    text = cluster.NGINX_CONF.format(dir=tmp_path, logs=tmp_path, port=9000, upstreams="")
    assert "proxy_request_buffering off" in text and "client_max_body_size 0" in text
    with pytest.raises(SystemExit):
        cluster.Cluster({**env, "NEURONOVA_NODE_HTTP_PORTS": "9001"})
