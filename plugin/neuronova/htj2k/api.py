"""REST handlers of the HTJ2K package (admin-only: registered with the ADMIN scope)."""

from __future__ import annotations

from ..dicomweb.paths import UID
from ..errors import HttpError
from ..gate import Gate
from ..gate.api import require_admin
from ..http import Request, Response, json_response
from ..router import Router
from ..scope import Scope
from .service import Htj2kService


class Htj2kApi:
    def __init__(self, gate: Gate, service: Htj2kService) -> None:
        self.gate = gate
        self.service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/neuronova/htj2k/stats", self.stats, scope=Scope.ADMIN)
        router.add("GET", "/neuronova/htj2k/backfill", self.backfill_status, scope=Scope.ADMIN)
        router.add("POST", "/neuronova/htj2k/backfill", self.start_backfill, scope=Scope.ADMIN)
        router.add("GET", f"/neuronova/htj2k/studies/(?P<study>{UID})", self.study, scope=Scope.ADMIN)

    def stats(self, request: Request) -> Response:
        require_admin(self.gate, request)
        stats = self.service.stats()  # once: monitoring polls this (the count reads every row's status)
        self.service.publish_store_metrics(stats)
        return json_response(stats)

    def backfill_status(self, request: Request) -> Response:
        require_admin(self.gate, request)
        return json_response(self.service.backfill.as_json())

    def start_backfill(self, request: Request) -> Response:
        require_admin(self.gate, request)
        body = request.json() if request.body else {}
        if body is not None and not isinstance(body, dict):
            raise HttpError(400, 'body must be empty or {"retry_failed": true}')
        if body and body.get("retry_failed"):
            self.service.forget_failures()
        return json_response(self.service.start_backfill().as_json(), 202)

    def study(self, request: Request) -> Response:
        """Rendition status of each instance of a study (used by the Explorer extension)."""
        require_admin(self.gate, request)
        status = self.service.study_status(request.groups[0])
        if status is None:
            raise HttpError(404, "no such study")
        return json_response(status)
