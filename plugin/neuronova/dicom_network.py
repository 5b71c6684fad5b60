"""Audit of the DICOM network (Orthanc's own DICOM server; per-modality permissions are
Orthanc's ``DicomModalities``, rendered by scripts/py/render_config.py).

Only what Orthanc lets a plugin *observe* without replacing its SCP is recorded here:

- C-STORE: every instance stored through the DICOM protocol (Orthanc's stored-instance
  callback), with the study, the calling AET, its IP and the called AET.

- C-FIND: Orthanc's Lua ``IncomingFindRequestFilter`` (dicom_audit.lua, loaded through
  ``LuaScripts``) observes Orthanc's own C-FIND SCP and posts each query, with the calling AET
  and IP, to ``POST /neuronova/dicom/c-find``, internally (:class:`DicomNetworkApi`).

- Instances Orthanc sends (C-MOVE sub-operations): the Lua ``OutgoingCStoreInstanceFilter``
  posts each to ``POST /neuronova/dicom/c-store-out``, with the destination AET and IP.

Who asked for a C-MOVE is recorded by the plugin's own C-MOVE SCP (dicom_move.py). C-GET
cannot be observed at all (the SDK has no C-GET hook, Lua no filter), so it is refused unless
configured otherwise: docs/security.md, "DICOM network".
"""

from __future__ import annotations

import json
import time
from typing import Any

from .audit import ALLOW, AuditEvent, AuditWriter
from .errors import HttpError
from .gate.routes import EVENT_INSTANCES_TRANSFERRED, EVENT_QUERY
from .gate.studies import is_literal
from .host import StoredInstance
from .http import Request, Response, json_response
from .router import Router
from .scope import Scope

DICOM_PROTOCOL = "DICOM_PROTOCOL"
C_FIND_ROUTE = "/neuronova/dicom/c-find"
C_STORE_OUT_ROUTE = "/neuronova/dicom/c-store-out"
_MAX_FIND_BODY = 256 * 1024
_LEVEL, _STUDY = "0008,0052", "0020,000d"


class DicomNetworkAudit:
    def __init__(self, audit: AuditWriter) -> None:
        self._audit = audit

    def stored(self, instance: StoredInstance) -> None:
        """One audit event per instance received by C-STORE (HTTP uploads are audited by the gate)."""
        if instance.origin != DICOM_PROTOCOL:
            return
        self._audit.record(AuditEvent(
            time=time.time(), user=instance.remote_aet[:255], role="modality", ip=instance.remote_ip[:64],
            method="C-STORE", route="dicom/c-store",
            uri=f"dicom://{instance.called_aet}/instances/{instance.sop_uid}"[:2048],
            study_uid=instance.study_uid[:64], decision=ALLOW, reason=f"stored from AET {instance.remote_aet}",
            event_type=EVENT_INSTANCES_TRANSFERRED,
        ))

    def found(self, query: dict[str, Any], origin: dict[str, Any]) -> None:
        """One audit event per C-FIND: query level, the keys with values, the study when one is named."""
        level = str(query.get(_LEVEL, ""))
        keys = sorted(f"{k}={v}" if isinstance(v, str) and v else k for k, v in query.items() if k != _LEVEL)
        study = query.get(_STUDY, "")
        aet = str(origin.get("RemoteAet") or origin.get("CallingAet") or "")
        self._audit.record(AuditEvent(
            time=time.time(), user=aet[:255], role="modality", ip=str(origin.get("RemoteIp", ""))[:64],
            method="C-FIND", route="dicom/c-find",
            uri=f"dicom://{origin.get('CalledAet', '')}/{level}?{'&'.join(keys)}"[:2048],
            study_uid=study[:64] if isinstance(study, str) and is_literal(study) else "",
            decision=ALLOW, reason=f"C-FIND at level {level or '?'} from AET {aet}", event_type=EVENT_QUERY,
        ))


    def sent(self, study: str, instance: str, destination: dict[str, Any]) -> None:
        """One audit event per instance Orthanc sends by C-STORE (C-MOVE sub-operations)."""
        aet = str(destination.get("RemoteAet") or destination.get("AET") or "")
        self._audit.record(AuditEvent(
            time=time.time(), user=aet[:255], role="modality", ip=str(destination.get("RemoteIp", ""))[:64],
            method="C-STORE", route="dicom/outgoing", uri=f"dicom://{aet}/instances/{instance}"[:2048],
            study_uid=study[:64], decision=ALLOW, reason=f"sent to AET {aet}", event_type=EVENT_INSTANCES_TRANSFERRED,
        ))


class DicomNetworkApi:
    """``POST /neuronova/dicom/c-find``: what dicom_audit.lua reports. Only Orthanc's internal
    calls are taken: they carry no headers, whereas anything over HTTP carries the credentials
    the gate required (the route is ADMIN), so no caller can write audit events through it."""

    def __init__(self, network: DicomNetworkAudit) -> None:
        self._network = network

    def register(self, router: Router) -> None:
        router.add("POST", C_FIND_ROUTE, self.c_find, scope=Scope.ADMIN)
        router.add("POST", C_STORE_OUT_ROUTE, self.c_store_out, scope=Scope.ADMIN)

    def c_store_out(self, request: Request) -> Response:
        payload = _internal_json(request)
        if not isinstance(payload, dict):
            raise HttpError(400, "body must be a JSON object")
        study, instance = payload.get("study"), payload.get("instance")
        destination = payload.get("destination")
        if not isinstance(study, str) or not isinstance(instance, str) or not isinstance(destination, dict):
            raise HttpError(400, 'body must be {"study": "...", "instance": "...", "destination": {...}}')
        self._network.sent(study, instance, destination)
        return json_response({"audited": True})

    def c_find(self, request: Request) -> Response:
        payload = _internal_json(request)
        query = payload.get("query") if isinstance(payload, dict) else None
        origin = payload.get("origin") if isinstance(payload, dict) else None
        if not isinstance(query, dict) or not isinstance(origin, dict):
            raise HttpError(400, 'body must be {"query": {...}, "origin": {...}}')
        self._network.found(query, origin)
        return json_response({"audited": True})


def _internal_json(request: Request) -> Any:
    if request.headers.get("authorization") or request.headers.get("cookie") or request.ip:
        raise HttpError(403, "internal route")
    if len(request.body) > _MAX_FIND_BODY:
        raise HttpError(413, "body too large")
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise HttpError(400, "not JSON") from exc
