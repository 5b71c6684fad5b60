"""ai_client over real HTTP on 127.0.0.1: the contract client against the reference service
(which pulls real MR pixels from a stub DICOMweb server with the bearer token), failure
mapping with injected faults, answer validation, DICOMweb fetch, and the OIP v2 client
against a stub OIP server whose "model" computes from the tensor it receives."""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import numpy as np
import pytest
import requests
from PIL import Image
from pydicom.dataset import Dataset

from ai_client import (
    ContractClient,
    InferenceClient,
    InferenceRequest,
    InferenceResult,
    InvalidRequest,
    MalformedResponse,
    OipClient,
    OipModelConfig,
    OipOutputMap,
    PermanentError,
    SeriesVolume,
    TransientError,
    UnsupportedSeries,
    decode_mask_png,
    encode_mask_png,
    fetch_series_volume,
    mask_to_base64,
    volume_from_datasets,
)
from ai_client._http import parse_retry_after
from ai_client.oip import build_infer_body
from ai_client.png import MaskDecodeError, mask_from_base64
from ai_client.reference_service import ReferenceServer, ServiceConfig, infer_volume
from ai_client.reference_service.inference import dicomweb_fetch
from ai_client.testing import StubDicomWeb, mr_head_series

TOKEN = "study-token-123"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def head() -> list[Dataset]:
    return mr_head_series()


@pytest.fixture(scope="module")
def dicomweb(head: list[Dataset]) -> Iterator[StubDicomWeb]:
    stub = StubDicomWeb(head, TOKEN).start()
    yield stub
    stub.stop()


@pytest.fixture
def service() -> Iterator[ReferenceServer]:
    svc = ReferenceServer("127.0.0.1", 0, ServiceConfig(enable_fault_control=True, max_fault_sleep=5))
    svc.start_background()
    yield svc
    svc.stop()


def make_request(
    head: list[Dataset], stub: StubDicomWeb, *, model: str = "stroke_risk", token: str = TOKEN
) -> InferenceRequest:
    return InferenceRequest(
        instance_id="0b6c2d8e-orthanc-id",
        model_type=model,
        patient_id=str(head[0].PatientID),
        study_instance_uid=str(head[0].StudyInstanceUID),
        series_instance_uid=str(head[0].SeriesInstanceUID),
        dicomweb_url=stub.url,
        access_token=token,
    )


def queue_faults(svc: ReferenceServer, *faults: dict[str, Any]) -> None:
    answer = requests.post(f"{svc.url}/control/faults", json={"faults": list(faults)}, timeout=5)
    assert answer.status_code == 200, answer.text


def client(svc: ReferenceServer, **kwargs: Any) -> ContractClient:
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 10.0)
    return ContractClient(svc.url, **kwargs)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- contract: success


def test_contract_round_trip_pulls_the_series_with_the_token(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]
) -> None:
    seen = len(dicomweb.requests)
    result = client(service).infer(make_request(head, dicomweb))

    assert dicomweb.requests[seen:] == [
        (f"/dicom-web/studies/{head[0].StudyInstanceUID}/series/{head[0].SeriesInstanceUID}", f"Bearer {TOKEN}")
    ]
    assert isinstance(client(service), InferenceClient)
    assert result.job_id and 0.0 <= result.risk_score <= 1.0 and 0.0 <= result.confidence <= 1.0
    assert result.processing_time >= 0.0
    assert result.model_type == "stroke_risk" and result.segmentation_label == "Hyperintensity"
    # one mask per source instance, in slice order, although the stub served them reversed
    assert [f.sop_instance_uid for f in result.segmentation_frames] == [str(ds.SOPInstanceUID) for ds in head]
    assert all(f.frame_number == 1 and f.mask.shape == (64, 64) for f in result.segmentation_frames)
    # the answer is the analysis of the real pixels: same as analysing the files locally
    local = infer_volume(volume_from_datasets(head), "stroke_risk")
    assert (result.risk_score, result.confidence) == (local.risk_score, local.confidence)
    for remote, here in zip(result.segmentation_frames, local.segmentation_frames, strict=True):
        assert np.array_equal(remote.mask, here.mask)
    assert result.segmentation is not None and result.segmentation_sop_instance_uid is not None
    key = [f.sop_instance_uid for f in result.segmentation_frames].index(result.segmentation_sop_instance_uid)
    assert np.array_equal(result.segmentation, result.segmentation_frames[key].mask)
    assert result.details["hyperintense_voxels"] == sum(int(f.mask.sum()) for f in result.segmentation_frames)


def test_health(service: ReferenceServer) -> None:
    health = client(service).health()
    assert health["status"] == "ok" and health["clinical_use"] is False
    assert set(health["models"]) == {"stroke_risk", "tumor_detection"}


# --------------------------------------------------------------------------- contract: failures


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retryable_statuses_are_transient(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset], status: int
) -> None:
    queue_faults(service, {"kind": "status", "status": status, "retry_after": 7})
    with pytest.raises(TransientError) as info:
        client(service).infer(make_request(head, dicomweb))
    assert not isinstance(info.value, MalformedResponse)
    assert info.value.status == status and info.value.retry_after == 7.0
    assert "injected fault" in info.value.body_excerpt


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_permanent_with_status_and_excerpt(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset], status: int
) -> None:
    queue_faults(service, {"kind": "status", "status": status, "body": "no such model, try again never " * 40})
    with pytest.raises(PermanentError) as info:
        client(service).infer(make_request(head, dicomweb))
    assert info.value.status == status
    assert info.value.body_excerpt.startswith("no such model, try again never")
    assert len(info.value.body_excerpt) <= 300
    assert f"HTTP {status}" in str(info.value)


def test_unknown_model_is_permanent_400(service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    with pytest.raises(PermanentError) as info:
        client(service).infer(make_request(head, dicomweb, model="hallucination_detector"))
    assert info.value.status == 400 and "hallucination_detector" in info.value.body_excerpt


def test_wrong_base_url_is_permanent_404(service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    with pytest.raises(PermanentError) as info:
        ContractClient(service.url + "/v9").infer(make_request(head, dicomweb))
    assert info.value.status == 404


def test_refused_connection_is_transient(dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    with pytest.raises(TransientError) as info:
        ContractClient(f"http://127.0.0.1:{closed_port()}", connect_timeout=2).infer(make_request(head, dicomweb))
    assert info.value.status is None and "could not reach" in str(info.value)


def test_read_timeout_is_transient_and_bounded(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]
) -> None:
    queue_faults(service, {"kind": "sleep", "seconds": 3})
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        client(service, read_timeout=0.3).infer(make_request(head, dicomweb))
    assert time.monotonic() - started < 2.0
    assert "timed out" in str(info.value)


def test_a_short_sleep_still_answers(service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    queue_faults(service, {"kind": "sleep", "seconds": 0.2})
    started = time.monotonic()
    result = client(service).infer(make_request(head, dicomweb))
    assert time.monotonic() - started >= 0.2 and result.segmentation_frames


@pytest.mark.parametrize("kind", ["malformed", "invalid"])
def test_malformed_answers(service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset], kind: str) -> None:
    queue_faults(service, {"kind": kind})
    with pytest.raises(MalformedResponse) as info:
        client(service).infer(make_request(head, dicomweb))
    assert isinstance(info.value, TransientError)
    assert ("not JSON" if kind == "malformed" else "risk_score") in str(info.value)


@pytest.mark.parametrize("kind", ["reset", "close"])
def test_dropped_connections_are_transient(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset], kind: str
) -> None:
    queue_faults(service, {"kind": kind})
    with pytest.raises(TransientError) as info:
        client(service).infer(make_request(head, dicomweb))
    assert info.value.status is None


def test_faults_are_consumed_in_order_then_service_recovers(
    service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]
) -> None:
    queue_faults(service, {"kind": "status", "status": 503, "times": 2}, {"kind": "malformed"})
    c = client(service)
    outcomes: list[str] = []
    for _ in range(4):  # what a job runner with 4 attempts would see
        try:
            c.infer(make_request(head, dicomweb))
            outcomes.append("ok")
        except MalformedResponse:
            outcomes.append("malformed")
        except TransientError as exc:
            outcomes.append(str(exc.status))
    assert outcomes == ["503", "503", "malformed", "ok"]
    health = c.health()
    assert health["faults_applied"] == 3 and health["faults_pending"] == 0


def test_fault_control_validates_and_bounds(service: ReferenceServer) -> None:
    url = f"{service.url}/control/faults"
    assert requests.post(url, json={"faults": [{"kind": "explode"}]}, timeout=5).status_code == 400
    assert requests.post(url, json={"faults": [{"kind": "sleep", "seconds": 3600}]}, timeout=5).status_code == 400
    assert requests.post(url, json={"faults": [{"kind": "status"}] * 101}, timeout=5).status_code == 400
    assert requests.post(url, json={"faults": [{"kind": "status", "times": 2}]}, timeout=5).status_code == 200
    assert requests.get(url, timeout=5).json()["pending"][0]["times"] == 2
    assert requests.delete(url, timeout=5).json() == {"pending": []}


def test_fault_control_is_off_by_default() -> None:
    svc = ReferenceServer("127.0.0.1", 0)
    svc.start_background()
    try:
        answer = requests.post(f"{svc.url}/control/faults", json={"faults": [{"kind": "reset"}]}, timeout=5)
        assert answer.status_code == 404
    finally:
        svc.stop()


def test_all_slots_busy_is_transient_with_retry_after(dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    entered, release = threading.Event(), threading.Event()
    real_fetch = dicomweb_fetch()

    def slow_fetch(request: InferenceRequest) -> SeriesVolume:
        entered.set()
        release.wait(10)
        return real_fetch(request)

    svc = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=1), fetch=slow_fetch)
    svc.start_background()
    results: list[InferenceResult] = []
    try:
        first = threading.Thread(target=lambda: results.append(client(svc).infer(make_request(head, dicomweb))))
        first.start()
        assert entered.wait(10)
        with pytest.raises(TransientError) as info:
            client(svc).infer(make_request(head, dicomweb))
        assert info.value.status == 503 and info.value.retry_after == 1.0
        release.set()
        first.join(10)
        assert len(results) == 1
    finally:
        release.set()
        svc.stop()


def test_upstream_dicomweb_failures(service: ReferenceServer, head: list[Dataset]) -> None:
    stub = StubDicomWeb(head, TOKEN).start()
    try:
        with pytest.raises(PermanentError) as denied:
            client(service).infer(make_request(head, stub, token="someone-elses-token"))
        assert denied.value.status == 422 and "401" in denied.value.body_excerpt
        stub.fail_status = 503
        with pytest.raises(TransientError) as down:
            client(service).infer(make_request(head, stub))
        assert down.value.status == 502 and "503" in down.value.body_excerpt
    finally:
        stub.stop()


def test_service_api_key(dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    svc = ReferenceServer("127.0.0.1", 0, ServiceConfig(api_key="s3cret"))
    svc.start_background()
    try:
        with pytest.raises(PermanentError) as info:
            client(svc).infer(make_request(head, dicomweb))
        assert info.value.status == 401
        result = client(svc, headers={"Authorization": "Bearer s3cret"}).infer(make_request(head, dicomweb))
        assert result.segmentation_frames
    finally:
        svc.stop()


def test_answer_size_cap(service: ReferenceServer, dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    with pytest.raises(MalformedResponse, match="exceeds 1000 bytes"):
        client(service, max_response_bytes=1000).infer(make_request(head, dicomweb))


def test_request_validation() -> None:
    good = {
        "instance_id": "i",
        "model_type": "stroke_risk",
        "patient_id": "",
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.4",
        "dicomweb_url": "http://gate/dicom-web",
        "access_token": "t",
    }
    assert InferenceRequest.from_json(good).to_json() == good
    assert "secret-token" not in repr(InferenceRequest.from_json({**good, "access_token": "secret-token"}))
    for broken in (
        {**good, "study_instance_uid": "1.2.abc"},
        {**good, "dicomweb_url": "ftp://gate"},
        {**good, "access_token": ""},
        {**good, "model_type": 3},
        {k: v for k, v in good.items() if k != "patient_id"},
        [good],
    ):
        with pytest.raises(InvalidRequest):
            InferenceRequest.from_json(broken)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


# --------------------------------------------------------------------------- answer validation


def _mask() -> np.ndarray:
    m = np.zeros((8, 6), dtype=bool)
    m[2:5, 1:3] = True
    return m


def _answer(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "j1",
        "risk_score": 0.25,
        "confidence": 1,
        "processing_time": 0.5,
        "segmentation": mask_to_base64(_mask()),
        "segmentation_frames": [{"sop_instance_uid": "1.2.3", "frame_number": 1, "mask": mask_to_base64(_mask())}],
        "future_field": {"ignored": True},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_answer_is_parsed() -> None:
    result = InferenceResult.from_json(_answer())
    assert result.confidence == 1.0 and isinstance(result.confidence, float)
    assert result.segmentation is not None and np.array_equal(result.segmentation, _mask())
    assert result.segmentation_frames[0].sop_instance_uid == "1.2.3"
    again = InferenceResult.from_json(json.loads(json.dumps(result.to_json())))
    assert np.array_equal(again.segmentation_frames[0].mask, _mask())
    assert InferenceResult.from_json(_answer(segmentation=None, segmentation_frames=...)).segmentation is None


def _png(mode: str) -> str:
    data = np.zeros((4, 4, 4), dtype=np.uint8)
    data[1, 2] = 200
    image = Image.fromarray(data, "RGBA").convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize(
    "changes",
    [
        {"job_id": ...},
        {"job_id": ""},
        {"job_id": 7},
        {"risk_score": ...},
        {"risk_score": "0.5"},
        {"risk_score": True},
        {"risk_score": 1.0000001},
        {"risk_score": -0.1},
        {"confidence": None},
        {"confidence": 2},
        {"processing_time": -1},
        {"processing_time": [1]},
        {"segmentation": "not base64!"},
        {"segmentation": base64.b64encode(b"GIF89a....").decode()},
        {"segmentation": base64.b64encode(encode_mask_png(_mask())[:40]).decode()},
        {"segmentation": 12},
        {"segmentation_frames": {"1.2.3": "x"}},
        {"segmentation_frames": [{"sop_instance_uid": "1.2.x", "mask": mask_to_base64(_mask())}]},
        {"segmentation_frames": [{"sop_instance_uid": "1.2.3", "frame_number": 0, "mask": mask_to_base64(_mask())}]},
        {"segmentation_frames": [{"sop_instance_uid": "1.2.3"}]},
        {"segmentation_frames": [{"sop_instance_uid": "1.2.3", "mask": mask_to_base64(_mask())}] * 2},
        {"segmentation_sop_instance_uid": "abc"},
        {"details": []},
    ],
)
def test_malformed_answer_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponse):
        InferenceResult.from_json(_answer(**changes))


def test_non_object_answers_and_non_finite_numbers() -> None:
    answers: list[object] = [[], "ok", None, 3]
    for answer in answers:
        with pytest.raises(MalformedResponse):
            InferenceResult.from_json(answer)
    with pytest.raises(MalformedResponse):
        InferenceResult.from_json(_answer(risk_score=math.nan))


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"])
def test_png_decoding_accepts_common_modes(mode: str) -> None:
    mask = mask_from_base64(_png(mode))
    expected = np.zeros((4, 4), dtype=bool)
    expected[1, 2] = True
    assert np.array_equal(mask, expected)


def test_png_round_trip_and_limits() -> None:
    m = np.random.default_rng(1).random((33, 17)) > 0.5
    assert np.array_equal(decode_mask_png(encode_mask_png(m)), m)
    with pytest.raises(MaskDecodeError, match="too large"):
        decode_mask_png(encode_mask_png(m), max_pixels=100)
    with pytest.raises(ValueError):
        encode_mask_png(np.zeros((2, 2, 2), dtype=bool))


# --------------------------------------------------------------------------- DICOMweb fetch


def test_fetch_series_volume_sorts_and_uses_the_token(dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    volume, datasets = fetch_series_volume(
        dicomweb.url, str(head[0].StudyInstanceUID), str(head[0].SeriesInstanceUID), TOKEN
    )
    assert len(datasets) == len(head)
    assert volume.shape == (10, 64, 64) and volume.pixels.dtype == np.float32
    assert [f.sop_instance_uid for f in volume.frames] == [str(ds.SOPInstanceUID) for ds in head]
    z = [f.position[2] for f in volume.frames if f.position is not None]
    assert z == sorted(z) and len(z) == 10
    assert volume.slice_spacing == pytest.approx(1.2) and volume.pixel_spacing == (1.0, 1.0)
    assert np.array_equal(volume.pixels[3], head[3].pixel_array.astype(np.float32))
    assert dicomweb.requests[-1][1] == f"Bearer {TOKEN}"


def test_fetch_failures_are_typed(dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    st, se = str(head[0].StudyInstanceUID), str(head[0].SeriesInstanceUID)
    with pytest.raises(PermanentError) as denied:
        fetch_series_volume(dicomweb.url, st, se, "wrong")
    assert denied.value.status == 401
    with pytest.raises(PermanentError) as missing:
        fetch_series_volume(dicomweb.url, st, "1.2.3.999", TOKEN)
    assert missing.value.status == 404
    with pytest.raises(PermanentError, match="not a DICOM UID"):
        fetch_series_volume(dicomweb.url, st, se + ".9", TOKEN)
    with pytest.raises(TransientError):
        fetch_series_volume(f"http://127.0.0.1:{closed_port()}/dicom-web", st, se, TOKEN, connect_timeout=2)
    with pytest.raises(UnsupportedSeries, match="limit"):
        fetch_series_volume(dicomweb.url, st, se, TOKEN, max_voxels=1000)


def test_volume_rejects_mixed_frame_sizes(head: list[Dataset]) -> None:
    other = mr_head_series()[0]
    other.Rows = 32
    other.PixelData = other.PixelData[: 32 * 64 * 2]
    with pytest.raises(UnsupportedSeries, match="mixes frame sizes"):
        volume_from_datasets([*head[:2], other])


# --------------------------------------------------------------------------- OIP v2


class _OipHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = cast(_OipServer, self.server)
        if self.path == "/v2/health/ready":
            self._reply(200, b"")  # Triton answers an empty body
        elif self.path == "/v2/models/brain-seg/ready":
            self._reply(200, b'{"ready": true}')
        elif self.path == "/v2/models/brain-seg":
            self._reply(200, json.dumps(server.metadata).encode())
        else:
            self._reply(404, b'{"error": "unknown model"}')

    def do_POST(self) -> None:
        server = cast(_OipServer, self.server)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.seen.append((self.path, body))
        status, answer = server.respond(self.path, body)
        self._reply(status, answer if isinstance(answer, bytes) else json.dumps(answer).encode())


class _OipServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OipHandler)
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.respond: Callable[[str, dict[str, Any]], tuple[int, Any]] = self.model
        self.metadata = {
            "name": "brain-seg",
            "versions": ["3"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, -1, -1, -1]}],
            "outputs": [{"name": "logit", "datatype": "FP32", "shape": [1, 1]}],
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @staticmethod
    def model(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A "model" that really uses the tensor: mask = voxel above the volume mean,
        logit = 4 * (fraction of mask - 0.5), confidence and a 2-class probability."""
        tensor = body["inputs"][0]
        data = np.asarray(tensor["data"], dtype=np.float64)
        mask = data > data.mean()
        fraction = float(mask.mean())
        return 200, {
            "model_name": "brain-seg",
            "model_version": "3",
            "id": body.get("id"),
            "outputs": [
                {"name": "logit", "datatype": "FP32", "shape": [1, 1], "data": [4 * (fraction - 0.5)]},
                {"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": [1 - fraction, fraction]},
                {"name": "quality", "datatype": "FP64", "shape": [1], "data": [0.75]},
                {"name": "mask", "datatype": "UINT8", "shape": tensor["shape"], "data": mask.astype(int).tolist()},
            ],
        }


@pytest.fixture
def oip() -> Iterator[_OipServer]:
    server = _OipServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _oip_config(**changes: Any) -> OipModelConfig:
    outputs = OipOutputMap(score="probs", score_index=1, confidence="quality", mask="mask", mask_label="Brain")
    values: dict[str, Any] = {
        "model_name": "brain-seg",
        "model_version": "3",
        "outputs": outputs,
        "input_name": "image",
        "parameters": {"priority": 1},
    }
    values.update(changes)
    return OipModelConfig(**values)


def test_oip_request_body_and_mapping(oip: _OipServer, dicomweb: StubDicomWeb, head: list[Dataset]) -> None:
    c = OipClient(oip.url, {"stroke_risk": _oip_config()}, connect_timeout=2, read_timeout=10)
    result = c.infer(make_request(head, dicomweb))

    path, body = oip.seen[-1]
    assert path == "/v2/models/brain-seg/versions/3/infer"
    assert body["id"] == result.job_id and body["parameters"] == {"priority": 1}
    (tensor,) = body["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("image", "FP32", [1, 1, 10, 64, 64])
    volume = volume_from_datasets(head)
    assert np.array_equal(np.asarray(tensor["data"], dtype=np.float32), volume.pixels.ravel())
    assert body["outputs"] == [{"name": "probs"}, {"name": "quality"}, {"name": "mask"}]

    expected_mask = volume.pixels > volume.pixels.astype(np.float64).mean()
    assert result.risk_score == pytest.approx(float(expected_mask.mean()), rel=1e-6)
    assert result.confidence == 0.75 and result.model_type == "stroke_risk" and result.model_version == "3"
    assert [f.sop_instance_uid for f in result.segmentation_frames] == [str(ds.SOPInstanceUID) for ds in head]
    for i, frame in enumerate(result.segmentation_frames):
        assert np.array_equal(frame.mask, expected_mask[i])
    assert result.segmentation_label == "Brain"


def test_oip_layouts_normalisation_and_sigmoid(oip: _OipServer, head: list[Dataset]) -> None:
    volume = volume_from_datasets(head)
    body = build_infer_body(
        volume, _oip_config(input_layout="NCHW", normalization="zscore", input_datatype="FP64"), "x"
    )
    data = np.asarray(body["inputs"][0]["data"])
    assert body["inputs"][0]["shape"] == [10, 1, 64, 64]
    assert abs(data.mean()) < 1e-9 and data.std() == pytest.approx(1.0)
    body16 = build_infer_body(volume, _oip_config(input_layout="DHW", input_datatype="INT16"), "x")
    assert body16["inputs"][0]["shape"] == [10, 64, 64] and isinstance(body16["inputs"][0]["data"][0], int)

    config = _oip_config(outputs=OipOutputMap(score="logit", score_transform="sigmoid"))
    result = OipClient(oip.url, {"m": config}).infer_volume(volume, "m")
    fraction = float((volume.pixels > volume.pixels.astype(np.float64).mean()).mean())
    assert result.risk_score == pytest.approx(1 / (1 + math.exp(-4 * (fraction - 0.5))), rel=1e-6)
    assert result.confidence == pytest.approx(max(result.risk_score, 1 - result.risk_score))
    assert result.segmentation_frames == () and result.segmentation is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"outputs": []}, "no output tensor 'probs'"),
        ({"model_name": "brain-seg"}, "no outputs list"),
        ({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": [0.5]}]}, "1 values for shape"),
        ({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 3.0]}]}, "outside"),
        ({"outputs": [{"name": "probs", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]}, "datatype"),
        (b"<html>oops</html>", "not JSON"),
    ],
)
def test_oip_malformed_answers(oip: _OipServer, head: list[Dataset], answer: Any, message: str) -> None:
    oip.respond = lambda path, body: (200, answer)
    config = _oip_config(outputs=OipOutputMap(score="probs", score_index=1))
    with pytest.raises(MalformedResponse, match=message):
        OipClient(oip.url, {"m": config}).infer_volume(volume_from_datasets(head), "m")


def test_oip_mask_of_wrong_size_is_malformed(oip: _OipServer, head: list[Dataset]) -> None:
    def small_mask(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        status, answer = _OipServer.model(path, body)
        answer["outputs"][3] = {"name": "mask", "datatype": "UINT8", "shape": [2], "data": [0, 1]}
        return status, answer

    oip.respond = small_mask
    with pytest.raises(MalformedResponse, match="mask output"):
        OipClient(oip.url, {"m": _oip_config()}).infer_volume(volume_from_datasets(head), "m")


def test_oip_http_failures(oip: _OipServer, head: list[Dataset]) -> None:
    volume = volume_from_datasets(head)
    c = OipClient(oip.url, {"m": _oip_config()}, read_timeout=5)
    oip.respond = lambda path, body: (500, {"error": "CUDA out of memory"})
    with pytest.raises(TransientError) as busy:
        c.infer_volume(volume, "m")
    assert busy.value.status == 500 and "CUDA out of memory" in busy.value.body_excerpt
    oip.respond = lambda path, body: (400, {"error": "unexpected shape for input 'image'"})
    with pytest.raises(PermanentError) as bad:
        c.infer_volume(volume, "m")
    assert bad.value.status == 400 and "unexpected shape" in bad.value.body_excerpt
    with pytest.raises(PermanentError, match="no OIP model"):
        c.infer_volume(volume, "unknown")
    with pytest.raises(UnsupportedSeries, match="max_input_elements"):
        OipClient(oip.url, {"m": _oip_config()}, max_input_elements=1000).infer_volume(volume, "m")
    with pytest.raises(TransientError):
        OipClient(f"http://127.0.0.1:{closed_port()}", {"m": _oip_config()}, connect_timeout=2).infer_volume(
            volume, "m"
        )


def test_oip_health_and_metadata(oip: _OipServer) -> None:
    c = OipClient(oip.url, {"m": _oip_config(model_version=None)})
    assert c.ready() is True and c.model_ready("m") is True and c.model_ready("other") is False
    meta = c.model_metadata("brain-seg")
    assert meta.platform == "onnxruntime_onnx" and meta.versions == ("3",)
    assert meta.inputs[0].name == "image" and meta.inputs[0].shape == (1, 1, -1, -1, -1)
    with pytest.raises(PermanentError):
        c.model_metadata("missing")
    assert OipClient(f"http://127.0.0.1:{closed_port()}", {}, connect_timeout=1).ready() is False
