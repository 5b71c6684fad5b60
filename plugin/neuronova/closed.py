"""The application that runs when NeuroNova could not start: everything is denied.

Standard library only, so it works even when a third-party package failed to import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import __version__
from .host import MoveRequest, StoredInstance
from .http import Request, Response

HEALTH = "/neuronova/health"


def _json(payload: object, status: int) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json")


class ClosedApp:
    """What runs when the configuration or start-up failed: deny everything, say why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        return uri == HEALTH

    def handle_neuronova(self, request: Request) -> Response:
        if request.path == HEALTH:
            return _json({"status": "closed", "version": __version__, "reason": self.reason}, 503)
        return _json({"error": "the gate is closed"}, 503)

    def handle_dicomweb(self, request: Request) -> Response:
        return _json({"error": "the gate is closed"}, 503)

    def handle_viewer(self, request: Request) -> Response:
        return _json({"error": "the gate is closed"}, 503)

    def explorer_javascript(self) -> str | None:
        return None

    def on_received_instance(self, dicom: bytes, origin: str) -> None:
        return None

    def on_stored_instance(self, instance: StoredInstance) -> None:
        return None

    def create_move(self, request: MoveRequest) -> Any:
        raise PermissionError("the plugin is closed: C-MOVE refused")

    def move_size(self, driver: Any) -> int:
        return 0

    def apply_move(self, driver: Any) -> None:
        raise PermissionError("the plugin is closed: C-MOVE refused")

    def on_change(self, change: str, level: str, resource_id: str) -> None:
        return None

    def stop(self) -> None:
        return None
