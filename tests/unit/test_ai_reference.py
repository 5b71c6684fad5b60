"""The reference service's analysis on real MR pixels (pydicom's MR_small.dcm and the
pydicom-data emri_small head series), its numpy connected components against a plain BFS,
and the one-command start-up ``python -m ai_client.reference_service``."""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import requests
from pydicom.dataset import Dataset

from ai_client import ContractClient, InferenceRequest, InferenceResult, TransientError, volume_from_datasets
from ai_client.reference_service import MODELS, analyse, infer_volume
from ai_client.reference_service.analysis import dilate, erode, fill_holes, largest_component, otsu_threshold
from ai_client.testing import StubDicomWeb, mr_head_series, mr_small
from tests.support.orthanc_server import stop_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head() -> list[Dataset]:
    return mr_head_series()


def _volume(datasets: list[Dataset]) -> npt.NDArray[np.float32]:
    return volume_from_datasets(datasets).pixels


# --------------------------------------------------------------------------- analysis on real MR


@pytest.mark.parametrize("source", ["MR_small", "head"])
def test_analysis_is_deterministic_and_plausible(source: str, head: list[Dataset]) -> None:
    pixels = _volume([mr_small()] if source == "MR_small" else head)
    first = analyse(pixels, MODELS["stroke_risk"])
    second = analyse(pixels.copy(), MODELS["stroke_risk"])
    assert np.array_equal(first.brain_mask, second.brain_mask)
    assert np.array_equal(first.finding_mask, second.finding_mask)
    assert (first.risk_score, first.confidence, first.details) == (second.risk_score, second.confidence, second.details)

    mask, finding = first.brain_mask, first.finding_mask
    # a plausible tissue mask: a real part of the image, brighter than what it leaves out
    assert 0.05 < mask.mean() < 0.9
    assert pixels[mask].mean() > 1.5 * pixels[~mask].mean()
    assert all(mask[i].any() for i in range(mask.shape[0]))
    # per slice one 4-connected component without holes
    assert np.array_equal(largest_component(mask, 4), mask)
    assert np.array_equal(fill_holes(mask), mask)
    # the finding is the bright tail of the mask, as documented
    d = first.details
    assert not (finding & ~mask).any()
    assert finding.sum() == d["hyperintense_voxels"]
    assert finding.any()
    inside = pixels[mask].astype(np.float64)
    cutoff = inside.mean() + 2.0 * inside.std()
    assert np.array_equal(finding, mask & (pixels > cutoff))
    assert d["burden"] == round(finding.sum() / mask.sum(), 6)
    spec = MODELS["stroke_risk"]
    risk = 1 / (1 + math.exp(-(finding.sum() / mask.sum() - spec.reference_burden) / spec.burden_scale))
    assert first.risk_score == round(risk, 6) and 0 <= first.risk_score <= 1
    quality = min(1.0, mask.mean() / 0.10)
    assert first.confidence == round(quality * (0.5 + 0.5 * abs(2 * first.risk_score - 1)), 6)


def test_models_use_different_thresholds(head: list[Dataset]) -> None:
    pixels = _volume(head)
    stroke = analyse(pixels, MODELS["stroke_risk"])
    tumor = analyse(pixels, MODELS["tumor_detection"])
    assert np.array_equal(stroke.brain_mask, tumor.brain_mask)
    assert tumor.finding_mask.sum() < stroke.finding_mask.sum()
    assert not (tumor.finding_mask & ~stroke.finding_mask).any()
    assert tumor.details["sd_multiplier"] == 3.0 and stroke.details["sd_multiplier"] == 2.0


def test_infer_volume_answer(head: list[Dataset]) -> None:
    volume = volume_from_datasets(head)
    result = infer_volume(volume, "tumor_detection", job_id="job-42")
    analysis = analyse(volume.pixels, MODELS["tumor_detection"])
    assert result.job_id == "job-42" and result.model_type == "tumor_detection"
    assert [f.sop_instance_uid for f in result.segmentation_frames] == [str(ds.SOPInstanceUID) for ds in head]
    for i, frame in enumerate(result.segmentation_frames):
        assert np.array_equal(frame.mask, analysis.finding_mask[i])
    key = analysis.key_slice
    assert result.segmentation_sop_instance_uid == str(head[key].SOPInstanceUID)
    assert result.segmentation is not None and np.array_equal(result.segmentation, analysis.finding_mask[key])
    per_slice = analysis.finding_mask.reshape(10, -1).sum(axis=1)
    assert per_slice[key] == per_slice.max()
    assert result.details["voxel_volume_mm3"] == pytest.approx(1.2)
    assert result.details["hyperintense_volume_mm3"] == pytest.approx(1.2 * analysis.finding_mask.sum())
    # what travels over HTTP comes back identical
    again = InferenceResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.risk_score == result.risk_score and again.details == result.details
    assert all(
        np.array_equal(a.mask, b.mask)
        for a, b in zip(again.segmentation_frames, result.segmentation_frames, strict=True)
    )


# --------------------------------------------------------------------------- numpy building blocks


def _bfs_labels(mask: npt.NDArray[np.bool_], connectivity: int) -> tuple[npt.NDArray[np.int64], list[int]]:
    rows, columns = mask.shape
    labels = -np.ones((rows, columns), dtype=np.int64)
    sizes: list[int] = []
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    for r in range(rows):
        for c in range(columns):
            if mask[r, c] and labels[r, c] < 0:
                todo, size = deque([(r, c)]), 0
                labels[r, c] = len(sizes)
                while todo:
                    y, x = todo.popleft()
                    size += 1
                    for dy, dx in steps:
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < rows and 0 <= xx < columns and mask[yy, xx] and labels[yy, xx] < 0:
                            labels[yy, xx] = len(sizes)
                            todo.append((yy, xx))
                sizes.append(size)
    return labels, sizes


@pytest.mark.parametrize("connectivity", [4, 8])
def test_largest_component_matches_bfs(connectivity: int) -> None:
    rng = np.random.default_rng(20240601 + connectivity)
    for _ in range(60):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 25)), int(rng.integers(1, 25)))
        mask = rng.random(shape) < rng.uniform(0.2, 0.7)
        out = largest_component(mask, connectivity)  # type: ignore[arg-type]
        for s in range(shape[0]):
            labels, sizes = _bfs_labels(mask[s], connectivity)
            if not sizes:
                assert not out[s].any()
                continue
            first_largest = sizes.index(max(sizes))  # BFS labels in raster order, like ours
            assert np.array_equal(out[s], labels == first_largest)


def test_fill_holes_matches_bfs() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        mask = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < 0.55
        labels, _ = _bfs_labels(~mask, 8)
        border = (
            set(labels[0].tolist())
            | set(labels[-1].tolist())
            | set(labels[:, 0].tolist())
            | set(labels[:, -1].tolist())
        )
        expected = mask | ((labels >= 0) & ~np.isin(labels, list(border)))
        assert np.array_equal(fill_holes(mask), expected)


def test_morphology_and_otsu() -> None:
    square = np.zeros((1, 9, 9), dtype=bool)
    square[0, 2:7, 2:7] = True
    assert erode(square).sum() == 9 and np.array_equal(erode(square)[0, 3:6, 3:6], np.ones((3, 3), dtype=bool))
    assert dilate(square).sum() == 25 + 4 * 5
    assert not erode(np.ones((1, 3, 3), dtype=bool))[0, 0].any()  # outside the image is background
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(100, 10, 5000), rng.normal(400, 30, 3000)])
    truth = np.arange(values.size) >= 5000
    assert ((values > otsu_threshold(values)) == truth).mean() > 0.999  # separates the two modes
    assert otsu_threshold(np.full(10, 5.0)) == 5.0


def test_large_slice_is_fast_enough() -> None:
    """Runs, not pixels: a 200-slice 512 x 512 mask is labelled in seconds (bounded here)."""
    yy, xx = np.mgrid[:512, :512]
    disk = (yy - 256) ** 2 + (xx - 256) ** 2 < 200**2
    mask = np.repeat(disk[np.newaxis], 40, axis=0) & (np.random.default_rng(0).random((40, 512, 512)) < 0.97)
    out = largest_component(mask)
    assert out.shape == mask.shape and out.sum() > 0.9 * disk.sum() * 40 * 0.9


# --------------------------------------------------------------------------- the command


def _read_line(stream: object, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()  # type: ignore[attr-defined]
    return lines.get(timeout=timeout)


@pytest.fixture
def service_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    faults = json.dumps([{"kind": "status", "status": 503, "retry_after": 2}])
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai_client.reference_service",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--enable-fault-control",
            "--faults",
            faults,
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(process.stdout, timeout=60)
        assert "listening on http://127.0.0.1:" in line, line
        yield process, line.rsplit(" ", 1)[1].strip()
    finally:
        stop_process(process, timeout=15)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_python_dash_m_starts_the_service(
    service_process: tuple[subprocess.Popen[str], str], head: list[Dataset]
) -> None:
    process, url = service_process
    assert requests.get(f"{url}/health", timeout=5).json()["status"] == "ok"
    stub = StubDicomWeb(head, "tkn").start()
    try:
        request = InferenceRequest(
            "x",
            "stroke_risk",
            "NN-TEST-0001",
            str(head[0].StudyInstanceUID),
            str(head[0].SeriesInstanceUID),
            stub.url,
            "tkn",
        )
        client = ContractClient(url, connect_timeout=2, read_timeout=30)
        with pytest.raises(TransientError) as info:  # the --faults preload
            client.infer(request)
        assert info.value.status == 503 and info.value.retry_after == 2.0
        result = client.infer(request)
        local = infer_volume(volume_from_datasets(head), "stroke_risk")
        assert (result.risk_score, result.confidence) == (local.risk_score, local.confidence)
    finally:
        stub.stop()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
