"""scripts/cluster up: PostgreSQL, N NeuroNova nodes and nginx in front, until SIGTERM.

Started by scripts/cluster (which installs what is missing and prepares the secrets the way
scripts/run does, in NEURONOVA_CLUSTER_DIR/data/secrets). Everything runs in the foreground
as children of this process; on SIGTERM or SIGINT each is stopped by its PID, the balancer
first, PostgreSQL last. docs/deployment.md says what a real deployment does differently.

Layout of NEURONOVA_CLUSTER_DIR:
    cluster.json      what is running (written once everything answers; removed at stop)
    pids.json         {"postgres": pid, "node-1": pid, ..., "nginx": pid} (e.g. to kill -9 a node)
    postgres/         the PostgreSQL cluster (initdb), owned by the postgres user under root
    data/             NEURONOVA_DATA_DIR of every node: secrets/, orthanc-storage/ (shared),
                      nodes/<name>/ (each node's own plugin folder), orthanc-<name>.json
    nginx/            the balancer's configuration
    logs/             postgres.log, <node>.log, nginx.log

Environment: NEURONOVA_CLUSTER_DIR, NEURONOVA_CLUSTER_NODES [2], NEURONOVA_HTTP_PORT [8042]
(the balancer), NEURONOVA_POSTGRES_PORT [a free port], NEURONOVA_NODE_HTTP_PORTS and
NEURONOVA_NODE_DICOM_PORTS (comma-separated, one per node) [free ports], and whatever
scripts/run reads (secrets, NEURONOVA_CONFIG_OVERLAY, ...), passed on to every node.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql")  # Debian's postgresql package: /usr/lib/postgresql/<major>/bin
PG_USER = "neuronova"  # the cluster's superuser; Orthanc and the plugin store connect as it
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(program: str) -> str:
    majors = sorted((p for p in PG_BIN.glob("*/bin") if (p / program).exists()),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not majors:
        raise SystemExit(f"{program} not found under {PG_BIN} (scripts/install installs Debian's postgresql)")
    return str(majors[-1] / program)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM


@dataclass
class Node:
    name: str
    http: int
    dicom: int


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.dir = Path(env["NEURONOVA_CLUSTER_DIR"]).resolve()
        self.data = Path(env["NEURONOVA_DATA_DIR"]).resolve()
        self.logs = self.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.count = int(env.get("NEURONOVA_CLUSTER_NODES") or "2")
        if not 1 <= self.count <= 16:
            raise SystemExit("NEURONOVA_CLUSTER_NODES must be between 1 and 16")
        self.balancer_port = int(env.get("NEURONOVA_HTTP_PORT") or "8042")
        self.pg_port = int(env.get("NEURONOVA_POSTGRES_PORT") or free_port())
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.as_root = os.getuid() == 0
        http_ports = _ports(env.get("NEURONOVA_NODE_HTTP_PORTS", ""), self.count, "NEURONOVA_NODE_HTTP_PORTS")
        dicom_ports = _ports(env.get("NEURONOVA_NODE_DICOM_PORTS", ""), self.count, "NEURONOVA_NODE_DICOM_PORTS")
        self.nodes = [Node(f"node-{i + 1}", http_ports[i], dicom_ports[i]) for i in range(self.count)]

    # -- children -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              stop_signal: int = signal.SIGTERM, **kwargs: Any) -> subprocess.Popen[bytes]:
        log_file: IO[bytes]
        with open(self.logs / f"{name}.log", "ab") as log_file:
            process = subprocess.Popen(argv, env=env or self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
        self.children.append(Child(name, process, stop_signal))
        # Rewritten at each start: whoever must clean up after a stuck start-up finds every PID.
        (self.dir / "pids.json").write_text(json.dumps({c.name: c.process.pid for c in self.children}) + "\n")
        return process

    def stop_all(self) -> None:
        # Reverse order of start: the balancer, the nodes (together), PostgreSQL last.
        for group in _groups(list(reversed(self.children))):
            for child in group:
                if child.process.poll() is None:
                    log(f"stopping {child.name} (pid {child.process.pid})")
                    child.process.send_signal(child.stop_signal)
            for child in group:
                try:
                    child.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log(f"{child.name} (pid {child.process.pid}) did not stop in {STOP_TIMEOUT:.0f} s: killed")
                    child.process.kill()
                    child.process.wait(timeout=10)

    def check_alive(self, name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}; end of {self.logs / name}.log:\n{tail}")

    # -- PostgreSQL -----------------------------------------------------------------------

    def pg_password(self) -> str:
        path = self.data / "secrets" / "postgres-password"
        if not path.exists():
            old = os.umask(0o077)
            try:
                path.write_text(secrets.token_urlsafe(24) + "\n")
            finally:
                os.umask(old)
        return path.read_text().strip()

    def start_postgres(self) -> None:
        pgdata = self.dir / "postgres"
        owner: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []} if self.as_root else {}
        password = self.pg_password()
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(mode=0o700, exist_ok=True)
            pwfile = self.dir / "postgres.pw"
            pwfile.write_text(password + "\n")
            if self.as_root:
                # PostgreSQL refuses to run as root: its folder belongs to the postgres user,
                # who must be able to reach it.
                shutil.chown(pgdata, "postgres", "postgres")
                shutil.chown(pwfile, "postgres", "postgres")
                reach = subprocess.run(["/usr/sbin/runuser", "-u", "postgres", "--", "/usr/bin/test", "-w",
                                        str(pgdata)], check=False)
                if reach.returncode:
                    pwfile.unlink()
                    raise SystemExit(f"the postgres user cannot reach {pgdata}: NEURONOVA_CLUSTER_DIR must be in a "
                                     "folder others may traverse (e.g. under /tmp or /srv), or run as another user")
            pwfile.chmod(0o600)
            try:
                subprocess.run([pg_bin("initdb"), "-D", str(pgdata), "-U", PG_USER, "--pwfile", str(pwfile),
                                "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                               check=True, stdout=subprocess.DEVNULL, cwd="/", **owner)
            finally:
                pwfile.unlink()
        # Loopback TCP only: no Unix socket (nothing else on the machine needs it).
        self.spawn("postgres", [pg_bin("postgres"), "-D", str(pgdata), "-c", "listen_addresses=127.0.0.1",
                                "-c", f"port={self.pg_port}", "-c", "unix_socket_directories=",
                                "-c", "max_connections=300"],
                   stop_signal=signal.SIGINT, cwd="/", **owner)  # SIGINT: PostgreSQL's fast shutdown
        deadline = time.monotonic() + 60
        while True:
            self.check_alive("postgres", self.children[-1].process)
            try:
                with psycopg.connect(host="127.0.0.1", port=self.pg_port, user=PG_USER, password=password,
                                     dbname="postgres", autocommit=True, connect_timeout=2) as connection:
                    existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
                    for name in ("orthanc", "neuronova"):  # Orthanc's index; the plugin store
                        if name not in existing:
                            connection.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        log(f"PostgreSQL on 127.0.0.1:{self.pg_port} (databases orthanc, neuronova)")

    # -- Orthanc nodes --------------------------------------------------------------------

    def node_env(self, node: Node) -> dict[str, str]:
        return {**self.env, "NEURONOVA_NODE_NAME": node.name, "NEURONOVA_HTTP_PORT": str(node.http),
                "NEURONOVA_DICOM_PORT": str(node.dicom), "NEURONOVA_POSTGRES_HOST": "127.0.0.1",
                "NEURONOVA_POSTGRES_PORT": str(self.pg_port), "NEURONOVA_POSTGRES_USER": PG_USER,
                "NEURONOVA_POSTGRES_PASSWORD": self.pg_password(), "NEURONOVA_POSTGRES_DATABASE": "orthanc",
                "NEURONOVA_POSTGRES_STORE_DATABASE": "neuronova",
                # the balancer is on loopback: its X-Forwarded-For names the client (gate/proxies.py)
                "NEURONOVA_TRUSTED_PROXIES": "127.0.0.1"}

    def start_nodes(self) -> None:
        # The first node alone: it creates Orthanc's schema and the plugin store's tables,
        # the others then find them (two nodes creating one schema at once could race).
        first, rest = self.nodes[0], self.nodes[1:]
        self.spawn(first.name, [str(ROOT / "scripts" / "run")], env=self.node_env(first))
        self.wait_healthy([first])
        for node in rest:
            self.spawn(node.name, [str(ROOT / "scripts" / "run")], env=self.node_env(node))
        self.wait_healthy(rest)

    def wait_healthy(self, nodes: list[Node]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for node in nodes:
            process = next(c.process for c in self.children if c.name == node.name)
            while True:
                self.check_alive(node.name, process)
                try:
                    if requests.get(f"http://127.0.0.1:{node.http}/neuronova/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or self.stopping.is_set():
                    raise RuntimeError(f"{node.name} did not become healthy (see {self.logs / node.name}.log)")
                time.sleep(0.3)
            log(f"{node.name}: HTTP 127.0.0.1:{node.http}, DICOM {node.dicom}, pid {process.pid}")

    # -- the balancer ---------------------------------------------------------------------

    def start_nginx(self) -> None:
        folder = self.dir / "nginx"
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        upstreams = "\n".join(f"        server 127.0.0.1:{n.http} max_fails=1 fail_timeout=5s;" for n in self.nodes)
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            dir=folder, logs=self.logs, port=self.balancer_port, upstreams=upstreams))
        self.spawn("nginx", ["/usr/sbin/nginx", "-p", str(folder), "-c", str(conf)], stop_signal=signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            self.check_alive("nginx", self.children[-1].process)
            try:
                if requests.get(f"http://127.0.0.1:{self.balancer_port}/neuronova/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx does not answer on {self.balancer_port} (see {self.logs}/nginx.log)")
            time.sleep(0.2)
        log(f"nginx on 127.0.0.1:{self.balancer_port} in front of {len(self.nodes)} node(s)")

    # -- the whole ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"balancer": f"http://127.0.0.1:{self.balancer_port}",
                "nodes": [{"name": n.name, "http": f"http://127.0.0.1:{n.http}", "dicom": n.dicom}
                          for n in self.nodes],
                "data_dir": str(self.data)}

    def up(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        description = self.dir / "cluster.json"
        description.unlink(missing_ok=True)
        status = 0
        try:
            self.start_postgres()
            self.start_nodes()
            self.start_nginx()
            partial = description.with_suffix(".json.new")
            partial.write_text(json.dumps(self.describe(), indent=2) + "\n")
            partial.replace(description)  # readers never see half a file
            log(f"up: {description} (SIGTERM stops everything)")
            status = self.supervise()
        except Exception as exc:  # noqa: BLE001 - reported, then everything started is stopped
            log(f"failed: {exc}")
            status = 1
        finally:
            description.unlink(missing_ok=True)
            self.stop_all()
            (self.dir / "pids.json").unlink(missing_ok=True)  # kept until everything is stopped
        log("stopped")
        return status

    def supervise(self) -> int:
        """Until SIGTERM. A node that dies is reported and left down (the balancer sends its
        traffic to the others); PostgreSQL or the balancer dying ends the cluster."""
        reported: set[str] = set()
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.process.poll() is None or child.name in reported:
                    continue
                reported.add(child.name)
                log(f"{child.name} (pid {child.process.pid}) exited with {child.process.returncode}")
                if child.name in ("postgres", "nginx"):
                    return 1
        return 0


def _ports(text: str, count: int, name: str) -> list[int]:
    if not text:
        return [free_port() for _ in range(count)]
    ports = [int(p) for p in text.split(",") if p.strip()]
    if len(ports) != count:
        raise SystemExit(f"{name} must list {count} port(s)")
    return ports


def _groups(children: list[Child]) -> list[list[Child]]:
    """The nodes stop together (each takes seconds); the others one at a time."""
    groups: list[list[Child]] = []
    for child in children:
        is_node = child.name.startswith("node-")
        if groups and is_node and groups[-1][0].name.startswith("node-"):
            groups[-1].append(child)
        else:
            groups.append([child])
    return groups


# Round robin, no sticky sessions: every node answers every request the same (shared index,
# storage and plugin store). Bodies stream through (no buffering to disk): Orthanc's own
# MaximumRequestBodySizeMB is the limit. Only idempotent requests are retried on another node.
NGINX_CONF = """\
daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {logs}/nginx.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    upstream neuronova {{
{upstreams}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_read_timeout 600s;
        proxy_send_timeout 600s;
        location / {{
            proxy_pass http://neuronova;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
        }}
    }}
}}
"""


if __name__ == "__main__":
    if sys.argv[1:] != ["up"]:
        raise SystemExit("usage: scripts/cluster up")
    raise SystemExit(Cluster(dict(os.environ)).up())
