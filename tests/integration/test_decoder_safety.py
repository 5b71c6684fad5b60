"""Decoders never take Orthanc down (issue 9, part 1).

Every image of pydicom's and pydicom-data's test files, and mutated copies of some of them
(truncated pixel data, wrong lengths, absurd Rows/Columns/Bits Allocated, broken offset
tables, flipped codestream bytes, deep sequences), is stored in a real Orthanc with the plugin
and requested in the representations a viewer asks for (HTJ2K, as stored, uncompressed,
/rendered, thumbnails, WADO-URI). Each answer must be correct or a refusal (4xx/5xx with a
reason), and the server must be alive and healthy at the end. The requests are a fixed,
bounded plan (every file once, compressed ones a second time uncompressed), not a random
search, so a failure is reproducible.

Correct means, per representation:
- uncompressed frame: one part labelled Explicit VR Little Endian holding the frame's pixels
  (native originals: the stored bytes, byte-swapped from big endian; compressed lossless
  ones: exactly pydicom's decode in this process; lossy ones: pydicom's decode within the
  rounding two decoders may differ by);
- HTJ2K frame: decodes (OpenJPEG, in this process) to exactly pydicom's decode;
- frame as stored: the original's own fragments of that frame;
- instance: a Part 10 file of the same SOP instance in the syntax its label says;
- rendered / thumbnail / WADO-URI image: a PNG or JPEG; WADO-URI DICOM: the stored file.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import numpy as np
import openjpeg
import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels.utils import get_expected_length, pack_bits
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from neuronova.multipart import parse as parse_multipart
from tests.support.corpus import corpus_files, transfer_syntax
from tests.support.orthanc_server import OrthancServer, start_orthanc

pytestmark = pytest.mark.integration

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
HTJ2K_LABELS = ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203")
NATIVE = (IMPLICIT_LE, EXPLICIT_LE, DEFLATED, BIG_ENDIAN)
LOSSY = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
         "1.2.840.10008.1.2.4.93")
LE_FRAMES = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
ANY_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
PLAIN_INSTANCE = 'multipart/related; type="application/dicom"'
ANY_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MAX_REQUESTS = 400  # GETs of the whole plan (uploads aside): bounded, whatever the corpus holds
ADMIN_PASSWORD = "decoder-safety-admin"
JWT_SECRET = "decoder-safety-secret-0123456789abcdef"


def admin_headers() -> dict[str, str]:
    """An admin bearer token: verified once and cached by the gate (basic auth costs a scrypt)."""
    now = int(time.time())
    claims = {"sub": "safety-admin", "iat": now, "exp": now + 3600, "realm_access": {"roles": ["admin"]}}
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


# -- the stored corpus ----------------------------------------------------------------------


@dataclass
class Stored:
    label: str  # corpus file name, or "mutation: seed"
    data: bytes  # the bytes stored (Orthanc keeps them as sent)
    study: str
    series: str
    sop: str
    instance_id: str
    transfer_syntax: str  # "" when the file has no file meta
    mutated: bool

    @property
    def path(self) -> str:
        return f"/dicom-web/studies/{self.study}/series/{self.series}/instances/{self.sop}"


@dataclass
class Corpus:
    server: OrthancServer
    stored: list[Stored]
    refused_uploads: list[str]
    requests_made: int = 0
    auth: dict[str, str] = field(default_factory=admin_headers)

    def get(self, path: str, accept: str | None = None) -> requests.Response:
        self.requests_made += 1
        assert self.requests_made <= MAX_REQUESTS, "the request plan exceeds its bound"
        headers = {**self.auth, **({"Accept": accept} if accept else {})}
        return requests.get(self.server.base + path, headers=headers, timeout=60)


def fresh_uids(ds: Dataset) -> None:
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "SAFETY"


def written(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def corpus_copy(path: str) -> bytes | None:
    """The test file with fresh UIDs (several test files share theirs), written as it was."""
    try:
        ds = pydicom.dcmread(path)
        fresh_uids(ds)
        return written(ds)
    except Exception:  # pydicom cannot rewrite some odd test files: sent as they are
        return None


def bare_dataset(ds: Dataset) -> bytes:
    """The data set alone, Implicit VR Little Endian: no preamble, no DICM, no file meta."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def seed(name: str) -> Dataset:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file(name))
    fresh_uids(ds)
    return ds


def _set(name: str, **attributes: Any) -> Callable[[], bytes]:
    def mutate() -> bytes:
        ds = seed(name)
        for key, value in attributes.items():
            setattr(ds, key, value)
        return written(ds)
    return mutate


def _truncated(name: str, keep: float) -> Callable[[], bytes]:
    def mutate() -> bytes:
        data = written(seed(name))
        return data[: int(len(data) * keep)]
    return mutate


def _short_pixel_data(name: str) -> Callable[[], bytes]:
    def mutate() -> bytes:
        ds = seed(name)
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
        return written(ds)
    return mutate


def _flipped(name: str, count: int = 24) -> Callable[[], bytes]:
    """Bytes inside the first frame's codestream inverted (every length intact)."""
    def mutate() -> bytes:
        ds = seed(name)
        data = bytearray(written(ds))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        first = bytes(next(iter(generate_frames(ds.PixelData, number_of_frames=frames))))
        start = data.find(first[:256])
        assert start > 0, f"{name}: the first frame is not found in the file"
        for position in range(start + len(first) // 4, start + 3 * len(first) // 4, max(len(first) // (2 * count), 1)):
            data[position] ^= 0xFF
        return bytes(data)
    return mutate


def _broken_offset_table(name: str, far: bool) -> Callable[[], bytes]:
    """Basic Offset Table entries that point far past the fragments (``far``), or into the
    middle of the wrong fragments (each offset moved by a few bytes)."""
    def mutate() -> bytes:
        ds = seed(name)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        codestreams = [c + (b"\x00" if len(c) % 2 else b"")
                       for c in generate_frames(ds.PixelData, number_of_frames=frames)]
        offsets, position = [], 0
        for codestream in codestreams:
            offsets.append(0x7FFFFF00 if far else position + 6)
            position += 8 + len(codestream)
        table = _item(b"".join(offset.to_bytes(4, "little") for offset in offsets))
        ds.PixelData = table + b"".join(_item(c) for c in codestreams) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        return written(ds)
    return mutate


def _item(value: bytes) -> bytes:
    return b"\xfe\xff\x00\xe0" + len(value).to_bytes(4, "little") + value


def _deep_sequences(name: str, depth: int) -> Callable[[], bytes]:
    def mutate() -> bytes:
        ds = seed(name)
        inner = Dataset()
        inner.CodeValue = "X"
        for _ in range(depth):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = inner.ContentSequence
        return written(ds)
    return mutate


def _without_part10_header(name: str) -> Callable[[], bytes]:
    def mutate() -> bytes:
        return bare_dataset(seed(name))
    return mutate


MUTATIONS: dict[str, Callable[[], bytes]] = {
    "truncated pixel data: CT_small": _truncated("CT_small.dcm", 0.6),
    "truncated pixel data: JPEG2000": _truncated("JPEG2000.dcm", 0.7),
    "truncated pixel data: JPEG-LL": _truncated("JPEG-LL.dcm", 0.7),
    "short pixel data: CT_small": _short_pixel_data("CT_small.dcm"),
    "short pixel data: emri_small": _short_pixel_data("emri_small.dcm"),
    "absurd rows/columns: CT_small": _set("CT_small.dcm", Rows=65535, Columns=65535),
    "absurd rows/columns: JPEG2000": _set("JPEG2000.dcm", Rows=65535, Columns=65535),
    "absurd rows/columns: MR_small_RLE": _set("MR_small_RLE.dcm", Rows=40000, Columns=3),
    "absurd bits allocated: CT_small": _set("CT_small.dcm", BitsAllocated=64),
    "absurd bits allocated: JPEG-lossy": _set("JPEG-lossy.dcm", BitsAllocated=7),
    "absurd frames: CT_small": _set("CT_small.dcm", NumberOfFrames=100000),
    "absurd samples: MR_small_RLE": _set("MR_small_RLE.dcm", SamplesPerPixel=65535),
    "broken offset table (far): emri_small_jpeg_2k_lossless": _broken_offset_table(
        "emri_small_jpeg_2k_lossless.dcm", far=True),
    "broken offset table (shifted): emri_small_jpeg_2k_lossless": _broken_offset_table(
        "emri_small_jpeg_2k_lossless.dcm", far=False),
    "broken offset table (shifted): emri_small_RLE": _broken_offset_table("emri_small_RLE.dcm", far=False),
    "broken offset table (shifted): emri_small_jpeg_ls_lossless": _broken_offset_table(
        "emri_small_jpeg_ls_lossless.dcm", far=False),
    "flipped codestream bytes: JPEG2000": _flipped("JPEG2000.dcm"),
    "flipped codestream bytes: JPEG-LL": _flipped("JPEG-LL.dcm"),
    "flipped codestream bytes: JPEG-lossy": _flipped("JPEG-lossy.dcm"),
    "flipped codestream bytes: MR_small_RLE": _flipped("MR_small_RLE.dcm"),
    "flipped codestream bytes: JPEGLSNearLossless_16": _flipped("JPEGLSNearLossless_16.dcm"),
    "deep sequences (20): CT_small": _deep_sequences("CT_small.dcm", 20),
    "deep sequences (100): CT_small": _deep_sequences("CT_small.dcm", 100),
    "deep sequences (400): CT_small": _deep_sequences("CT_small.dcm", 400),
    "no Part 10 header: CT_small": _without_part10_header("CT_small.dcm"),
}


def image_files() -> list[str]:
    return corpus_files(lambda ds: "PixelData" in ds or "Rows" in ds)


def upload(server: OrthancServer, data: bytes, auth: dict[str, str]) -> str | None:
    answer = requests.post(server.base + "/instances", data=data, headers=auth, timeout=60)
    if answer.status_code != 200:
        return None
    body = answer.json()
    return str(body["ID"]) if body.get("Status") in ("Success", "AlreadyStored") else None


def identify(server: OrthancServer, instance_id: str, auth: dict[str, str]) -> tuple[str, str, str]:
    tags = requests.get(f"{server.base}/instances/{instance_id}/tags?short", headers=auth, timeout=30).json()
    return str(tags["0020,000d"]), str(tags["0020,000e"]), str(tags["0008,0018"])


def wait_idle(server: OrthancServer, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin, timeout=10).json()
        if stats["queued"] == 0 and stats["with_rendition"] + stats["failed"] + stats["skipped"] >= stats["instances"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"renditions not done in {timeout} s: {stats}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    # the deep-sequence mutation is written by pydicom recursively
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    server = start_orthanc(tmp_path_factory.mktemp("decoder-safety"), env={
        "NEURONOVA_JWT_SECRET": JWT_SECRET, "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD})
    auth = admin_headers()
    try:
        sources: list[tuple[str, bytes, bool]] = []
        for path in image_files():
            copy = corpus_copy(path)
            sources.append((Path(path).name, copy if copy is not None else Path(path).read_bytes(), False))
        sources.extend((label, mutate(), True) for label, mutate in MUTATIONS.items())
        stored, refused = [], []
        for label, data, mutated in sources:
            instance_id = upload(server, data, auth)
            if instance_id is None:
                refused.append(label)
                continue
            study, series, sop = identify(server, instance_id, auth)
            try:
                ts = transfer_syntax(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True))
            except Exception:  # mutated beyond pydicom's reading
                ts = ""
            stored.append(Stored(label, data, study, series, sop, instance_id, ts, mutated))
        wait_idle(server)
        yield Corpus(server, stored, refused)
    finally:
        server.stop()


# -- what a correct answer is ---------------------------------------------------------------


def reference(item: Stored) -> Dataset | None:
    try:
        return pydicom.dcmread(io.BytesIO(item.data), force=True)
    except Exception:  # the oracle cannot read it: only structure is checked
        return None


def frame_size(ds: Dataset) -> int:
    """Bytes of one native frame (YBR_FULL_422 is subsampled; Bits Allocated 1 is packed)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return int(get_expected_length(ds, "bytes")) // frames


def decoded_frame(ds: Dataset, number: int) -> np.ndarray[Any, Any] | None:
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        arr = ds.pixel_array
    except Exception:  # pydicom cannot decode it: the size is still checked
        return None
    return np.asarray(arr[number - 1] if frames > 1 else arr)


def stored_native_frame(ds: Dataset, number: int, ts: str) -> bytes | None:
    size = frame_size(ds)
    raw = bytes(ds.PixelData)[(number - 1) * size: number * size]
    if len(raw) < size or int(ds.BitsAllocated) == 1:
        return None
    if ts == BIG_ENDIAN and int(ds.BitsAllocated) > 8:
        width = int(ds.BitsAllocated) // 8
        raw = np.frombuffer(raw, dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return raw


def as_little_endian(arr: np.ndarray[Any, Any], ds: Dataset) -> bytes:
    bits = int(ds.BitsAllocated)
    if bits == 1:
        return bytes(pack_bits(arr, pad=False))
    dtype = np.dtype(f"<{'i' if int(ds.get('PixelRepresentation', 0)) else 'u'}{max(bits // 8, 1)}")
    out = arr.astype(dtype)
    if out.ndim == 3 and int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out).tobytes()


def check_uncompressed_frame(item: Stored, body: bytes, label: str) -> str:
    assert label == EXPLICIT_LE, f"uncompressed frame labelled {label!r}"
    ds = reference(item)
    if ds is None or "PixelData" not in ds:
        return "correct (label; the oracle cannot read the file)"
    if item.transfer_syntax in NATIVE and item.transfer_syntax != DEFLATED:
        expected = stored_native_frame(ds, 1, item.transfer_syntax)
        if expected is not None:
            assert body == expected, "uncompressed frame differs from the stored pixel bytes"
            return "correct"
    decoded = decoded_frame(ds, 1)
    if decoded is None:  # pydicom cannot decode it (e.g. an absurd Bits Allocated): Orthanc's decode stands
        return "correct (label; the oracle cannot decode the file)"
    expected_bytes = as_little_endian(decoded, ds)
    assert len(body) == len(expected_bytes), f"frame of {len(body)} bytes, pydicom's decode has {len(expected_bytes)}"
    if body == expected_bytes:
        return "correct"
    bits = int(ds.BitsAllocated)
    dtype = np.uint8 if bits == 8 else np.uint16
    got = np.frombuffer(body, dtype=dtype).astype(np.int64)
    want = np.frombuffer(expected_bytes, dtype=dtype).astype(np.int64)
    stored_mask = (1 << int(ds.get("BitsStored", bits))) - 1
    if bits in (8, 16) and np.array_equal(got & stored_mask, want & stored_mask):
        # the same Bits Stored bits; the decoders sign-extend differently (a file whose
        # Pixel Representation contradicts its codestream, e.g. J2K_pixelrep_mismatch.dcm)
        return "correct (same stored bits)"
    lossy = item.transfer_syntax in LOSSY or str(ds.get("PhotometricInterpretation", "")).startswith("YBR")
    assert lossy, "uncompressed frame of a lossless original differs from pydicom's decode"
    mean_error = float(np.mean(np.abs(got - want))) / stored_mask
    assert mean_error < 0.02, f"lossy frame differs from pydicom's decode by {mean_error:.1%} on average"
    return "correct (lossy, within decoder rounding)"


def check_htj2k_frame(item: Stored, body: bytes) -> str:
    decoded = openjpeg.decode(body)
    ds = reference(item)
    expected = decoded_frame(ds, 1) if ds is not None else None
    if expected is not None:
        assert np.array_equal(decoded.reshape(expected.shape), expected), "HTJ2K frame differs from the original"
    return "correct"


def check_original_frame(item: Stored, body: bytes, label: str) -> str:
    assert label == item.transfer_syntax, f"frame as stored labelled {label!r}, the original is {item.transfer_syntax}"
    ds = reference(item)
    if ds is None:
        return "correct (label)"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        expected = next(iter(generate_frames(ds.PixelData, number_of_frames=frames)))
    except Exception:  # the oracle cannot split the fragments
        return "correct (label)"
    assert body.rstrip(b"\x00") == bytes(expected).rstrip(b"\x00"), "frame as stored differs from its fragments"
    return "correct"


def part_of(answer: requests.Response) -> tuple[bytes, str]:
    parts = parse_multipart(answer.content, answer.headers["Content-Type"])
    assert len(parts) == 1, f"{len(parts)} parts for one frame or instance"
    content_type = parts[0].content_type
    label = ""
    for piece in content_type.split(";")[1:]:
        name, _, value = piece.partition("=")
        if name.strip().lower() == "transfer-syntax":
            label = value.strip()
    return bytes(parts[0].body), label


def check_instance(item: Stored, body: bytes, label: str) -> str:
    if body[128:132] != b"DICM":  # a data set stored without Part 10 header, served as stored
        assert body == item.data and label == IMPLICIT_LE, f"a file without Part 10 header labelled {label!r}"
        return "correct"
    ds = pydicom.dcmread(io.BytesIO(body))
    assert str(ds.file_meta.TransferSyntaxUID) == label, "instance part labelled otherwise than its file meta"
    assert str(ds.SOPInstanceUID) == item.sop, "another instance was answered"
    return "correct"


def is_refusal(answer: requests.Response) -> bool:
    """4xx/5xx with a reason: the gate's JSON {"error": ...} or Orthanc's own JSON error."""
    if answer.status_code < 400:
        return False
    try:
        body = json.loads(answer.content)
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error") or body.get("Message") or body.get("Details"))


PLAN: dict[str, tuple[str, str | None]] = {  # kind -> (path suffix, Accept)
    "uncompressed frame": ("/frames/1", LE_FRAMES),
    "frame, any syntax": ("/frames/1", ANY_FRAMES),
    "frame as stored": ("/frames/1", None),
    "instance, default": ("", PLAIN_INSTANCE),
    "instance, any syntax": ("", ANY_INSTANCE),
    "rendered": ("/frames/1/rendered", "image/png"),
    "thumbnail": ("/thumbnail", "image/jpeg"),
    "wado-uri": ("", None),
}


def request_for(corpus: Corpus, item: Stored, kind: str) -> requests.Response:
    if kind == "wado-uri":
        return corpus.get(f"/wado?requestType=WADO&studyUID={item.study}&seriesUID={item.series}"
                          f"&objectUID={item.sop}&contentType=application/dicom")
    suffix, accept = PLAN[kind]
    if kind == "frame as stored":
        ts = item.transfer_syntax or IMPLICIT_LE
        accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={ts}'
    return corpus.get(item.path + suffix, accept)


def judge(item: Stored, kind: str, answer: requests.Response) -> str:
    if answer.status_code != 200:
        assert is_refusal(answer), f"status {answer.status_code} without a reason: {answer.content[:200]!r}"
        return "refused"
    if kind in ("rendered", "thumbnail"):
        assert answer.content.startswith(IMAGE_SIGNATURES), f"not an image: {answer.content[:16]!r}"
        return "correct"
    if kind == "wado-uri":
        stored = answer.content
        assert stored == item.data or pydicom.dcmread(io.BytesIO(stored), force=True).SOPInstanceUID == item.sop
        return "correct"
    body, label = part_of(answer)
    if kind.startswith("instance"):
        return check_instance(item, body, label)
    if label == EXPLICIT_LE:
        return check_uncompressed_frame(item, body, label)
    if label in HTJ2K_LABELS:
        return check_htj2k_frame(item, body)
    return check_original_frame(item, body, label)


def kinds_for(index: int, item: Stored) -> list[str]:
    """A fixed plan: every stored file one representation in turn; decoding is the dangerous
    one, so compressed and mutated files are also asked uncompressed."""
    kinds = list(PLAN)
    first = kinds[index % len(kinds)]
    compressed = item.transfer_syntax not in NATIVE
    if (compressed or item.mutated) and first != "uncompressed frame":
        return [first, "uncompressed frame"]
    return [first]


# -- the tests ------------------------------------------------------------------------------


def test_every_corpus_answer_is_correct_or_a_refusal_and_the_server_survives(corpus: Corpus) -> None:
    failures: list[str] = []
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}  # server time per kind, reported (never asserted)
    refusals: list[str] = []
    for index, item in enumerate(corpus.stored):
        for kind in kinds_for(index, item):
            answer = request_for(corpus, item, kind)
            seconds[kind] = seconds.get(kind, 0.0) + answer.elapsed.total_seconds()
            try:
                verdict = judge(item, kind, answer)
            except Exception as exc:  # every wrong answer is listed, not just the first
                failures.append(f"{item.label} [{kind}] {answer.status_code}: {type(exc).__name__}: {exc}")
                continue
            counts[verdict.split(" ")[0]] = counts.get(verdict.split(" ")[0], 0) + 1
            if verdict == "refused":
                refusals.append(f"{item.label} [{kind}] {answer.status_code}")
    assert corpus.server.process.poll() is None, "Orthanc died:\n" + corpus.server.log()[-3000:]
    health = requests.get(corpus.server.base + "/neuronova/health", timeout=10)
    assert health.status_code == 200, health.text
    summary = (f"{len(corpus.stored)} stored ({sum(i.mutated for i in corpus.stored)} mutated), "
               f"{len(corpus.refused_uploads)} refused by Orthanc at upload, {corpus.requests_made} requests: {counts}")
    # the figures the issue asks for (shown with -s)
    print(summary, {k: round(v, 1) for k, v in seconds.items()}, "\nrefused at upload:", corpus.refused_uploads,
          "\nrefused requests:", refusals)
    assert not failures, summary + "\n" + "\n".join(failures)
    assert counts.get("correct", 0) > len(corpus.stored) // 2, summary


def test_a_data_set_without_part10_header_is_served_as_orthanc_serves_it(corpus: Corpus) -> None:
    item = next(i for i in corpus.stored if i.label == "no Part 10 header: CT_small")
    assert item.data[128:132] != b"DICM"
    status = corpus.get(f"/neuronova/htj2k/studies/{item.study}").json()
    assert status["counts"] == {"done": 1}, status  # it has a rendition
    original = pydicom.dcmread(io.BytesIO(item.data), force=True)
    original.file_meta = FileMetaDataset()
    original.file_meta.TransferSyntaxUID = UID(IMPLICIT_LE)
    pixels = original.pixel_array
    for accept in (ANY_FRAMES, LE_FRAMES):
        answer = corpus.get(item.path + "/frames/1", accept)
        assert answer.status_code == 200, f"{accept}: {answer.status_code} {answer.content[:200]!r}"
        body, label = part_of(answer)
        if label in HTJ2K_LABELS:
            assert np.array_equal(openjpeg.decode(body), pixels)
        else:
            assert label == EXPLICIT_LE and body == bytes(original.PixelData)
    orthanc_file = corpus.get(f"/instances/{item.instance_id}/file").content
    for accept in (PLAIN_INSTANCE, ANY_INSTANCE):
        answer = corpus.get(item.path, accept)
        assert answer.status_code == 200, f"{accept}: {answer.status_code} {answer.content[:200]!r}"
        body, label = part_of(answer)
        if label in HTJ2K_LABELS or label == EXPLICIT_LE:
            served = pydicom.dcmread(io.BytesIO(body))
            assert str(served.file_meta.TransferSyntaxUID) == label and served.SOPInstanceUID == item.sop
            assert np.array_equal(served.pixel_array, pixels)
        else:
            assert body == orthanc_file  # as stored: what Orthanc itself gives
    rendered = corpus.get(item.path + "/rendered", "image/png")
    assert rendered.status_code == 200 and rendered.content.startswith(IMAGE_SIGNATURES[0])
