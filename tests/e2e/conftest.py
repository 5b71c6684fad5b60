"""End-to-end world: a real OpenID provider, a real Orthanc with the plugin (scripts/run),
seeded studies, and one headless Debian Chromium driven by playwright-core.

Every port is on 127.0.0.1. The browser, the provider and Orthanc are stopped at the end of
the session whatever happens; screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from ai_client.reference_service import ReferenceServer, ServiceConfig
from ai_client.testing import mr_head_series
from tests.support.browser import ARTIFACTS, Browser, Page, missing_tools
from tests.support.dicom_factory import Study, make_study
from tests.support.oidc_provider import OidcProvider, OidcUser
from tests.support.orthanc_server import OrthancServer, free_port, start_orthanc
from tests.support.viewer_data import make_mr_series

JWT_SECRET = "e2e-secret-0123456789abcdefghijklmnopqrstuv"
ADMIN_PASSWORD = "e2e admin password"
AUDIENCE = "neuronova"
DOCTOR = "dr.house"
DOCTOR_NAME = "HOUSE^GREGORY"
PATIENT = "jane.doe"
PASSWORDS = {DOCTOR: "doctor-password", PATIENT: "patient-password"}
MR_SLICES = 48
SHOTS = ARTIFACTS / "e2e"

# name -> milliseconds, printed at the end of the run
TIMINGS: dict[str, float] = {}


@dataclass
class ViewerWorld:
    server: OrthancServer
    idp: OidcProvider
    mr: Study  # PAT-001 DOE^JANE, 48-slice MR, granted to dr.house
    ct: Study  # PAT-001 DOE^JANE, CT, nobody but the patient
    other: Study  # PAT-002 ROE^RICHARD, forbidden to both
    head: Study  # PAT-003, 10-slice head MR for the AI results, granted to dr.house
    inference: ReferenceServer  # the reference inference service (not a clinical model)
    instance_ids: dict[str, str] = field(default_factory=dict)  # SOPInstanceUID -> Orthanc ID

    @property
    def base(self) -> str:
        return self.server.base

    def token(self, sub: str = DOCTOR, role: str = "doctor", *, name: str = "", patient_id: str = "",
              ttl: int = 900) -> str:
        """An HS256 token as an EHR would put in a viewer link (same issuer and audience as the IdP's)."""
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl, "iss": self.idp.issuer,
                                  "aud": AUDIENCE, "realm_access": {"roles": [role]}}
        if name:
            claims["name"] = name
        if patient_id:
            claims["patient_id"] = patient_id
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    def doctor_token(self) -> str:
        return self.token(DOCTOR, "doctor", name=DOCTOR_NAME)

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.base + path, auth=self.server.admin, timeout=30, **kwargs)

    def viewer_url(self, study: str, token: str | None = None) -> str:
        url = f"{self.base}/ohif/viewer?StudyInstanceUIDs={study}"
        return url + (f"&token={token}" if token else "")

    def audit(self, **query: str) -> list[dict[str, Any]]:
        answer = self.admin("GET", "/neuronova/audit", params={"limit": "1000", **query})
        assert answer.status_code == 200, answer.text
        return list(answer.json())


def _upload(server: OrthancServer, study: Study) -> dict[str, str]:
    ids = {}
    for ds, blob in zip(study.instances, study.files(), strict=True):
        answer = requests.post(server.base + "/instances", data=blob, auth=server.admin, timeout=60)
        assert answer.status_code == 200, answer.text
        ids[str(ds.SOPInstanceUID)] = answer.json()["ID"]
    return ids


def wait_for_renditions(world: ViewerWorld, study: Study, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until the HTJ2K package reports every instance of ``study`` done (or failed).

    Returns the last status; {} when the plugin has no HTJ2K status route."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = world.admin("GET", f"/neuronova/htj2k/studies/{study.study_uid}")
        if answer.status_code == 404 and "no route" in answer.text:
            return {}
        if answer.status_code == 200:
            status = answer.json()
            counts = status.get("counts", {})
            if counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0) >= len(study.instances):
                return status
        time.sleep(0.25)
    return status


@pytest.fixture(scope="session")
def viewer_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerWorld]:
    problem = missing_tools()
    if problem:
        pytest.fail(f"the end-to-end tests need the browser tools: {problem}")
    http_port = free_port()
    origin = f"http://127.0.0.1:{http_port}"
    idp = OidcProvider(redirect_origin=origin, audience=AUDIENCE, users={
        DOCTOR: OidcUser(PASSWORDS[DOCTOR], {"name": DOCTOR_NAME, "realm_access": {"roles": ["doctor"]}}),
        PATIENT: OidcUser(PASSWORDS[PATIENT], {"name": "DOE^JANE", "patient_id": "PAT-001",
                                               "realm_access": {"roles": ["patient"]}}),
    })
    # The reference service answering exactly the seed's contract (one mask, of the instance sent).
    inference = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=2, answer="seed"))
    inference.start_background()
    server: OrthancServer | None = None
    try:
        server = start_orthanc(Path(tmp_path_factory.mktemp("e2e-orthanc")), http_port=http_port, timeout=120, env={
            # One AI rule, for the head study only (PAT-003): once stable it gets its job by itself.
            "NEURONOVA_INFERENCE_URL": inference.url,
            "NEURONOVA_STABLE_AGE": "2",
            "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NEURONOVA_JWT_SECRET": JWT_SECRET,
            "NEURONOVA_JWKS_URL": idp.jwks_uri,
            "NEURONOVA_JWT_ISSUER": idp.issuer,
            "NEURONOVA_JWT_AUDIENCE": AUDIENCE,
            "NEURONOVA_OIDC_AUTHORITY": idp.issuer,
            "NEURONOVA_OIDC_CLIENT_ID": idp.client_id,
        }, overlay={"NeuroNova": {"Ai": {"Rules": [
            {"Name": "e2e-head", "ModalitiesInStudy": ["MR"], "Attributes": {"PatientID": "^PAT-003$"},
             "Models": ["stroke_risk"]}]}}})
        mr = make_mr_series(slices=MR_SLICES, patient_id="PAT-001", patient_name="DOE^JANE")
        ct = make_study("CT_small.dcm", patient_id="PAT-001", patient_name="DOE^JANE", slices=2,
                        description="Head CT")
        other = make_study("MR_small.dcm", patient_id="PAT-002", patient_name="ROE^RICHARD", slices=3,
                           description="Brain MR follow-up")
        head_series = mr_head_series(seed=f"e2e-{time.time()}", patient_id="PAT-003", patient_name="HEAD^TEST")
        head = Study(str(head_series[0].StudyInstanceUID), "PAT-003", [str(head_series[0].SeriesInstanceUID)],
                     head_series)
        world = ViewerWorld(server, idp, mr, ct, other, head, inference)
        for study in (mr, ct, other, head):
            world.instance_ids.update(_upload(server, study))
        for study in (mr, head):
            grant = world.admin("POST", f"/neuronova/studies/{study.study_uid}/grants",
                                json={"subject": DOCTOR, "relation": "ordering"})
            assert grant.status_code == 201, grant.text
        t0 = time.monotonic()
        status = wait_for_renditions(world, mr)
        TIMINGS["HTJ2K renditions of the 48-slice MR ready after upload"] = (time.monotonic() - t0) * 1000
        if status:
            assert status.get("counts", {}).get("done") == MR_SLICES, status
        yield world
    finally:
        if server is not None:
            server.stop()
        inference.stop()
        idp.close()


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Name -> milliseconds, printed in the terminal summary (a fixture, so that tests and this
    module share one dict however pytest imported the conftest)."""
    return TIMINGS


@pytest.fixture(scope="session")
def browser(viewer_world: ViewerWorld) -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture()
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    opened = browser.page(SHOTS)
    try:
        yield opened
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            try:
                opened.screenshot(f"{request.node.name}-FAILED")
            except Exception:  # noqa: S110 - the failure itself is what matters
                pass
        opened.close()


@pytest.fixture()
def new_page(browser: Browser) -> Iterator[Any]:
    """A factory for more isolated pages in one test (each closed at the end)."""
    pages: list[Page] = []

    def make() -> Page:
        pages.append(browser.page(SHOTS))
        return pages[-1]

    yield make
    for opened in pages:
        opened.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("NeuroNova viewer timings")
        for name, ms in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {ms:.0f} ms")
