"""Real PostgreSQL and MariaDB servers from Debian's packages, for the store tests: each in a
fresh folder, on a free loopback port, stopped by its PID."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from tests.support.cluster import cluster_directory
from tests.support.orthanc_server import free_port, stop_process

PASSWORD = "store-tests-password"


@dataclass
class DatabaseServer:
    process: subprocess.Popen[bytes]
    url: str  # of the server's test database, for SQLAlchemy
    directory: Path
    log_path: Path
    stop_signal: int

    def stop(self) -> None:
        stop_process(self.process, sig=self.stop_signal)
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the database server exited: {log_path.read_text(errors='replace')[-3000:]}")
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        engine.dispose()


def _pg_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if not found:
        raise RuntimeError(f"{program} is missing: scripts/install installs Debian's postgresql")
    return found[-1]


def start_postgres() -> DatabaseServer:
    directory = cluster_directory()
    pgdata, pwfile, log_path = directory / "pgdata", directory / "pw", directory / "postgres.log"
    pwfile.write_text(PASSWORD + "\n")
    owner: dict[str, Any] = {}
    if os.getuid() == 0:  # PostgreSQL refuses root
        pgdata.mkdir(mode=0o700)
        shutil.chown(pgdata, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
        owner = {"user": "postgres", "group": "postgres", "extra_groups": []}
    subprocess.run([_pg_bin("initdb"), "-D", str(pgdata), "-U", "tests", "--pwfile", str(pwfile),
                    "-A", "scram-sha-256", "--locale=C.UTF-8"], check=True, stdout=subprocess.DEVNULL, cwd="/",
                   **owner)
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen([_pg_bin("postgres"), "-D", str(pgdata), "-c", "listen_addresses=127.0.0.1",
                                    "-c", f"port={port}", "-c", "unix_socket_directories="], stdout=log,
                                   stderr=subprocess.STDOUT, cwd="/", start_new_session=True, **owner)
    server = DatabaseServer(process, f"postgresql+psycopg://tests:{PASSWORD}@127.0.0.1:{port}/postgres",
                            directory, log_path, signal.SIGINT)
    try:
        _wait(server.url, process, log_path)
    except Exception:
        server.stop()
        raise
    return server


def create_databases(server: DatabaseServer, *names: str) -> None:
    """Empty databases on a server of ``start_postgres`` (one per Orthanc index or plugin store)."""
    engine = create_engine(server.url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
    try:
        with engine.connect() as connection:
            for name in names:
                connection.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()


def node_env(server: DatabaseServer, index_database: str, store_database: str) -> dict[str, str]:
    """``scripts/run``'s environment for a node whose Orthanc index and plugin store are two
    databases of this PostgreSQL server (the settings a deployment gives, docs/deployment.md)."""
    url = make_url(server.url)
    return {"NEURONOVA_POSTGRES_HOST": str(url.host), "NEURONOVA_POSTGRES_PORT": str(url.port),
            "NEURONOVA_POSTGRES_USER": str(url.username), "NEURONOVA_POSTGRES_PASSWORD": str(url.password),
            "NEURONOVA_POSTGRES_DATABASE": index_database, "NEURONOVA_POSTGRES_STORE_DATABASE": store_database}


def start_mariadb() -> DatabaseServer:
    directory = cluster_directory()
    datadir, log_path, socket_path = directory / "data", directory / "mariadb.log", directory / "mariadb.sock"
    user = ["--user=root"] if os.getuid() == 0 else []
    subprocess.run(["/usr/bin/mariadb-install-db", "--no-defaults", f"--datadir={datadir}", *user,
                    "--auth-root-authentication-method=normal", "--skip-test-db"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}", *user,
                                    "--bind-address=127.0.0.1", f"--port={port}", f"--socket={socket_path}",
                                    f"--pid-file={directory / 'mariadb.pid'}", "--skip-name-resolve",
                                    "--innodb-buffer-pool-size=32M", "--skip-log-bin"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = DatabaseServer(process, "", directory, log_path, signal.SIGTERM)
    try:
        # A fresh server's root has no password and logs in by socket; make the test user.
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        setup = (f"CREATE DATABASE neuronova_tests CHARACTER SET utf8mb4; "
                 f"CREATE USER 'tests'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                 f"GRANT ALL ON *.* TO 'tests'@'127.0.0.1';")
        for _ in range(50):
            done = subprocess.run(["/usr/bin/mariadb", "--no-defaults", f"--socket={socket_path}", "-uroot",
                                   "-e", setup], check=False, capture_output=True)
            if done.returncode == 0:
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"cannot set MariaDB up: {done.stderr.decode(errors='replace')}")
        server.url = f"mysql+pymysql://tests:{PASSWORD}@127.0.0.1:{port}/neuronova_tests?charset=utf8mb4"
        _wait(server.url, process, log_path)
    except Exception:
        server.stop()
        raise
    return server
