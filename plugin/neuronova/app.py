"""The application: everything built from the configuration, and what Orthanc calls.

If anything goes wrong while building it, :class:`ClosedApp` takes its place: every
request is denied except ``/neuronova/health``, which says why (never a secret).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from . import __version__, config
from .audit import AuditWriter
from .dicomweb import DicomWebFront
from .gate import Gate
from .gate import settings as gate_settings
from .gate.api import GateApi
from .host import Host
from .http import Request, Response, json_response
from .router import Router
from .store import open_database

HEALTH = "/neuronova/health"


class Application(Protocol):
    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool: ...

    def handle_neuronova(self, request: Request) -> Response: ...

    def handle_dicomweb(self, request: Request) -> Response: ...

    def on_change(self, change: str, level: str, resource_id: str) -> None: ...

    def stop(self) -> None: ...


class App:
    def __init__(self, host: Host, orthanc_config: Mapping[str, Any]) -> None:
        self.host = host
        self.started_at = time.time()
        self.settings = config.load(orthanc_config)
        gate_config = gate_settings.parse(self.settings.gate)
        self.db = open_database(self.settings.database_url)
        self.audit = AuditWriter(self.db, on_error=host.log_error)
        self.gate = Gate(gate_config, host, self.db, self.audit)
        self.router = Router()
        self.router.add("GET", HEALTH, self.health)
        GateApi(self.gate, self.db).register(self.router)
        self.dicomweb = DicomWebFront(host, self.gate)
        host.log_warning(
            f"NeuroNova {__version__}: gate armed ({len(gate_config.keys)} token key source(s), "
            f"{len(gate_config.admin_users)} admin user(s)), store {self.db.url_for_logs}"
        )

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        return self.gate.allow_request(uri, method_code, ip, headers, query)

    def handle_neuronova(self, request: Request) -> Response:
        return self.router.dispatch(request)

    def handle_dicomweb(self, request: Request) -> Response:
        return self.dicomweb.handle(request)

    def health(self, _request: Request) -> Response:
        problems = [s.last_error for s in self.gate.verifier.jwks_sources if s.last_error]
        return json_response({
            "status": "ok",
            "version": __version__,
            "gate": "armed",
            "store": self.db.engine.dialect.name,
            "audit": {"written": self.audit.written, "pending": self.audit.pending(), "failed": self.audit.failures},
            "warnings": problems,
            "uptime_seconds": round(time.time() - self.started_at, 1),
        })

    def on_change(self, change: str, level: str, resource_id: str) -> None:
        # Runs on Orthanc's single change thread: only cheap bookkeeping here.
        if change in ("NEW_INSTANCE", "DELETED", "UPDATED_ATTACHMENT"):
            self.dicomweb.generation += 1
        if change in ("STABLE_STUDY", "NEW_STUDY", "DELETED"):
            self.gate.studies.invalidate()

    def stop(self) -> None:
        self.audit.close()
