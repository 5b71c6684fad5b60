"""The one place that talks to the Orthanc SDK (the ``orthanc`` module of orthanc-python 7.1
on Orthanc 1.13; docs/runtime-facts.md lists what that runtime does and how it differs).

``install()`` builds the application from Orthanc's configuration and registers its
callbacks. Any failure while building it installs a closed application instead: Orthanc
then answers only ``/neuronova/health`` (503 with the reason) and denies everything else.
"""

from __future__ import annotations

import ctypes
import json
import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import orthanc

# Only standard-library modules at import time: if a third-party package is missing, the
# import of .app fails inside install() and the gate closes instead of Orthanc running open.
from .errors import OrthancCallError
from .host import MoveRequest, PluginApp, StoredInstance
from .http import Request, Response

_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}

# Orthanc error codes -> HTTP status, for internal REST calls that fail.
_STATUS_BY_ERROR = {
    "UNKNOWN_RESOURCE": 404,
    "INEXISTENT_ITEM": 404,
    "BAD_REQUEST": 400,
    "BAD_FILE_FORMAT": 400,
    "URI_SYNTAX": 400,
    "PARAMETER_OUT_OF_RANGE": 400,
    "NOT_ACCEPTABLE": 406,
    "UNAUTHORIZED": 401,
    "FORBIDDEN_ACCESS": 403,
    "NOT_IMPLEMENTED": 501,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}


_ERROR_NAMES = {
    getattr(orthanc.ErrorCode, name): name for name in dir(orthanc.ErrorCode) if name.isupper()
}


# Bounds how long a plugin thread waits for Orthanc's start (then its call fails as before).
_START_WAIT_SECONDS = 300.0

_CHANGE_NAMES = {getattr(orthanc.ChangeType, n): n for n in dir(orthanc.ChangeType) if n.isupper()}
_LEVEL_NAMES = {getattr(orthanc.ResourceType, n): n for n in dir(orthanc.ResourceType) if n.isupper()}
_ORIGIN_NAMES = {getattr(orthanc.InstanceOrigin, n): n for n in dir(orthanc.InstanceOrigin) if n.isupper()}


# OrthancPluginEmitAuditLog (Orthanc 1.12.9 SDK): gate decisions also reach Orthanc's own
# audit log where the database plugin keeps one. Absent from older SDKs: then it is skipped.
_AUDIT_LOG_LEVELS: dict[str, Any] | None = (
    {name: getattr(orthanc.ResourceType, name) for name in ("PATIENT", "STUDY", "SERIES", "INSTANCE", "NONE")
     if hasattr(orthanc.ResourceType, name)}
    if hasattr(orthanc, "EmitAuditLog") else None
)


def _call_error(exc: Exception) -> OrthancCallError:
    # orthanc-python raises OrthancException(int error code, description).
    code = exc.args[0] if exc.args else None
    name = _ERROR_NAMES.get(code, str(code))
    for key, status in _STATUS_BY_ERROR.items():
        if key in name.upper():
            return OrthancCallError(status, name)
    return OrthancCallError(500, f"{name} {exc.args[1:] if len(exc.args) > 1 else ''}".strip())


class OrthancHost:
    """Implements :class:`neuronova.host.Host` with the Orthanc SDK."""

    def __init__(self) -> None:
        # Orthanc's REST API, look-ups and metrics need its server context, which exists only
        # once Orthanc has started: before, every such call fails and Orthanc logs "Plugin
        # trying to call the database during its initialization" (seen on PostgreSQL, whose
        # start-up outlasts the plugin's: the HTJ2K sweeper's first /changes read, the first
        # metrics). Until ORTHANC_STARTED, the plugin's own threads wait for it and metrics
        # are kept; a call from the plugin's start-up itself (main thread) is not held, it
        # would wait for itself: it still fails, so start-up must not make one.
        self._started = threading.Event()
        self._metrics_lock = threading.Lock()
        self._early_metrics: dict[str, float] = {}

    def orthanc_started(self) -> None:
        with self._metrics_lock:
            self._started.set()
            for name, value in self._early_metrics.items():
                orthanc.SetMetricsValue(name, value, orthanc.MetricsType.DEFAULT)
            self._early_metrics.clear()

    def _wait_for_start(self) -> None:
        if not self._started.is_set() and threading.current_thread() is not threading.main_thread():
            self._started.wait(_START_WAIT_SECONDS)

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        self._wait_for_start()
        try:
            if after_plugins:
                return bytes(orthanc.RestApiGetAfterPlugins(uri))
            return bytes(orthanc.RestApiGet(uri))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        return json.loads(self.rest_get(uri, after_plugins))

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        self._wait_for_start()
        try:
            if after_plugins:
                return bytes(orthanc.RestApiPostAfterPlugins(uri, body))
            return bytes(orthanc.RestApiPost(uri, body))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_put(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        self._wait_for_start()
        try:
            if after_plugins:
                return bytes(orthanc.RestApiPutAfterPlugins(uri, body))
            return bytes(orthanc.RestApiPut(uri, body))
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def rest_delete(self, uri: str, after_plugins: bool = False) -> None:
        self._wait_for_start()
        try:
            if after_plugins:
                orthanc.RestApiDeleteAfterPlugins(uri)
            else:
                orthanc.RestApiDelete(uri)
        except orthanc.OrthancException as exc:
            raise _call_error(exc) from exc

    def parse_dicom(self, dicom: bytes) -> dict[str, Any] | None:
        # What the DICOMweb plugin's STOW-RS does (OrthancPluginDicomBufferToJson, short
        # format, strings cut at 256 characters): the same parser decides what is DICOM.
        try:
            text = orthanc.DicomBufferToJson(dicom, orthanc.DicomToJsonFormat.SHORT,
                                             orthanc.DicomToJsonFlags.NONE, 256)
        except orthanc.OrthancException:
            return None
        parsed = json.loads(text) if text else None
        return parsed if isinstance(parsed, dict) else None

    @staticmethod
    def _lookup(function: Any, uid: str) -> str | None:
        try:
            found = function(uid)
        except orthanc.OrthancException:
            return None
        return str(found) if found else None

    def lookup_study(self, study_uid: str) -> str | None:
        self._wait_for_start()
        return self._lookup(orthanc.LookupStudy, study_uid)

    def lookup_series(self, series_uid: str) -> str | None:
        self._wait_for_start()
        return self._lookup(orthanc.LookupSeries, series_uid)

    def lookup_instance(self, sop_uid: str) -> str | None:
        self._wait_for_start()
        return self._lookup(orthanc.LookupInstance, sop_uid)

    def set_metric(self, name: str, value: float) -> None:
        with self._metrics_lock:  # held while publishing: an early value never overwrites a newer one
            if self._started.is_set():
                orthanc.SetMetricsValue(name, float(value), orthanc.MetricsType.DEFAULT)
            else:
                self._early_metrics[name] = float(value)

    def emit_audit_log(self, user: str, level: str, resource_id: str, action: str, data: bytes) -> None:
        if _AUDIT_LOG_LEVELS is None:
            return
        orthanc.EmitAuditLog("neuronova", user, _AUDIT_LOG_LEVELS[level], resource_id, action, data)

    def log_info(self, message: str) -> None:
        orthanc.LogInfo(message)

    def log_warning(self, message: str) -> None:
        orthanc.LogWarning(message)

    def log_error(self, message: str) -> None:
        orthanc.LogError(message)


# Statuses that OrthancPluginSendHttpStatus refuses ("Parameter out of range", measured on
# 1.13.0): 301, 405 and 429 among them. 405 has its own call; the others go out without a body.
_NO_BODY_STATUSES: set[int] = set()
# Orthanc 1.13 refuses 429 in SendHttpStatus AND in SendHttpStatusCode (both "Parameter out of
# range"; the client then gets its connection closed without an answer, measured): the nearest
# status it sends is 503, which carries the same Retry-After (RFC 9110 allows it on both).
_SENT_AS = {429: 503}


def _answer(output: Any, response: Response) -> None:
    for name, value in response.headers.items():
        output.SetHttpHeader(name, value)
    status = _SENT_AS.get(response.status, response.status)
    if status == 200:
        output.AnswerBuffer(response.body, response.content_type)
    elif status == 401:
        output.SendUnauthorized("NeuroNova")
    elif status == 405:
        output.SendMethodNotAllowed(response.headers.get("Allow", "GET"))
    elif status in _NO_BODY_STATUSES:
        output.SendHttpStatusCode(status)
    else:
        output.SetHttpHeader("Content-Type", response.content_type)
        try:
            output.SendHttpStatus(status, response.body)
        except orthanc.OrthancException:
            _NO_BODY_STATUSES.add(status)
            output.SendHttpStatusCode(status)


def _closed_app(reason: str) -> PluginApp:
    from .closed import ClosedApp

    return ClosedApp(reason)


# orthanc-python 7.1 gives REST callbacks no client address; the request filter gets it and
# runs on the same HTTP thread just before the route, so it leaves the address here, keyed
# by the OS thread. (Not threading.local: the plugin enters Python with a fresh thread state
# for each callback, so thread-local values did not survive from the filter to the route;
# _keep_thread_state below keeps the states of at most _KEPT_STATES_MAX threads, not all.)
# One entry per HTTP thread at most; dict operations are atomic under the GIL.
_client_ips: dict[int, str] = {}


def _remember_ip(ip: str) -> None:
    _client_ips[threading.get_ident()] = ip


def _take_ip() -> str:
    """The address the filter saw for this thread's request, once ("" when none): a later
    internal call on the thread must not inherit it."""
    return _client_ips.pop(threading.get_ident(), "")


def _request(uri: str, request: dict[str, Any]) -> Request:
    # Orthanc 1.13 hands plugins query values already percent-decoded (1.10.1 did not), and
    # no "get" at all for methods other than GET.
    method = request.get("method", "GET")
    return Request(
        method=method if isinstance(method, str) else _METHODS.get(int(method), "GET"),
        path=uri,
        groups=tuple(request.get("groups", ())),
        query=dict(request.get("get") or {}),
        headers=dict(request.get("headers") or {}),
        body=bytes(request.get("body") or b""),
        ip=_take_ip(),
    )


# orthanc-python 7.1 enters Python on Orthanc's threads through PyGILState_Ensure/Release: every
# callback created a thread state and deleted it on return, and its frame stack (16 KiB) was
# mmapped and munmapped each time: page faults, and a TLB shoot-down on every core, ~20 µs a
# callback (perf: munmap and page faults gone with this, docs/runtime-facts.md). One Ensure more
# on each thread, never released, keeps that thread's state: the plugin's Release then only
# drops the GIL, and the next callback on the thread reuses the state. Orthanc's threads are
# pools (HTTP, changes, jobs, DICOM); a thread that ends leaves its state behind, so at most
# _KEPT_STATES_MAX are kept. Without the C function (another Python) nothing is kept.
_KEPT_STATES_MAX = 512
_kept_states: set[int] = set()
try:
    _gil_ensure: Callable[[], int] | None = ctypes.pythonapi.PyGILState_Ensure
except (AttributeError, OSError):  # pragma: no cover - CPython always exports it
    _gil_ensure = None


def _keep_thread_state() -> None:
    """Called first in every callback (set operations are atomic under the GIL)."""
    ident = threading.get_ident()
    if ident in _kept_states or len(_kept_states) >= _KEPT_STATES_MAX or _gil_ensure is None:
        return
    _kept_states.add(ident)
    try:
        _gil_ensure()  # on a thread that holds the GIL: only counts one more user of its state
    except Exception:  # noqa: BLE001 - only a speed-up: the callback goes on as before
        orthanc.LogWarning("NeuroNova: could not keep a Python thread state")


# Every callback registered with Orthanc, and the app, stay referenced here until the process
# ends. orthanc-python 7.1 drops its references to the callbacks in OrthancPluginFinalize; when
# that was the last reference to a closure owning the App, the App and everything it holds
# (threads, pools, engines) were deallocated there, and Orthanc died with SIGSEGV in _Py_Dealloc
# at every shutdown (measured; docs/runtime-facts.md).
_KEPT: list[object] = []
_F = TypeVar("_F", bound=Callable[..., Any])


def _kept(callback: _F) -> _F:
    _KEPT.append(callback)
    return callback


def install() -> PluginApp:
    host = OrthancHost()
    app: PluginApp
    try:
        from .app import App

        app = App(host, json.loads(orthanc.GetConfiguration()))
    except Exception as exc:  # noqa: BLE001 - any start-up failure closes the gate
        reason = f"{type(exc).__name__}: {exc}"
        orthanc.LogError(f"NeuroNova: the gate is CLOSED, every request is denied: {reason}")
        orthanc.LogInfo(traceback.format_exc())
        app = _closed_app(reason)

    def request_filter(uri: str, **kwargs: Any) -> bool:
        _keep_thread_state()
        try:
            ip = str(kwargs.get("ip", ""))
            _remember_ip(ip)
            return bool(app.allow_request(
                uri, int(kwargs.get("method", 0)), ip,
                kwargs.get("headers") or {}, kwargs.get("get") or {},
            ))
        except Exception:  # noqa: BLE001 - fail closed
            return False

    def route(handler: Callable[[Request], Response]) -> Callable[..., None]:
        def callback(output: Any, uri: str, **request: Any) -> None:
            _keep_thread_state()
            try:
                response = handler(_request(uri, request))
            except Exception as exc:  # noqa: BLE001 - a handler bug is a 500, logged
                orthanc.LogError(f"NeuroNova: {uri}: {exc!r}\n{traceback.format_exc()}")
                response = Response(500, b'{"error": "internal error"}')
            _answer(output, response)

        return callback

    def on_change(change_type: int, level: int, resource_id: str) -> None:
        _keep_thread_state()
        # The SDK passes plain ints: give the domain code names instead.
        change = _CHANGE_NAMES.get(change_type, str(change_type))
        try:
            if change_type == orthanc.ChangeType.ORTHANC_STOPPED:
                app.stop()
            else:
                if change_type == orthanc.ChangeType.ORTHANC_STARTED:
                    host.orthanc_started()
                app.on_change(change, _LEVEL_NAMES.get(level, str(level)), resource_id)
        except Exception as exc:  # noqa: BLE001 - never break Orthanc's change thread
            orthanc.LogError(f"NeuroNova: change {change}: {exc!r}")

    _KEPT.append(app)
    orthanc.RegisterIncomingHttpRequestFilter(_kept(request_filter))
    orthanc.RegisterRestCallback("/neuronova/(.*)", _kept(route(app.handle_neuronova)))
    orthanc.RegisterRestCallback("/dicom-web/(.*)", _kept(route(app.handle_dicomweb)))
    orthanc.RegisterRestCallback("/ohif(/.*)?", _kept(route(app.handle_viewer)))
    javascript = app.explorer_javascript()
    if javascript:
        orthanc.ExtendOrthancExplorer(javascript)
    orthanc.RegisterOnChangeCallback(_kept(on_change))
    _register_instance_hooks(app)
    return app


def _metadata(dicom: Any, instance_id: str, name: str) -> str:
    """Metadata Orthanc recorded on storage (RemoteIP, CalledAET): from the stored instance,
    else from the index."""
    try:
        value = str(dicom.GetInstanceMetadata(name) or "")
    except orthanc.OrthancException:
        value = ""
    if value:
        return value
    try:
        return bytes(orthanc.RestApiGet(f"/instances/{instance_id}/metadata/{name}")).decode("utf-8", "replace")
    except orthanc.OrthancException:
        return ""


def _register_instance_hooks(app: PluginApp) -> None:
    """Hooks on every instance Orthanc receives and stores.

    Both only observe: the received-instance callback always answers KEEP_AS_IS (an exception
    there would make Orthanc store the original anyway), so an instance is never lost or altered.
    """
    keep = orthanc.ReceivedInstanceAction.KEEP_AS_IS

    def on_received(dicom: bytes, origin: Any = None, *_: Any) -> tuple[Any, None]:
        _keep_thread_state()
        try:
            app.on_received_instance(bytes(dicom), _ORIGIN_NAMES.get(origin, str(origin)))
        except Exception as exc:  # noqa: BLE001 - the instance is stored whatever happens
            orthanc.LogError(f"NeuroNova: patient-collision check failed, instance stored unchecked: "
                             f"{exc!r}\n{traceback.format_exc()}")
        return keep, None

    def on_stored(dicom: Any, instance_id: str) -> None:
        _keep_thread_state()
        try:
            origin = _ORIGIN_NAMES.get(dicom.GetInstanceOrigin(), "")
            if origin != "DICOM_PROTOCOL":
                return
            tags = json.loads(dicom.GetInstanceSimplifiedJson())
            app.on_stored_instance(StoredInstance(
                origin=origin, remote_aet=str(dicom.GetInstanceRemoteAet() or ""),
                remote_ip=_metadata(dicom, instance_id, "RemoteIP"),
                called_aet=_metadata(dicom, instance_id, "CalledAET"),
                study_uid=str(tags.get("StudyInstanceUID", "")), sop_uid=str(tags.get("SOPInstanceUID", "")),
            ))
        except Exception as exc:  # noqa: BLE001 - never break Orthanc's storage thread
            orthanc.LogError(f"NeuroNova: audit of stored instance {instance_id}: {exc!r}")

    orthanc.RegisterReceivedInstanceCallback(_kept(on_received))
    orthanc.RegisterOnStoredInstanceCallback(_kept(on_stored))
    _register_move_scp(app)


def _register_move_scp(app: PluginApp) -> None:
    """The C-MOVE SCP (dicom_move.py says why the plugin drives it). orthanc-python 7.1 calls
    the first callback with the connection and the request's keys as keyword arguments; an
    exception in any callback makes Orthanc answer the requester with a failure."""

    def create(*args: Any, **kwargs: Any) -> Any:
        connection = kwargs.get("Connection", args[0] if args else None)
        try:
            request = MoveRequest(
                level=str(kwargs.get("Level") or ""), patient_id=str(kwargs.get("PatientID") or ""),
                accession=str(kwargs.get("AccessionNumber") or ""),
                study_uid=str(kwargs.get("StudyInstanceUID") or ""),
                series_uid=str(kwargs.get("SeriesInstanceUID") or ""),
                sop_uid=str(kwargs.get("SOPInstanceUID") or ""), target_aet=str(kwargs.get("TargetAET") or ""),
                originator_id=int(kwargs.get("OriginatorID") or 0),
                remote_aet=str(connection.GetConnectionRemoteAet() or "") if connection else "",
                remote_ip=str(connection.GetConnectionRemoteIp() or "") if connection else "",
                called_aet=str(connection.GetConnectionCalledAet() or "") if connection else "",
            )
            return app.create_move(request)
        except Exception as exc:
            orthanc.LogWarning(f"NeuroNova: C-MOVE refused: {exc}")
            raise

    def size(driver: Any) -> int:
        return int(app.move_size(driver))

    def apply(driver: Any) -> None:
        app.apply_move(driver)

    def free(_driver: Any) -> None:
        return None

    orthanc.RegisterMoveCallback3(_kept(create), _kept(size), _kept(apply), _kept(free))
