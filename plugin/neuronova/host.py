"""Both sides of the one seam to Orthanc, as Protocols.

- :class:`Host` is what the domain packages need from Orthanc. The real implementation is
  :class:`neuronova.orthanc_bridge.OrthancHost`; unit tests use small in-memory fakes of this
  interface, never of the Orthanc SDK itself.
- :class:`PluginApp` is what the bridge calls: :class:`neuronova.app.App`, or
  :class:`neuronova.closed.ClosedApp` when the plugin could not start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .http import Request, Response


class Host(Protocol):
    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        """GET an Orthanc REST route; raises OrthancCallError on HTTP errors."""

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        """GET and parse JSON."""

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        """POST to an Orthanc REST route."""

    def rest_put(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        """PUT to an Orthanc REST route (``after_plugins``: plugin routes too, e.g. DICOMweb's)."""

    def rest_delete(self, uri: str, after_plugins: bool = False) -> None:
        """DELETE an Orthanc REST route (``after_plugins``: plugin routes too)."""

    def parse_dicom(self, dicom: bytes) -> dict[str, Any] | None:
        """The tags of a DICOM file as Orthanc parses it, without storing it, in Orthanc's
        "short" DICOM-to-JSON format (keys ``"0020,000d"``, lower-case hex; strings for text
        values, lists of objects for sequences), or None when Orthanc cannot parse the file."""

    def lookup_study(self, study_uid: str) -> str | None:
        """Orthanc identifier of the study with this StudyInstanceUID, or None."""

    def lookup_series(self, series_uid: str) -> str | None:
        """Orthanc identifier of the series with this SeriesInstanceUID, or None."""

    def lookup_instance(self, sop_uid: str) -> str | None:
        """Orthanc identifier of the instance with this SOPInstanceUID, or None."""

    def set_metric(self, name: str, value: float) -> None:
        """Publish a value on /tools/metrics-prometheus."""

    def emit_audit_log(self, user: str, level: str, resource_id: str, action: str, data: bytes) -> None:
        """Hand an audit record to Orthanc's own audit log (kept by database plugins that
        store one; ignored otherwise). ``level`` is STUDY, SERIES, INSTANCE or PATIENT."""

    def log_info(self, message: str) -> None: ...

    def log_warning(self, message: str) -> None: ...

    def log_error(self, message: str) -> None: ...


@dataclass(frozen=True)
class StoredInstance:
    """What Orthanc tells about an instance it has just stored."""

    origin: str  # orthanc.InstanceOrigin name: DICOM_PROTOCOL, REST_API, PLUGIN, ...
    remote_aet: str
    remote_ip: str
    called_aet: str
    study_uid: str
    sop_uid: str


@dataclass(frozen=True)
class MoveRequest:
    """What Orthanc passes for one C-MOVE request (Orthanc's C-MOVE SCP is the plugin's)."""

    level: str  # PATIENT, STUDY, SERIES or IMAGE
    patient_id: str
    accession: str
    study_uid: str
    series_uid: str
    sop_uid: str
    target_aet: str
    originator_id: int  # the request's Message ID, passed on as Move Originator Message ID
    remote_aet: str
    remote_ip: str
    called_aet: str


class PluginApp(Protocol):
    """What Orthanc's callbacks reach, through the bridge."""

    def allow_request(self, uri: str, method_code: int, ip: str, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> bool:
        """The incoming HTTP request filter: True lets the request through."""

    def handle_neuronova(self, request: Request) -> Response:
        """Everything below /neuronova/."""

    def handle_dicomweb(self, request: Request) -> Response:
        """Everything below /dicom-web/ (the public DICOMweb front)."""

    def handle_viewer(self, request: Request) -> Response:
        """Everything below /ohif (the viewer's files)."""

    def explorer_javascript(self) -> str | None:
        """JavaScript added to Orthanc Explorer, or None."""

    def on_received_instance(self, dicom: bytes, origin: str) -> None:
        """An instance is about to be stored (any origin). Observe only: whatever this does or
        raises, Orthanc stores the instance as it came."""

    def on_stored_instance(self, instance: StoredInstance) -> None:
        """An instance was stored (the bridge calls it for DICOM C-STORE only)."""

    def create_move(self, request: MoveRequest) -> Any:
        """A C-MOVE request: the driver of its sub-operations. Raising refuses the move."""

    def move_size(self, driver: Any) -> int:
        """The number of sub-operations of a C-MOVE (one per instance)."""

    def apply_move(self, driver: Any) -> None:
        """One sub-operation of a C-MOVE; raising reports it failed."""

    def on_change(self, change: str, level: str, resource_id: str) -> None:
        """A change of Orthanc's (runs on Orthanc's single change thread: be quick)."""

    def stop(self) -> None:
        """Orthanc is stopping."""
