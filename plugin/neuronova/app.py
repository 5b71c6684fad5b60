"""The application: everything built from the configuration, and what Orthanc calls.

If anything goes wrong while building it, :class:`ClosedApp` takes its place: every
request is denied except ``/neuronova/health``, which says why (never a secret).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import __version__, config
from .ai import settings as ai_settings
from .ai.api import AiApi
from .ai.service import AiService
from .ai.tokens import ShareTokens
from .audit import AuditEvent, AuditWriter
from .audit import parse_settings as parse_audit_settings
from .dicom_json import tag_value, uid_attribute
from .dicom_move import MoveDriver, MoveScp
from .dicom_network import DicomNetworkApi, DicomNetworkAudit
from .dicomweb.front import DicomWebFront
from .gate import Gate
from .gate import settings as gate_settings
from .gate.api import GateApi
from .gate.collisions import CollisionGuard
from .gate.quarantine_api import QuarantineApi
from .gate.study_ids import StudyIdRecorder, StudyIdTable
from .host import Host, MoveRequest, StoredInstance
from .htj2k import settings as htj2k_settings
from .htj2k.api import Htj2kApi
from .htj2k.service import Htj2kService
from .htj2k.serving import Htj2kRetriever
from .htj2k.syntaxes import RENDITION_TRANSFER_SYNTAX
from .http import Request, Response, json_response
from .router import Router
from .scope import Scope
from .store import open_database
from .store.versions import GRANTS, SESSIONS, SHARES, STUDY_ARRIVALS, STUDY_DELETIONS, VersionWatch
from .viewer import settings as viewer_settings
from .viewer.service import ViewerService

HEALTH = "/neuronova/health"
# One encoder for the audit mirror: json.dumps with separators builds a new one per call
# (6% of the GIL's time serving frames to 32 clients, bench.gate_bench).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


class App:
    def __init__(self, host: Host, orthanc_config: Mapping[str, Any]) -> None:
        self.host = host
        self.started_at = time.time()
        # Python threads hand the GIL over every 5 ms by default; the gate's filter runs on
        # Orthanc's request threads and must not wait that long behind a busy worker.
        sys.setswitchinterval(0.001)
        self.settings = config.load(orthanc_config)
        gate_config = gate_settings.parse(self.settings.gate)
        self.db = open_database(self.settings.database_url)
        audit_config = parse_audit_settings(config.section(config.section(orthanc_config, config.SECTION), "Audit"))
        self.audit = AuditWriter(self.db, on_error=host.log_error, mirror=self._to_orthanc_audit_log,
                                 settings=audit_config, node=self.settings.node_name)
        # The gate classifies /neuronova/ requests by the router's table (filled below).
        self.router = Router()
        self.gate = Gate(gate_config, host, self.db, self.audit, routes=self.router)
        self.router.add("GET", HEALTH, self.health, scope=Scope.PUBLIC)
        GateApi(self.gate, self.db).register(self.router)
        # Grants, share revocations and ended sessions changed through any node reach this
        # node's in-memory copies within a poll (store/versions.py).
        self.versions = VersionWatch(self.db.engine, on_error=host.log_warning)
        self.versions.watch(GRANTS, self.gate.grants.catch_up)
        self.versions.watch(SHARES, lambda _seen, _now: self.gate.shares.reload())
        self.versions.watch(SESSIONS, lambda _seen, _now: self.gate.sessions.reload())
        # The search order's StudyInstanceUID -> Orthanc id table (gate/study_ids.py).
        self.study_ids = StudyIdRecorder(StudyIdTable(self.db), host, on_written=self.gate.studies.written)
        self.gate.studies.use_table(self.study_ids.table, self.study_ids.found_by_lookup)
        self.versions.watch(STUDY_ARRIVALS, self.gate.studies.remote_arrivals)
        self.versions.watch(STUDY_DELETIONS, lambda seen, now: self.gate.studies.forget_ids()
                            if self.study_ids.deleted_elsewhere(seen, now) else None)
        self.versions.start()  # its first poll reloads all: a change made during start-up is not missed
        self.study_ids.start()
        # -- HTJ2K: renditions encoded on ingest, served by the DICOMweb front
        self.htj2k = Htj2kService(htj2k_settings.parse(self.settings.htj2k, orthanc_config), host, self.db,
                                  node=self.settings.node_name)
        Htj2kApi(self.gate, self.htj2k).register(self.router)
        self.dicomweb = DicomWebFront(host, self.gate, retrieve=Htj2kRetriever(host, self.htj2k.store),
                                      annotate_metadata=self._advertise_htj2k)
        self.htj2k.when_rendered(self.dicomweb.metadata.new_rendition)
        # -- Patients never mix: collisions detected on arrival, quarantined, hidden (issue 9.4)
        self.collisions = CollisionGuard(host, self.db, self.gate)
        QuarantineApi(self.gate, self.collisions).register(self.router)
        self.dicomweb.hidden_studies = self.gate.hidden_studies = self.collisions.hidden_studies
        # -- DICOM network audit (issue 9.5)
        self.dicom_network = DicomNetworkAudit(self.audit)
        DicomNetworkApi(self.dicom_network).register(self.router)  # C-FIND, outgoing C-STORE: dicom_audit.lua
        self.move_scp = MoveScp(host, self.audit)  # Orthanc's C-MOVE SCP, driven and audited
        # -- Viewer: OHIF same-origin under /ohif (generated app-config.js), Explorer additions
        self.viewer = ViewerService(
            viewer_settings.parse(config.section(config.section(orthanc_config, config.SECTION), "Viewer")), host,
            orthanc_compresses=bool(orthanc_config.get("HttpCompressionEnabled", True)))  # Orthanc's default
        self.viewer.warm_in_background()
        # -- AI: stable studies -> rules -> durable jobs -> inference service -> SEG + SR (issue #4)
        ai_config = ai_settings.parse(self.settings.ai, orthanc_config)
        self.ai = AiService(ai_config, host, self.db, ShareTokens(self.gate.shares, ai_config.token_ttl_seconds),
                            self.settings.node_name)  # lease owners: "<NodeName>/<attempt token>"
        AiApi(self.gate, self.ai).register(self.router)
        # What is built by now (modules, SQLAlchemy metadata, pydicom's dictionaries) lives as
        # long as the plugin: a full collection walking it held the GIL, stopping every request
        # thread, for ~135 ms (bench.gate_bench, QIDO). Frozen, the collector never walks it.
        gc.freeze()
        host.log_warning(
            f"NeuroNova {__version__}: gate armed ({len(gate_config.keys)} token key source(s), "
            f"{len(gate_config.admin_users)} admin user(s)), store {self.db.url_for_logs}"
        )

    def _to_orthanc_audit_log(self, event: AuditEvent) -> None:
        level = "STUDY" if event.study_uid else "NONE"
        self.host.emit_audit_log(event.user or "-", level, event.study_uid, f"{event.decision} {event.event_type}",
                                 _COMPACT_JSON.encode(event.as_json()).encode())

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        return self.gate.allow_request(uri, method_code, ip, headers, query)

    def on_received_instance(self, dicom: bytes, origin: str) -> None:
        """An instance is about to be stored (any origin): patient collisions are recorded."""
        self.collisions.check(dicom, origin)

    def on_stored_instance(self, instance: StoredInstance) -> None:
        self.dicom_network.stored(instance)

    def create_move(self, request: MoveRequest) -> MoveDriver:
        return self.move_scp.create(request)

    def move_size(self, driver: MoveDriver) -> int:
        return self.move_scp.size(driver)

    def apply_move(self, driver: MoveDriver) -> None:
        self.move_scp.apply(driver)

    def handle_neuronova(self, request: Request) -> Response:
        return self.router.dispatch(request.with_ip(self.gate.client_ip(request.ip, request.headers)))

    def handle_dicomweb(self, request: Request) -> Response:
        return self.dicomweb.handle(request.with_ip(self.gate.client_ip(request.ip, request.headers)))

    def handle_viewer(self, request: Request) -> Response:
        return self.viewer.handle(request)

    def explorer_javascript(self) -> str | None:
        return self.viewer.explorer_javascript()

    def health(self, _request: Request) -> Response:
        problems = [s.last_error for s in self.gate.verifier.jwks_sources if s.last_error]
        audit_problem = self.audit.problem()
        if audit_problem:
            problems.append(audit_problem)
        if self.versions.problem():
            problems.append(self.versions.problem())
        # 503 while access fails closed for want of an audit trail: a balancer takes the node out.
        failing = bool(audit_problem) and self.audit.fail_closed
        return json_response({
            "status": "degraded" if failing else "ok",
            "version": __version__,
            "gate": "armed",
            "store": self.db.engine.dialect.name,
            "node": self.settings.node_name,
            "shared_state": self.versions.health(),
            "search_order": self.study_ids.health(),
            "audit": self.audit.health(),
            "warnings": problems,
            "viewer": self.viewer.health(),
            "ai": self.ai.health(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }, 503 if failing else 200)

    def _advertise_htj2k(self, metadata: bytes) -> bytes:
        """Add Available Transfer Syntax UID (0008,3002) to instances that have a rendition."""
        items = json.loads(metadata)
        with_rendition = self.htj2k.with_rendition([tag_value(item, "00080018") for item in items])
        for item in items:
            if tag_value(item, "00080018") in with_rendition:
                item["00083002"] = uid_attribute(RENDITION_TRANSFER_SYNTAX)
        return json.dumps(items, separators=(",", ":")).encode()

    def on_change(self, change: str, level: str, resource_id: str) -> None:
        # Runs on Orthanc's single change thread: only cheap bookkeeping here.
        if change in ("NEW_INSTANCE", "DELETED"):  # a rendition (UPDATED_ATTACHMENT) changes no search
            self.dicomweb.note_change(deleted=change == "DELETED")
        if change == "NEW_CHILD_INSTANCE" and level == "STUDY":
            self.dicomweb.metadata.new_instance(resource_id)
        if change == "NEW_INSTANCE":
            self.htj2k.enqueue(resource_id)
        elif change == "DELETED" and level == "INSTANCE":
            self.htj2k.forget(resource_id)
        if change in ("STABLE_STUDY", "NEW_STUDY", "DELETED"):
            self.gate.studies.invalidate(hierarchy=change == "DELETED",
                                         deleted=(level, resource_id) if change == "DELETED" else None)
        if change == "NEW_STUDY":
            self.study_ids.arrived(resource_id)
        elif change == "DELETED" and level == "STUDY":
            self.study_ids.deleted(resource_id)
        if change == "DELETED":
            self.collisions.forget()
        self.ai.on_change(change, level, resource_id)  # AI: enqueues only (in memory)

    def stop(self) -> None:
        self.versions.stop()
        self.study_ids.stop()
        self.ai.stop()  # AI: running jobs go back to the queue
        self.htj2k.stop()
        self.audit.close()

