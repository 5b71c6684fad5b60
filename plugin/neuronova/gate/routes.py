"""Which kind of route a request is, and which study it touches.

Everything not matched by an explicit rule is ``ADMIN``: a route we do not know about is
never opened to non-admins by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ..dicomweb import paths
from ..viewer.settings import PREFIX as VIEWER_PREFIX


class Scope(StrEnum):
    PUBLIC = "public"  # no authentication (health, login page)
    USER = "user"  # any authenticated caller; the handler checks the rest
    SEARCH = "search"  # QIDO across studies: answered filtered by the DICOMweb front
    STUDY = "study"  # touches exactly one study, which the caller must be allowed
    STOW = "stow"  # STOW-RS: roles listed in Gate.StowRoles
    ADMIN = "admin"
    CLOSED = "closed"  # nobody from outside (the DICOMweb plugin's internal root)


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


_PLUGIN_PUBLIC = {"/neuronova/health", "/neuronova/login", "/neuronova/logout"}
# OHIF's static files and generated app-config.js: public (no patient data in them; every
# byte of data goes through the DICOMweb front). Strict: GET only, plain path segments
# (no dot files, no "..", no escapes), below one fixed prefix.
_SEGMENT = r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*"
_VIEWER = re.compile(rf"^{re.escape(VIEWER_PREFIX)}(?:/|(?:/{_SEGMENT})+/?)?$")
_PLUGIN_USER = re.compile(r"^/neuronova/(?:me|shares(?:/[A-Za-z0-9_-]+)?|ai/jobs(?:/[A-Za-z0-9_-]+(?:/retry)?)?)$")

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


def classify(uri: str, method: str, wado_query: dict[str, str] | None = None) -> Target:
    """Classify ``uri`` (path only, as Orthanc gives it to the filter)."""
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
    if uri in _PLUGIN_PUBLIC:
        return Target(Scope.PUBLIC, uri.removeprefix("/"), EVENT_USER_AUTHENTICATION)
    if _PLUGIN_USER.match(uri):
        return Target(Scope.USER, uri.split("/")[2], EVENT_APPLICATION_ACTIVITY)
    return Target(Scope.ADMIN, "orthanc", EVENT_APPLICATION_ACTIVITY)
