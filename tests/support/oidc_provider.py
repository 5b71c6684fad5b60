"""A real OpenID Connect provider on loopback (npm ``oidc-provider``, run by node):
tests/e2e/js/oidc_provider.mjs. Users carry the claims the gate reads."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.orthanc_server import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "e2e" / "js" / "oidc_provider.mjs"


@dataclass
class OidcUser:
    password: str
    claims: dict[str, Any] = field(default_factory=dict)


class OidcProvider:
    def __init__(self, *, users: dict[str, OidcUser], redirect_origin: str, audience: str = "neuronova",
                 client_id: str = "ohif", port: int | None = None, access_token_ttl: int = 600) -> None:
        self.port = port or free_port()
        self.client_id = client_id
        options = {
            "port": self.port,
            "audience": audience,
            "access_token_ttl": access_token_ttl,
            "clients": [{
                "client_id": client_id,
                "redirect_uris": [f"{redirect_origin}/ohif/callback"],
                "post_logout_redirect_uris": [f"{redirect_origin}/ohif/logout-redirect"],
            }],
            "users": {login: {"password": u.password, "claims": u.claims} for login, u in users.items()},
        }
        self._process = subprocess.Popen(
            ["node", str(SCRIPT), json.dumps(options)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(ROOT / "viewer"),
        )
        lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

        def read() -> None:
            assert self._process.stdout is not None
            for raw in iter(self._process.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.output.append(line)
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty as exc:
                self.close()
                raise RuntimeError("the OpenID provider did not start:\n" + "\n".join(self.output)) from exc
            if line.startswith("{"):
                ready = json.loads(line)
                break
        self.issuer: str = ready["issuer"]
        self.jwks_uri: str = ready["jwks_uri"]

    def close(self) -> None:
        stop_process(self._process, timeout=10, kill=lambda: os.killpg(self._process.pid, signal.SIGKILL))
