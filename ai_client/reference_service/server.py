"""HTTP front of the reference inference service (stdlib ``ThreadingHTTPServer``).

Routes: ``POST /inference`` (the contract), ``GET /health``, and, only when fault control is
enabled, ``GET|POST|DELETE /control/faults`` (see :mod:`.faults`).

Answers to ``/inference``: 200 result; 400 invalid JSON/request or unknown model; 401 wrong
API key (when one is configured); 411/413 missing or too large body; 422 the series could
not be read or used (a permanent DICOMweb failure such as 401/403/404, or an unsupported
series); 502 a transient DICOMweb failure (connection, timeout, 5xx); 503 all analysis slots
busy (``Retry-After: 1``); 500 anything unexpected. Errors are ``{"error": "..."}``.
In the seed mode (``ServiceConfig.answer = "seed"``) a 200 answer has exactly the seed's
five fields, and an ``instance_id`` that is not an instance of the series gets 422.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import struct
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from ..errors import PermanentError, TransientError
from ..models import InferenceRequest, InvalidRequest
from .analysis import MODELS
from .faults import Fault, FaultError, FaultQueue, parse_faults
from .inference import Fetch, FetchOptions, UnknownModel, dicomweb_fetch, run_inference
from .seed import UnknownInstance, seed_answer

log = logging.getLogger("ai_client.reference_service")

SERVICE_NAME = "neuronova-reference-inference"
SERVICE_VERSION = "1.0"
ANSWERS = ("full", "seed")


@dataclass(frozen=True)
class ServiceConfig:
    fetch_options: FetchOptions = field(default_factory=FetchOptions)
    max_concurrent: int = 2
    api_key: str | None = None
    enable_fault_control: bool = False
    max_fault_sleep: float = 30.0
    max_body_bytes: int = 1024 * 1024
    #: "full": the extended contract (per-frame masks, label, version, details); "seed": only
    #: the seed's five fields, the mask of the instance named in the request (seed.py).
    answer: str = "full"
    #: Seconds every analysis takes on top of its own time (stands in for a real model;
    #: holds its analysis slot, interrupted by stop()).
    delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.answer not in ANSWERS:
            raise ValueError(f"answer must be one of {ANSWERS}")
        if not 0 <= self.delay_seconds <= 3600:
            raise ValueError("delay_seconds must be in [0, 3600]")


class ReferenceServer(ThreadingHTTPServer):
    """The service. ``fetch`` replaces the DICOMweb pull (tests); ``faults`` preloads the
    fault queue (works even when the control endpoint is disabled)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        host: str,
        port: int,
        config: ServiceConfig | None = None,
        *,
        fetch: Fetch | None = None,
        faults: list[Fault] | None = None,
    ) -> None:
        self.config = config or ServiceConfig()
        if self.config.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.fetch = fetch or dicomweb_fetch(self.config.fetch_options)
        self.faults = FaultQueue()
        if faults:
            self.faults.extend(faults)
        self.stopping = threading.Event()
        self.slots = threading.BoundedSemaphore(self.config.max_concurrent)
        self._counter_lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        return f"http://{host!s}:{port}"

    def count(self, name: str) -> None:
        with self._counter_lock:
            self.counters[name] += 1

    def start_background(self, poll_interval: float = 0.05) -> threading.Thread:
        """Serve on a daemon thread (tests, embedding); stop with :meth:`stop` (which waits up
        to ``poll_interval`` seconds for the serving loop to notice)."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": poll_interval}, name="reference-service", daemon=True
        )
        thread.start()
        self._thread = thread
        return thread

    def stop(self) -> None:
        """Stop serving: interrupts injected sleeps, closes the listening socket."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "NeuroNovaReference/" + SERVICE_VERSION

    @property
    def service(self) -> ReferenceServer:
        return cast(ReferenceServer, self.server)

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.service.count(f"status_{status}")

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode("utf-8"), headers=headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        self._json(status, {"error": message, **extra}, headers)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._error(411, "Content-Length required")
            return None
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._error(400, "bad Content-Length")
            return None
        if length < 0 or length > self.service.config.max_body_bytes:
            self.close_connection = True
            self._error(413, f"body larger than {self.service.config.max_body_bytes} bytes")
            return None
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        key = self.service.config.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode("utf-8"), f"Bearer {key}".encode())

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/health":
            if method != "GET":
                self._error(405, "use GET", {"Allow": "GET"})
                return
            self._health()
            return
        if path == "/inference":
            if method != "POST":
                self._error(405, "use POST", {"Allow": "POST"})
                return
            self._inference()
            return
        if path == "/control/faults" and self.service.config.enable_fault_control:
            self._control(method)
            return
        if method == "POST":  # keep the connection usable: drain the body we will not use
            self._read_body()
        self._error(404, f"no route {path}")

    # ------------------------------------------------------------------ routes

    def _health(self) -> None:
        srv = self.service
        with srv._counter_lock:
            counters = dict(srv.counters)
        self._json(
            200,
            {
                "status": "ok",
                "service": SERVICE_NAME,
                "version": SERVICE_VERSION,
                "clinical_use": False,
                "answer": srv.config.answer,
                "delay_seconds": srv.config.delay_seconds,
                "models": {name: asdict(spec) for name, spec in MODELS.items()},
                "faults_pending": len(srv.faults.pending()),
                "faults_applied": srv.faults.applied,
                "counters": counters,
            },
        )

    def _control(self, method: str) -> None:
        srv = self.service
        if not self._authorized():
            if method == "POST":
                self._read_body()
            self._error(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
            return
        if method == "GET":
            self._json(200, {"pending": [f.to_json() for f in srv.faults.pending()]})
        elif method == "DELETE":
            srv.faults.clear()
            self._json(200, {"pending": []})
        else:
            body = self._read_body()
            if body is None:
                return
            try:
                obj = json.loads(body or b"null")
                faults = parse_faults(obj, max_sleep=srv.config.max_fault_sleep)
                replace = isinstance(obj, dict) and obj.get("mode") == "replace"
                queued = srv.faults.extend(faults, replace=replace)
            except (ValueError, FaultError) as exc:
                self._error(400, str(exc))
                return
            self._json(200, {"queued": queued})

    def _apply_fault(self, fault: Fault) -> bool:
        """Apply ``fault``; True when the request has been dealt with."""
        srv = self.service
        log.info("applying injected fault %s", fault.kind)
        if fault.kind == "sleep":
            srv.stopping.wait(fault.seconds)
            return False
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            if fault.body is None:
                self._error(fault.status, "injected fault", headers)
            else:
                self._send(fault.status, fault.body.encode("utf-8"), headers=headers)
            return True
        if fault.kind == "malformed":
            self._send(200, b'{"job_id": "injected", "risk_score": 0.5, "confid')
            return True
        if fault.kind == "invalid":
            self._json(200, {"job_id": "injected", "risk_score": 1.5, "confidence": 0.9, "processing_time": 0.1})
            return True
        self.close_connection = True
        if fault.kind == "reset":
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        return True  # "close": the server closes the socket after we return without answering

    def _inference(self) -> None:
        srv = self.service
        srv.count("inference_requests")
        if not self._authorized():
            self._read_body()
            self._error(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
            return
        body = self._read_body()
        if body is None:
            return
        fault = srv.faults.take()
        if fault is not None and self._apply_fault(fault):
            return
        try:
            obj = json.loads(body)
        except ValueError as exc:
            self._error(400, f"the body is not JSON: {exc}")
            return
        try:
            request = InferenceRequest.from_json(obj)
        except InvalidRequest as exc:
            self._error(400, str(exc))
            return
        if request.model_type not in MODELS:
            self._error(400, f"unknown model_type {request.model_type!r}", known=sorted(MODELS))
            return
        if not srv.slots.acquire(blocking=False):
            self._error(503, "all analysis slots are busy", {"Retry-After": "1"})
            return
        try:
            result = run_inference(request, srv.fetch)
            answer = seed_answer(request, result) if srv.config.answer == "seed" else result.to_json()
            if srv.config.delay_seconds:
                srv.stopping.wait(srv.config.delay_seconds)
        except UnknownInstance as exc:
            self._error(422, str(exc))
            return
        except UnknownModel as exc:
            self._error(400, str(exc))
            return
        except PermanentError as exc:
            self._error(422, f"cannot use the series: {exc}", upstream_status=exc.status)
            return
        except TransientError as exc:
            headers = None if exc.retry_after is None else {"Retry-After": str(int(exc.retry_after))}
            self._error(502, f"cannot read the series now: {exc}", headers, upstream_status=exc.status)
            return
        except Exception:
            log.exception("inference failed")
            self._error(500, "internal error in the reference analysis")
            return
        finally:
            srv.slots.release()
        srv.count("inference_ok")
        self._json(200, answer)
