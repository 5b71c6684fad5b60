"""REST handlers for admins: instances quarantined by a patient collision (collisions.py).

- ``GET /neuronova/quarantine[?status=quarantined|released|deleted&limit=&offset=]``
- ``GET /neuronova/quarantine/{id}``
- ``POST /neuronova/quarantine/{id}/release``: the instance is legitimate (e.g. the admin fixed the
  patient's identity elsewhere); the study is visible again once no other entry holds it.
- ``POST /neuronova/quarantine/{id}/delete``: the instance is deleted from Orthanc (the intruder's
  copy only; the victim's study is untouched), then the entry is closed.

Every route is admin-only (the gate classifies them as ADMIN; the handlers check again).
"""

from __future__ import annotations

from ..audit import ALLOW
from ..errors import HttpError, OrthancCallError
from ..http import Request, Response, json_response
from ..router import Router
from ..scope import Scope
from .api import require_admin
from .collisions import DELETED, QUARANTINED, RELEASED, CollisionGuard, Quarantined
from .routes import EVENT_SECURITY_ALERT
from .service import Gate

_ID = "[0-9a-f]{32}"
ADMIN = Scope.ADMIN


class QuarantineApi:
    def __init__(self, gate: Gate, guard: CollisionGuard) -> None:
        self.gate = gate
        self.guard = guard

    def register(self, router: Router) -> None:
        router.add("GET", "/neuronova/quarantine", self.list, scope=ADMIN)
        router.add("GET", f"/neuronova/quarantine/(?P<id>{_ID})", self.get, scope=ADMIN)
        router.add("POST", f"/neuronova/quarantine/(?P<id>{_ID})/release", self.release, scope=ADMIN)
        router.add("POST", f"/neuronova/quarantine/(?P<id>{_ID})/delete", self.delete, scope=ADMIN)

    def list(self, request: Request) -> Response:
        require_admin(self.gate, request)
        status = request.query.get("status", "")
        if status not in ("", QUARANTINED, RELEASED, DELETED):
            raise HttpError(400, f"status must be one of {QUARANTINED}, {RELEASED}, {DELETED}")
        items = self.guard.list(status, request.int_param("limit", 100, 1, 10000),
                                request.int_param("offset", 0, 0, 10**12))
        return json_response([item.as_json() for item in items])

    def _open_item(self, request: Request) -> Quarantined:
        item = self.guard.get(request.groups[0])
        if item is None:
            raise HttpError(404, "no such quarantine entry")
        return item

    def get(self, request: Request) -> Response:
        require_admin(self.gate, request)
        return json_response(self._open_item(request).as_json())

    def release(self, request: Request) -> Response:
        identity = require_admin(self.gate, request)
        item = self._open_item(request)
        if item.status != QUARANTINED:
            raise HttpError(409, f"entry is already {item.status}")
        resolved = self.guard.resolve(item, RELEASED, identity.subject)
        self.gate.record(identity, request.ip, request.method, "quarantine", request.path, item.study_uid, ALLOW,
                         f"released instance {item.sop_uid} of PatientID {item.patient_id!r}", EVENT_SECURITY_ALERT)
        return json_response(resolved.as_json())

    def delete(self, request: Request) -> Response:
        identity = require_admin(self.gate, request)
        item = self._open_item(request)
        if item.status != QUARANTINED:
            raise HttpError(409, f"entry is already {item.status}")
        instance = self.guard.orthanc_instance(item)
        if instance is not None:
            try:
                self.guard.delete_instance(instance)
            except OrthancCallError as exc:
                raise HttpError(502, f"Orthanc refused to delete the instance: {exc}") from exc
        resolved = self.guard.resolve(item, DELETED, identity.subject)
        self.gate.record(identity, request.ip, request.method, "quarantine", request.path, item.study_uid, ALLOW,
                         f"deleted instance {item.sop_uid} of PatientID {item.patient_id!r}"
                         + ("" if instance else " (no longer stored)"), EVENT_SECURITY_ALERT)
        return json_response(resolved.as_json())

