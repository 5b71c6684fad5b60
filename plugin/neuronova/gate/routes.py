"""Which kind of route a request is, and which study it touches.

Everything not matched by an explicit rule is ``ADMIN``: a route we do not know about is
never opened to non-admins by accident. The plugin's own ``/neuronova/`` routes are
classified by the router's table (:class:`ScopeLookup`), where each ``api.py`` declares a
route's scope next to its handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from ..dicomweb import paths
from ..scope import Scope
from ..viewer.settings import PREFIX as VIEWER_PREFIX

__all__ = ["Scope", "ScopeLookup", "Target", "classify"]
PLUGIN_ROOT = "/neuronova/"


class ScopeLookup(Protocol):
    def scope_of(self, method: str, path: str) -> Scope | None:
        """The scope of the plugin route answering ``method path``, None when none does."""


# DICOM PS3.15 audit event IDs (DCM codes)
EVENT_INSTANCES_ACCESSED = "110103"
EVENT_INSTANCES_TRANSFERRED = "110104"
EVENT_QUERY = "110112"
EVENT_SECURITY_ALERT = "110113"
EVENT_USER_AUTHENTICATION = "110114"
EVENT_APPLICATION_ACTIVITY = "110100"


@dataclass(frozen=True)
class Target:
    scope: Scope
    route: str  # a short label for the audit log, e.g. "wado-rs/frames"
    event: str
    study: str = ""
    series: str = ""
    instance: str = ""


# OHIF's static files and generated app-config.js: public (no patient data in them; every
# byte of data goes through the DICOMweb front). Strict: GET only, plain path segments
# (no dot files, no "..", no escapes), below one fixed prefix.
_SEGMENT = r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*"
_VIEWER = re.compile(rf"^{re.escape(VIEWER_PREFIX)}(?:/|(?:/{_SEGMENT})+/?)?$")

GET, POST, PUT, DELETE = "GET", "POST", "PUT", "DELETE"


def _dicomweb(rest: str, method: str) -> Target:
    if method == GET and rest in ("/studies", "/series", "/instances"):
        return Target(Scope.SEARCH, "qido-rs" + rest, EVENT_QUERY)
    if method == POST and rest == "/studies":
        return Target(Scope.STOW, "stow-rs", EVENT_INSTANCES_TRANSFERRED)
    path = paths.parse(rest)
    if path is None:
        return Target(Scope.ADMIN, "dicom-web/other", EVENT_APPLICATION_ACTIVITY)
    if method == POST and path.level == "study" and not path.tail:
        return Target(Scope.STOW, "stow-rs", EVENT_INSTANCES_TRANSFERRED, study=path.study)
    if method != GET:
        return Target(Scope.ADMIN, "dicom-web/other", EVENT_APPLICATION_ACTIVITY)
    if path.action == "search":
        route, event = "qido-rs/study", EVENT_QUERY
    else:
        route, event = "wado-rs" + paths.route_label(path.tail), EVENT_INSTANCES_ACCESSED
    return Target(Scope.STUDY, route, event, study=path.study, series=path.series, instance=path.instance)


def _plugin(uri: str, method: str, routes: ScopeLookup | None) -> Target:
    scope = routes.scope_of(method, uri) if routes is not None else None
    if scope is None:  # not in the table (or no table): fail closed
        return Target(Scope.ADMIN, "neuronova/other", EVENT_APPLICATION_ACTIVITY)
    label = uri[len(PLUGIN_ROOT):].split("/")[0]
    event = EVENT_USER_AUTHENTICATION if scope is Scope.PUBLIC else EVENT_APPLICATION_ACTIVITY
    return Target(scope, label, event)


def classify(uri: str, method: str, wado_query: dict[str, str] | None = None,
             routes: ScopeLookup | None = None) -> Target:
    """Classify ``uri`` (path only, as Orthanc gives it to the filter); ``routes`` is the
    plugin's route table (without it every ``/neuronova/`` route is ADMIN)."""
    if uri.startswith(paths.PUBLIC_ROOT + "/") or uri == paths.PUBLIC_ROOT:
        return _dicomweb(uri[len(paths.PUBLIC_ROOT):], method)
    if uri.startswith(paths.INTERNAL_ROOT):
        return Target(Scope.CLOSED, "dicom-web-internal", EVENT_SECURITY_ALERT)
    if uri == paths.WADO_URI_ROOT:
        query = wado_query or {}
        if method != GET or not query.get("objectUID"):
            return Target(Scope.ADMIN, "wado-uri", EVENT_APPLICATION_ACTIVITY)
        return Target(
            Scope.STUDY, "wado-uri", EVENT_INSTANCES_ACCESSED,
            study=query.get("studyUID", ""), series=query.get("seriesUID", ""), instance=query.get("objectUID", ""),
        )
    if method == GET and _VIEWER.match(uri):
        return Target(Scope.PUBLIC, "ohif", EVENT_APPLICATION_ACTIVITY)
    if uri.startswith(PLUGIN_ROOT):
        return _plugin(uri, method, routes)
    return Target(Scope.ADMIN, "orthanc", EVENT_APPLICATION_ACTIVITY)
