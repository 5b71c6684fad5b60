"""What the domain packages need from Orthanc, as a Protocol.

The real implementation is :class:`neuronova.orthanc_bridge.OrthancHost`; unit tests use
small in-memory fakes of this interface, never of the Orthanc SDK itself.
"""

from __future__ import annotations

from typing import Any, Protocol


class Host(Protocol):
    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        """GET an Orthanc REST route; raises OrthancCallError on HTTP errors."""

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        """GET and parse JSON."""

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        """POST to an Orthanc REST route."""

    def rest_put(self, uri: str, body: bytes) -> bytes:
        """PUT to an Orthanc REST route."""

    def rest_delete(self, uri: str) -> None:
        """DELETE an Orthanc REST route."""

    def lookup_study(self, study_uid: str) -> str | None:
        """Orthanc identifier of the study with this StudyInstanceUID, or None."""

    def lookup_series(self, series_uid: str) -> str | None:
        """Orthanc identifier of the series with this SeriesInstanceUID, or None."""

    def lookup_instance(self, sop_uid: str) -> str | None:
        """Orthanc identifier of the instance with this SOPInstanceUID, or None."""

    def set_metric(self, name: str, value: float) -> None:
        """Publish a value on /tools/metrics-prometheus."""

    def log_info(self, message: str) -> None: ...

    def log_warning(self, message: str) -> None: ...

    def log_error(self, message: str) -> None: ...
