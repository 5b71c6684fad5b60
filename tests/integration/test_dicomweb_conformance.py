"""DICOMweb through the gate (as admin) conforms to plain Orthanc 1.13 + DICOMweb 1.24.

Two servers hold the same instances: the gated NeuroNova Orthanc (public front at /dicom-web/)
and a bare Orthanc with the DICOMweb plugin at /dicom-web/. Every test sends the same request
to both and requires the gate to answer what the bare one answers; URLs are compared after
replacing each server's own base (``http://127.0.0.1:<port>/dicom-web``) by ``{ROOT}``.
A third bare Orthanc ("remote") serves as the remote DICOMweb server of /dicom-web/servers.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from tests.support.bare_orthanc import BareOrthanc, start_bare
from tests.support.corpus import corpus_files, transfer_syntax
from tests.support.dicom_factory import Study, make_study
from tests.support.orthanc_server import OrthancServer, start_orthanc

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "conformance-admin-password"
ROOT_MARK = "{ROOT}"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
YBR_SOURCE = "SC_rgb_dcmtk_+eb+cy+np.dcm"  # JPEG baseline, YBR_FULL_422
YBR_FULL_SOURCE = "SC_rgb_jpeg_dcmtk.dcm"  # JPEG baseline, YBR_FULL
FORWARDED_HOST = "pacs.example.org"
STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"


# -- the two servers ------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict[str]
    content: bytes
    base: str  # this server's DICOMweb root, for URL normalisation

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return normalise(json.loads(self.content), self.base)

    def describe(self) -> str:
        return f"{self.status} {self.content_type!r} {self.content[:300]!r}"


@dataclass
class Pair:
    gate: OrthancServer
    bare: BareOrthanc
    remote: BareOrthanc
    studies: dict[str, Study]

    def gate_call(self, method: str, path: str, **kwargs: Any) -> Answer:
        answer = requests.request(method, self.gate.base + path, auth=self.gate.admin, timeout=60, **kwargs)
        return Answer(answer.status_code, answer.headers, answer.content, self.gate.base + "/dicom-web")

    def bare_call(self, method: str, path: str, **kwargs: Any) -> Answer:
        answer = requests.request(method, self.bare.base + path, timeout=60, **kwargs)
        return Answer(answer.status_code, answer.headers, answer.content, self.bare.dicomweb)

    def both(self, method: str, path: str, **kwargs: Any) -> tuple[Answer, Answer]:
        """(gate, bare) answers to the same request."""
        return self.gate_call(method, path, **copy.deepcopy(kwargs)), self.bare_call(method, path, **kwargs)

    def instance(self, key: str, index: int = 0) -> tuple[str, str, str]:
        ds = self.studies[key].instances[index]
        return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)

    def instance_path(self, key: str, index: int = 0) -> str:
        study, series, sop = self.instance(key, index)
        return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"


def normalise(value: Any, base: str) -> Any:
    """``value`` (DICOM JSON) with this server's DICOMweb root written ``{ROOT}``."""
    if isinstance(value, str):
        return value.replace(base, ROOT_MARK)
    if isinstance(value, list):
        return [normalise(v, base) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v, base) for k, v in value.items()}
    return value


def upload(post: Any, blobs: list[bytes]) -> None:
    for blob in blobs:
        answer = post("/instances", data=blob)
        assert answer.status_code == 200, answer.text


def wait_renditions_idle(server: OrthancServer, timeout: float = 120.0) -> None:
    """Let the HTJ2K package finish its background work so that both servers are compared at rest."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(server.base + "/neuronova/htj2k/stats", auth=server.admin, timeout=10)
        if answer.status_code != 200:
            return
        stats = answer.json()
        if stats.get("queued", 0) == 0 and (
                stats.get("with_rendition", 0) + stats.get("failed", 0) + stats.get("skipped", 0)
                >= stats.get("instances", 0)):
            return
        time.sleep(0.3)


def single_study(source: str, patient_id: str, description: str) -> Study:
    return make_study(source, patient_id=patient_id, patient_name=f"CONF^{patient_id}", slices=1,
                      description=description)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    jpeg_ls = [p for p in corpus_files(lambda ds: transfer_syntax(ds) == JPEG_LS_LOSSLESS
                                       and "NumberOfFrames" not in ds and ds.get("SamplesPerPixel") == 1)]
    studies = {
        "mr": make_study("MR_small.dcm", patient_id="CONF-1", patient_name="DOE^JANE", slices=3,
                         referring="HOUSE^GREGORY", description="Brain MR"),
        "ct": make_study("CT_small.dcm", patient_id="CONF-2", patient_name="DOE^JOHN", slices=2, series=2,
                         description="Head CT"),
        "ybr": single_study(YBR_SOURCE, "CONF-3", "YBR 422 JPEG"),
        "ybr_full": single_study(YBR_FULL_SOURCE, "CONF-4", "YBR full JPEG"),
    }
    if jpeg_ls:
        studies["jpeg_ls"] = single_study(Path(jpeg_ls[0]).name, "CONF-5", "JPEG-LS corpus file")
    remote_only = single_study("MR_small.dcm", "REMOTE-1", "only on the remote")
    gate = start_orthanc(tmp_path_factory.mktemp("conformance-gate"),
                         env={"NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD,
                              "NEURONOVA_JWT_SECRET": "conformance-secret-0123456789abcdefghijklmnop"})
    bare = remote = None
    try:
        bare = start_bare()
        remote = start_bare()
        blobs = [blob for study in studies.values() for blob in study.files()]
        upload(lambda path, **kw: requests.post(gate.base + path, auth=gate.admin, timeout=60, **kw), blobs)
        upload(lambda path, **kw: requests.post(bare.base + path, timeout=60, **kw), blobs)  # type: ignore[union-attr]
        upload(lambda path, **kw: requests.post(remote.base + path, timeout=60, **kw),  # type: ignore[union-attr]
               remote_only.files())
        studies["remote_only"] = remote_only
        wait_renditions_idle(gate)
        yield Pair(gate, bare, remote, studies)
    finally:
        gate.stop()
        for server in (bare, remote):
            if server is not None:
                server.stop()


# -- multipart ------------------------------------------------------------------------------


@dataclass
class Part:
    headers: dict[str, str]  # names lower-cased
    body: bytes


def boundary_of(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    raise AssertionError(f"no boundary in Content-Type {content_type!r}")


def parts_of(answer: Answer) -> list[Part]:
    """The parts of a multipart answer, bodies byte-exact."""
    assert answer.content_type.lower().startswith("multipart/related"), f"not multipart: {answer.describe()}"
    delimiter = b"--" + boundary_of(answer.content_type).encode()
    chunks = answer.content.split(delimiter)
    found = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, _, body = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        found.append(Part(headers, body.removesuffix(b"\r\n")))
    return found


def multipart_body(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
                    for ctype, data in parts) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


# -- comparisons ----------------------------------------------------------------------------


def assert_same_status(gate: Answer, bare: Answer, what: str) -> None:
    assert gate.status == bare.status, (
        f"{what}: the gate answers HTTP {gate.status}, plain Orthanc answers HTTP {bare.status}\n"
        f"  gate: {gate.describe()}\n  bare: {bare.describe()}")


def item_key(item: dict[str, Any]) -> str:
    for tag in (SOP, SERIES, STUDY):
        if tag in item:
            return f"{tag}={item[tag].get('Value', [''])[0]}"
    return json.dumps(item, sort_keys=True)


def assert_same_items(gate: Answer, bare: Answer, what: str) -> None:
    """Both answer a DICOM JSON list with the same items: same tags per item, same values."""
    assert_same_status(gate, bare, what)
    gate_items = {item_key(i): i for i in gate.json()}
    bare_items = {item_key(i): i for i in bare.json()}
    assert sorted(gate_items) == sorted(bare_items), f"{what}: different items (gate vs bare)"
    for key, expected in bare_items.items():
        got = gate_items[key]
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        assert not missing and not extra, (
            f"{what}, item {key}: the gate lacks tags {missing} and adds tags {extra} compared with plain Orthanc")
        different = {t: (got[t], expected[t]) for t in expected if got[t] != expected[t]}
        assert not different, f"{what}, item {key}: values differ (gate, bare): {different}"


def urls_in(value: Any) -> set[str]:
    """Every RetrieveURL / BulkDataURI / URL-like string in a JSON document."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "BulkDataURI" and isinstance(inner, str):
                found.add(inner)
            else:
                found |= urls_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= urls_in(inner)
    elif isinstance(value, str) and (value.startswith(("http://", "https://", ROOT_MARK))):
        found.add(value)
    return found


def url_prefixes(urls: set[str]) -> set[str]:
    """scheme://host/dicom-web (or {ROOT}) of each URL."""
    prefixes = set()
    for url in urls:
        if url.startswith(ROOT_MARK):
            prefixes.add(ROOT_MARK)
        else:
            prefixes.add(url.split("/studies/")[0])
    return prefixes


# == 1. /dicom-web/servers ==================================================================


def register_servers(pair: Pair) -> tuple[tuple[Answer, Answer], tuple[Answer, Answer]]:
    remote = {"Url": pair.remote.dicomweb}
    put_remote = (pair.gate_call("PUT", "/dicom-web/servers/remote", json=remote),
                  pair.bare_call("PUT", "/dicom-web/servers/remote", json=remote))
    put_self = (pair.gate_call("PUT", "/dicom-web/servers/self", json={
                    "Url": pair.gate.base + "/dicom-web", "Username": "admin", "Password": ADMIN_PASSWORD}),
                pair.bare_call("PUT", "/dicom-web/servers/self", json={"Url": pair.bare.dicomweb}))
    return put_remote, put_self


def test_servers_list_and_put(pair: Pair) -> None:
    (gate_put, bare_put), (gate_self, bare_self) = register_servers(pair)
    assert_same_status(gate_put, bare_put, "PUT /dicom-web/servers/remote")
    assert_same_status(gate_self, bare_self, "PUT /dicom-web/servers/self")
    gate, bare = pair.both("GET", "/dicom-web/servers")
    assert_same_status(gate, bare, "GET /dicom-web/servers")
    assert sorted(json.loads(gate.content)) == sorted(json.loads(bare.content)) == ["remote", "self"], (
        f"GET /dicom-web/servers: gate lists {gate.content!r}, plain Orthanc {bare.content!r}")


def test_servers_retrieve_from_remote(pair: Pair) -> None:
    register_servers(pair)
    study_uid = pair.studies["remote_only"].study_uid
    request = {"Resources": [{"Study": study_uid}]}
    gate, bare = pair.both("POST", "/dicom-web/servers/remote/retrieve", json=request)
    assert_same_status(gate, bare, "POST /dicom-web/servers/remote/retrieve")
    gate_body, bare_body = json.loads(gate.content), json.loads(bare.content)
    assert sorted(gate_body) == sorted(bare_body), (
        f"retrieve answers differ in keys: gate {gate_body}, bare {bare_body}")
    assert gate_body.get("ReceivedInstancesCount") == bare_body.get("ReceivedInstancesCount"), (
        f"retrieve: gate received {gate_body.get('ReceivedInstancesCount')!r} instances, "
        f"plain Orthanc {bare_body.get('ReceivedInstancesCount')!r}")
    for name, call in (("gate", pair.gate_call), ("bare", pair.bare_call)):
        found = call("GET", f"/dicom-web/studies?StudyInstanceUID={study_uid}")
        assert found.status == 200 and len(json.loads(found.content)) == 1, (
            f"after retrieve through the remote server, {name} does not hold study {study_uid}: {found.describe()}")


def test_servers_stow_to_remote(pair: Pair) -> None:
    register_servers(pair)
    orthanc_ids = {}
    for key in ("mr", "ct"):
        looked = requests.post(pair.bare.base + "/tools/lookup", data=pair.studies[key].study_uid, timeout=30).json()
        orthanc_ids[key] = next(r["ID"] for r in looked if r["Type"] == "Study")
    # bare sends "mr", the gate sends "ct" (the same Orthanc ids on both), so each effect shows
    bare = pair.bare_call("POST", "/dicom-web/servers/remote/stow", json={"Resources": [orthanc_ids["mr"]]})
    gate = pair.gate_call("POST", "/dicom-web/servers/remote/stow", json={"Resources": [orthanc_ids["ct"]]})
    assert_same_status(gate, bare, "POST /dicom-web/servers/remote/stow")
    assert sorted(json.loads(gate.content)) == sorted(json.loads(bare.content)), (
        f"stow answers differ in keys: gate {gate.content!r}, bare {bare.content!r}")
    for who, key in (("bare", "mr"), ("gate", "ct")):
        study = pair.studies[key]
        found = requests.get(pair.remote.dicomweb + f"/studies/{study.study_uid}/instances", timeout=30)
        count = len(found.json()) if found.status_code == 200 else 0
        assert count == len(study.instances), (
            f"after STOW through /dicom-web/servers/remote/stow from the {who}, the remote holds {count} of "
            f"{len(study.instances)} instances of study {study.study_uid}")


# == 2. STOW-RS answers =====================================================================


def stow_study(patient_id: str, instances: int = 1) -> Study:
    return make_study("CT_small.dcm", patient_id=patient_id, patient_name=f"STOW^{patient_id}", slices=instances,
                      description="STOW-RS test")


def assert_same_stow(gate: Answer, bare: Answer, what: str) -> None:
    assert_same_status(gate, bare, what)
    gate_body, bare_body = gate.json(), bare.json()
    assert sorted(gate_body) == sorted(bare_body), (
        f"{what}: top-level tags differ: gate {sorted(gate_body)}, plain Orthanc {sorted(bare_body)}")
    for tag in sorted(bare_body):
        if tag in ("00081199", "00081198"):
            continue
        assert gate_body[tag] == bare_body[tag], f"{what}: tag {tag}: gate {gate_body[tag]}, bare {bare_body[tag]}"
    for sequence in ("00081199", "00081198"):
        if sequence not in bare_body:
            continue
        gate_items = sorted(gate_body[sequence].get("Value", []), key=lambda i: json.dumps(i, sort_keys=True))
        bare_items = sorted(bare_body[sequence].get("Value", []), key=lambda i: json.dumps(i, sort_keys=True))
        assert gate_items == bare_items, (
            f"{what}: sequence {sequence} differs\n  gate: {gate_items}\n  bare: {bare_items}")


def test_stow_success_answer(pair: Pair) -> None:
    study = stow_study("STOW-1", instances=2)
    body, content_type = multipart_body([("application/dicom", blob) for blob in study.files()])
    gate, bare = pair.both("POST", "/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert_same_stow(gate, bare, "STOW-RS of two valid instances")


def test_stow_part_that_is_not_dicom(pair: Pair) -> None:
    study = stow_study("STOW-2")
    body, content_type = multipart_body([("application/dicom", study.files()[0]),
                                         ("application/dicom", b"this is not a DICOM file")])
    gate, bare = pair.both("POST", "/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert_same_stow(gate, bare, "STOW-RS of one valid instance and one part that is not DICOM")
    assert_same_holding(pair, study.study_uid, "after STOW-RS of a valid instance and a non-DICOM part")


def assert_same_holding(pair: Pair, study_uid: str, what: str) -> None:
    gate_has, bare_has = (call("GET", f"/dicom-web/studies/{study_uid}/instances")
                          for call in (pair.gate_call, pair.bare_call))
    counts = [len(json.loads(a.content)) if a.status == 200 else 0 for a in (gate_has, bare_has)]
    assert counts[0] == counts[1], (
        f"{what}: the gate holds {counts[0]} instances of the study, plain Orthanc {counts[1]}")


def test_stow_instance_of_another_study(pair: Pair) -> None:
    named, other = stow_study("STOW-3"), stow_study("STOW-4")
    first, content_type = multipart_body([("application/dicom", named.files()[0])])
    gate, bare = pair.both("POST", "/dicom-web/studies", data=first, headers={"Content-Type": content_type})
    assert_same_stow(gate, bare, "STOW-RS of an instance")
    body, content_type = multipart_body([("application/dicom", other.files()[0])])
    gate, bare = pair.both("POST", f"/dicom-web/studies/{named.study_uid}", data=body,
                           headers={"Content-Type": content_type})
    assert_same_stow(gate, bare, "STOW-RS to /studies/{uid} of an instance of another study")
    # Not compared: whether the refused instance stays stored. DICOMweb 1.24 keeps it although it
    # reports it in FailedSOPSequence; the gate need not copy that.


# == 3. Forwarded headers ===================================================================


# What plain Orthanc does with each (checked on DICOMweb 1.24): the first three name the forwarded
# host in every URL; X-Forwarded-Host without X-Forwarded-Proto is ignored (URLs keep the Host).
FORWARDED_VARIANTS = {
    "Forwarded": {"Forwarded": f"proto=https;host={FORWARDED_HOST}"},
    "Forwarded-host-only": {"Forwarded": f"host={FORWARDED_HOST}"},
    "X-Forwarded": {"X-Forwarded-Proto": "https", "X-Forwarded-Host": FORWARDED_HOST},
    "X-Forwarded-Host-only": {"X-Forwarded-Host": FORWARDED_HOST},
}


@pytest.mark.parametrize("variant", sorted(FORWARDED_VARIANTS))
@pytest.mark.parametrize("what", ["metadata", "qido-studies", "qido-instances"])
def test_forwarded_urls(pair: Pair, variant: str, what: str) -> None:
    study = pair.studies["mr"].study_uid
    path = {"metadata": f"/dicom-web/studies/{study}/metadata",
            "qido-studies": f"/dicom-web/studies?StudyInstanceUID={study}",
            "qido-instances": f"/dicom-web/studies/{study}/instances"}[what]
    gate, bare = pair.both("GET", path, headers=FORWARDED_VARIANTS[variant])
    assert_same_status(gate, bare, f"GET {what} with {variant} headers")
    gate_urls, bare_urls = urls_in(gate.json()), urls_in(bare.json())
    assert bare_urls, f"plain Orthanc wrote no URL in {what}: nothing to compare"
    assert url_prefixes(gate_urls) == url_prefixes(bare_urls), (
        f"GET {what} with {FORWARDED_VARIANTS[variant]}: the gate's URLs start with {sorted(url_prefixes(gate_urls))}, "
        f"plain Orthanc's with {sorted(url_prefixes(bare_urls))}")
    assert gate_urls == bare_urls, f"GET {what} with {variant}: URL sets differ: {sorted(gate_urls ^ bare_urls)[:6]}"


def test_metadata_cache_keyed_by_forwarded_host(pair: Pair) -> None:
    study = pair.studies["ct"].study_uid
    for host in ("one.example.org", "two.example.org"):
        headers = {"Forwarded": f"proto=https;host={host}"}
        gate, bare = pair.both("GET", f"/dicom-web/studies/{study}/metadata", headers=headers)
        assert_same_status(gate, bare, f"metadata with Forwarded host={host}")
        assert url_prefixes(urls_in(gate.json())) == url_prefixes(urls_in(bare.json())), (
            f"metadata requested with Forwarded host={host} (after another host): the gate's URLs start with "
            f"{sorted(url_prefixes(urls_in(gate.json())))}, plain Orthanc's with "
            f"{sorted(url_prefixes(urls_in(bare.json())))}")


# == 4. QIDO at series and instance level ===================================================


def qido_paths(pair: Pair) -> dict[str, str]:
    study, series, _ = pair.instance("ct")
    return {
        "/series": "/dicom-web/series?PatientID=CONF-*",
        "/studies/{uid}/series": f"/dicom-web/studies/{study}/series",
        "/instances": "/dicom-web/instances?PatientID=CONF-*",
        "/studies/{uid}/instances": f"/dicom-web/studies/{study}/instances",
        "/studies/{uid}/series/{uid}/instances": f"/dicom-web/studies/{study}/series/{series}/instances",
        "/studies": "/dicom-web/studies?PatientID=CONF-*",
        "/series?includefield=all": "/dicom-web/series?PatientID=CONF-*&includefield=all",
        "/instances?includefield=StudyDescription": "/dicom-web/instances?PatientID=CONF-*&includefield=00081030",
        "/studies/{uid}/series?Modality=CT": f"/dicom-web/studies/{study}/series?Modality=CT",
    }


@pytest.mark.parametrize("name", [
    "/series", "/studies/{uid}/series", "/instances", "/studies/{uid}/instances",
    "/studies/{uid}/series/{uid}/instances", "/studies", "/series?includefield=all",
    "/instances?includefield=StudyDescription", "/studies/{uid}/series?Modality=CT"])
def test_qido_attributes(pair: Pair, name: str) -> None:
    gate, bare = pair.both("GET", qido_paths(pair)[name])
    assert_same_items(gate, bare, f"QIDO-RS {name}")


# == 5. rendered studies and series =========================================================


@pytest.mark.parametrize("level", ["study", "series"])
def test_rendered_study_and_series(pair: Pair, level: str) -> None:
    study, series, _ = pair.instance("mr")
    path = f"/dicom-web/studies/{study}" + (f"/series/{series}" if level == "series" else "") + "/rendered"
    gate, bare = pair.both("GET", path)
    assert_same_status(gate, bare, f"GET {path}")
    assert gate.content_type.split(";")[0] == bare.content_type.split(";")[0], (
        f"GET {level} /rendered: gate Content-Type {gate.content_type!r}, plain Orthanc {bare.content_type!r}")


# == 6. unsupported methods and refused Accept values =======================================


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/dicom-web/studies"),
    ("PUT", "/dicom-web/studies/{study}/metadata"),
    ("DELETE", "/dicom-web/studies/{study}"),
    ("PUT", "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1"),
])
def test_unsupported_methods(pair: Pair, method: str, path: str) -> None:
    study, series, sop = pair.instance("mr")
    path = path.format(study=study, series=series, sop=sop)
    gate, bare = pair.both(method, path, data=b"{}")
    assert_same_status(gate, bare, f"{method} {path}")
    if "Allow" in bare.headers:
        assert gate.headers.get("Allow") == bare.headers["Allow"], (
            f"{method} {path}: gate Allow {gate.headers.get('Allow')!r}, plain Orthanc Allow {bare.headers['Allow']!r}")


@pytest.mark.parametrize("target,accept", [
    ("metadata", "application/xml"),
    ("rendered", "image/tiff"),
    ("instance", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4'),
])
def test_refused_accept(pair: Pair, target: str, accept: str) -> None:
    study, _, _ = pair.instance("mr")
    path = {"metadata": f"/dicom-web/studies/{study}/metadata",
            "rendered": pair.instance_path("mr") + "/rendered",
            "instance": pair.instance_path("mr")}[target]
    gate, bare = pair.both("GET", path, headers={"Accept": accept})
    assert_same_status(gate, bare, f"GET {target} with Accept: {accept}")


# == 7. Content-Location of transcoded frame parts ==========================================


@pytest.mark.parametrize("key", ["ybr", "jpeg_ls", "mr"])
def test_frame_parts_content_location(pair: Pair, key: str) -> None:
    if key not in pair.studies:
        pytest.skip("no JPEG-LS lossless file in the installed corpus")
    accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
    path = pair.instance_path(key) + "/frames/1"
    gate, bare = pair.both("GET", path, headers={"Accept": accept})
    assert_same_status(gate, bare, f"GET {key} frame 1 as {EXPLICIT_LE}")
    gate_parts, bare_parts = parts_of(gate), parts_of(bare)
    assert len(gate_parts) == len(bare_parts), (
        f"{key}: {len(gate_parts)} parts through the gate, {len(bare_parts)} on plain Orthanc")
    for number, (got, expected) in enumerate(zip(gate_parts, bare_parts, strict=True), start=1):
        assert sorted(got.headers) == sorted(expected.headers), (
            f"{key} frame part {number}: the gate's part headers are {got.headers}, plain Orthanc's {expected.headers}")
        assert got.headers.get("content-type") == expected.headers.get("content-type"), (
            f"{key} frame part {number}: part Content-Type {got.headers.get('content-type')!r} through the gate, "
            f"{expected.headers.get('content-type')!r} on plain Orthanc")
        if "content-location" in expected.headers:
            assert normalise(got.headers["content-location"], gate.base) == normalise(
                expected.headers["content-location"], bare.base), (
                f"{key} frame part {number}: Content-Location {got.headers['content-location']!r} through the gate, "
                f"{expected.headers['content-location']!r} on plain Orthanc")


# == 8. rendered instances and frames =======================================================

SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


@pytest.mark.parametrize("accept", sorted(SIGNATURES))
@pytest.mark.parametrize("target", ["instance", "frame"])
def test_rendered_format(pair: Pair, target: str, accept: str) -> None:
    path = pair.instance_path("mr") + ("/frames/1" if target == "frame" else "") + "/rendered"
    gate, bare = pair.both("GET", path, headers={"Accept": accept})
    assert_same_status(gate, bare, f"GET {target} /rendered, Accept: {accept}")
    assert gate.content_type == bare.content_type, (
        f"{target} /rendered, Accept {accept}: gate Content-Type {gate.content_type!r}, "
        f"plain Orthanc {bare.content_type!r}")
    assert bare.content.startswith(SIGNATURES[accept]), f"plain Orthanc did not answer {accept}: {bare.describe()}"
    assert gate.content.startswith(SIGNATURES[accept]), (
        f"{target} /rendered, Accept {accept}: the gate's body starts {gate.content[:8]!r}, "
        f"not the {accept} signature {SIGNATURES[accept]!r}")


# == 9. uncompressed frames of YBR JPEG instances ===========================================


def photometric(key: str) -> str:
    return str(pydicom.dcmread(get_testdata_file(YBR_SOURCE if key == "ybr" else YBR_FULL_SOURCE),
                               stop_before_pixels=True).PhotometricInterpretation)


@pytest.mark.parametrize("key", ["ybr", "ybr_full"])
def test_ybr_jpeg_frames_uncompressed(pair: Pair, key: str) -> None:
    accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
    path = pair.instance_path(key) + "/frames/1"
    gate, bare = pair.both("GET", path, headers={"Accept": accept})
    assert_same_status(gate, bare, f"GET {key} frame 1 as {EXPLICIT_LE}")
    gate_parts, bare_parts = parts_of(gate), parts_of(bare)
    assert len(gate_parts) == len(bare_parts) == 1
    got, expected = gate_parts[0].body, bare_parts[0].body
    if got != expected:
        first = next((i for i, (x, y) in enumerate(zip(got, expected, strict=False)) if x != y), min(len(got),
                                                                                                  len(expected)))
        raise AssertionError(
            f"{key} ({photometric(key)} JPEG) frame 1 uncompressed: gate {len(got)} bytes, "
            f"plain Orthanc {len(expected)} bytes, first difference at byte {first} "
            f"(gate {got[first:first + 6].hex()}, bare {expected[first:first + 6].hex()})"
            f"; gate part headers {gate_parts[0].headers}, bare {bare_parts[0].headers}")

