"""OHIF Viewer, served by the plugin, driven in headless Chromium against the real gate."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.conftest import DOCTOR, MR_SLICES, PASSWORDS, PATIENT, ViewerWorld
from tests.support.browser import Page
from tests.support.dicom_factory import Study
from tests.support.viewer_data import CHECKSUM_JS, pixel_checksum

pytestmark = pytest.mark.e2e

HTJ2K = "1.2.840.10008.1.2.4.202"
DATA_PREFIXES = ("/dicom-web/", "/wado")
NOT_AVAILABLE = "not available"  # OHIF: "One or more of the requested studies are not available at this time."


def data_requests(page: Page) -> list[dict[str, Any]]:
    return [e for e in page.network() if urlparse(e["url"]).path.startswith(DATA_PREFIXES)]


def frame_requests(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "/frames/" in e["url"]]


def jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def open_study(page: Page, url: str, name: str, timeout_ms: int = 45000) -> dict[str, Any]:
    t0 = time.monotonic()
    page.goto(url)
    shown = page.wait_for_image(timeout_ms)
    shown["wall_ms"] = (time.monotonic() - t0) * 1000
    page.screenshot(name)
    return shown


def displayed_pixels_match(world: ViewerWorld, page: Page, study: Study) -> dict[str, Any]:
    """The image in the first viewport, as decoded in the browser, equals the original's pixels."""
    decoded = page.wait_for_function(CHECKSUM_JS.replace("return {imageId, loaded: false};", "return null;"))
    sop = decoded["imageId"].split("/instances/")[1].split("/")[0]
    original = next(ds for ds in study.instances if str(ds.SOPInstanceUID) == sop)
    expected = pixel_checksum(original.pixel_array)
    assert {k: decoded[k] for k in expected} == expected, (decoded, expected)
    return dict(decoded)


def login_at_idp(page: Page, user: str) -> None:
    page("waitForSelector", selector="#username")
    page.screenshot(f"idp-login-{user}")
    page("fill", selector="#username", value=user)
    page("fill", selector="#password", value=PASSWORDS[user])
    page("click", selector="#sign-in")


def assert_not_shown(page: Page, name: str) -> None:
    page("waitForFunction", expression=f"() => document.body.innerText.includes({NOT_AVAILABLE!r})",
         timeout=30000)
    page.screenshot(name)
    stats = page("canvasStats")
    assert not any(c.get("litFraction", 0) > 0.001 for c in stats), stats
    frames = frame_requests(data_requests(page))
    assert not any(e["status"] == 200 for e in frames), frames


def test_doctor_with_grant_opens_study_by_url(viewer_world: ViewerWorld, page: Page,
                                              timings: dict[str, float]) -> None:
    world = viewer_world
    shown = open_study(page, world.viewer_url(world.mr.study_uid, world.doctor_token()), "doctor-granted-study")
    assert shown["rendered"], f"no image rendered: {shown['canvases']}"
    timings["doctor, token link: time to first image (first OHIF load)"] = shown["wall_ms"]

    # OHIF took the token from the URL, and removed it from the address bar.
    assert "token=" not in str(page("url"))
    # What is shown is the original's pixels, decoded in the browser by OHIF's own decoder.
    displayed_pixels_match(world, page, world.mr)

    entries = data_requests(page)
    assert entries, "OHIF made no DICOMweb request"
    failed = [(e["status"], e["url"]) for e in entries if e["status"] != 200]
    assert not failed, f"DICOMweb requests failed: {failed}"
    assert all(e["authorization"].startswith("Bearer ") for e in entries if "/dicom-web/" in e["url"])
    frames = frame_requests(entries)
    assert frames, "no frame was requested"
    assert all("transfer-syntax=*" in e["accept"] for e in frames)
    syntaxes = {e.get("part", {}).get("content-type", "") for e in frames}
    assert syntaxes == {f"application/octet-stream; transfer-syntax={HTJ2K}"}, (
        f"frames did not arrive as HTJ2K: {syntaxes}")


def test_doctor_on_forbidden_study_sees_no_pixels_and_is_audited(viewer_world: ViewerWorld, page: Page) -> None:
    world = viewer_world
    started = time.time()
    page.goto(world.viewer_url(world.other.study_uid, world.doctor_token()))
    assert_not_shown(page, "doctor-forbidden-study")
    denied = [e for e in data_requests(page) if e["status"] == 403]
    assert denied, "the gate denied nothing"
    rows = world.audit(user=DOCTOR, study=world.other.study_uid, decision="deny", since=str(int(started) - 1))
    assert rows, "the denials were not audited"
    assert {r["event_type"] for r in rows} == {"110113"}  # security alert
    assert all(r["role"] == "doctor" for r in rows)


def test_patient_sees_only_own_studies_in_study_list(viewer_world: ViewerWorld, page: Page) -> None:
    world = viewer_world
    page.goto(world.base + "/ohif/")
    login_at_idp(page, PATIENT)
    page("waitForFunction", expression="() => /\\d+-\\d+ of \\d+/.test(document.body.innerText)", timeout=45000)
    page("waitForFunction", expression="() => document.body.innerText.includes('DOE, JANE')", timeout=15000)
    page.screenshot("patient-study-list")
    text = page.text()
    assert "1-2 of 2" in text, text[:500]
    assert "ROE" not in text
    searches = [e for e in data_requests(page) if urlparse(e["url"]).path == "/dicom-web/studies"]
    assert searches and all(e["status"] == 200 for e in searches)


def test_share_link_opens_its_study_until_revoked(viewer_world: ViewerWorld, new_page: Any) -> None:
    world = viewer_world
    doctor = {"Authorization": f"Bearer {world.doctor_token()}"}
    created = requests.post(world.base + "/neuronova/shares", json={"study": world.mr.study_uid, "ttl": 600},
                            headers=doctor, timeout=30)
    assert created.status_code == 201, created.text
    share = created.json()
    url = world.base + share["url"]

    first = new_page()
    shown = open_study(first, url, "share-link-open")
    assert shown["rendered"], shown["canvases"]
    assert all(e["status"] == 200 for e in data_requests(first))
    first.close()  # (it keeps prefetching the series otherwise, competing for the 2 cores)

    # The share token reaches nothing but its study.
    elsewhere = new_page()
    elsewhere.goto(world.viewer_url(world.other.study_uid, share["token"]))
    assert_not_shown(elsewhere, "share-link-other-study")

    revoked = requests.delete(f"{world.base}/neuronova/shares/{share['id']}", headers=doctor, timeout=30)
    assert revoked.status_code == 200, revoked.text
    after = new_page()
    after.goto(url)
    assert_not_shown(after, "share-link-after-revocation")


def test_oidc_login_then_permitted_study(viewer_world: ViewerWorld, page: Page, timings: dict[str, float]) -> None:
    world = viewer_world
    logins_before = requests.get(world.idp.issuer + "/test/stats", timeout=10).json()["logins"]
    page.goto(world.viewer_url(world.mr.study_uid))
    page("waitForURL", pattern=world.idp.issuer + "/interaction/")  # OHIF sent the user to the provider
    t0 = time.monotonic()
    login_at_idp(page, DOCTOR)
    page("waitForURL", pattern=f"{world.base}/ohif/viewer")
    shown = page.wait_for_image(45000)
    timings["doctor, OIDC: login submitted to first image"] = (time.monotonic() - t0) * 1000
    page.screenshot("oidc-doctor-study")
    assert shown["rendered"], shown["canvases"]
    assert requests.get(world.idp.issuer + "/test/stats", timeout=10).json()["logins"] == logins_before + 1
    displayed_pixels_match(world, page, world.mr)

    # The DICOMweb requests carried the provider's RS256 access token, checked by the gate with
    # the provider's JWKS (issuer and audience included).
    entries = data_requests(page)
    assert entries and all(e["status"] == 200 for e in entries), [(e["status"], e["url"]) for e in entries]
    tokens = {e["authorization"].removeprefix("Bearer ") for e in entries if "/dicom-web/" in e["url"]}
    assert len(tokens) >= 1
    for token in tokens:
        header, claims = jwt_part(token, 0), jwt_part(token, 1)
        assert header["alg"] == "RS256" and header["kid"] == "e2e-rs256"
        assert claims["iss"] == world.idp.issuer and claims["aud"] == "neuronova" and claims["sub"] == DOCTOR
        assert claims["realm_access"] == {"roles": ["doctor"]}


def test_explorer_for_admin_only(viewer_world: ViewerWorld, page: Page, new_page: Any) -> None:
    world = viewer_world
    study_id = world.admin("POST", "/tools/lookup", data=world.mr.study_uid).json()[0]["ID"]
    instance_id = world.instance_ids[str(world.mr.instances[0].SOPInstanceUID)]

    page.goto(world.base + "/neuronova/login")
    page.screenshot("explorer-login")
    page("fill", selector="input[name=username]", value="admin")
    page("fill", selector="input[name=password]", value=world.server.admin_password)
    page("click", selector="button[type=submit]")
    page("waitForURL", pattern="/app/explorer.html")
    page.goto(world.base + "/app/explorer.html#find-patients")
    page("waitForFunction", expression="() => document.body.innerText.includes('ROE^RICHARD')", timeout=30000)
    page.screenshot("explorer-patients")
    assert "DOE^JANE" in page.text()
    assert page("evaluate", expression="() => !!document.querySelector('a.neuronova-logout')")

    # The study page: NeuroNova's panel with the HTJ2K status and the AI jobs.
    page.goto(f"{world.base}/app/explorer.html#study?uuid={study_id}")
    page("waitForFunction", expression=f"() => document.body.innerText.includes('{MR_SLICES} of {MR_SLICES}')",
         timeout=30000)
    panel = page.text("#neuronova-study")
    page("evaluate", expression="() => document.querySelector('#neuronova-study').scrollIntoView()")
    page.screenshot("explorer-study-neuronova-panel")
    assert f"HTJ2K: {MR_SLICES} of {MR_SLICES} instance(s) have a rendition" in panel, panel
    page("waitForFunction", expression="() => document.querySelector('#neuronova-study li.neuronova-ai')"
         ".innerText.includes('AI jobs: none')", timeout=15000)

    # "Open in OHIF Viewer": a new tab on a one-hour share link made with the admin's session.
    viewer = page.click_popup("a.neuronova-open-ohif")
    try:
        shown = viewer.wait_for_image(45000)
        viewer.screenshot("explorer-opens-ohif")
        assert shown["rendered"], shown["canvases"]
        entries = data_requests(viewer)
        assert entries and all(e["status"] == 200 for e in entries)
        tokens = {e["authorization"].removeprefix("Bearer ") for e in entries if "/dicom-web/" in e["url"]}
        assert len(tokens) == 1 and jwt_part(tokens.pop(), 1)["study"] == world.mr.study_uid
    finally:
        viewer.close()

    # A preview of the original, rendered by Orthanc.
    page.goto(f"{world.base}/app/explorer.html#instance?uuid={instance_id}")
    page("click", selector="#instance-preview")
    page("waitForFunction", expression="() => { const i = document.querySelector('#lbImage');"
         " return i && getComputedStyle(i).backgroundImage.includes('preview'); }", timeout=30000)
    time.sleep(0.5)
    page.screenshot("explorer-preview")
    previews = [e for e in page.network() if f"/instances/{instance_id}/preview" in e["url"]]
    assert previews and previews[-1]["status"] == 200 and previews[-1]["contentType"] == "image/png", previews

    # A doctor gets nothing from Explorer or the core API: neither with a token nor with a
    # cookie (a doctor's token presented as the session cookie).
    doctor_token = world.doctor_token()
    refused = new_page()
    answer = refused.goto(f"{world.base}/app/explorer.html?token={doctor_token}")
    assert answer["status"] == 403
    refused.screenshot("explorer-doctor-token-refused")
    host = urlparse(world.base).hostname
    refused("addCookies", cookies=[{"name": "neuronova_session", "value": doctor_token, "domain": host, "path": "/"}])
    for path in ("/app/explorer.html", "/patients", "/studies", f"/instances/{instance_id}/preview",
                 f"/neuronova/htj2k/studies/{world.mr.study_uid}"):
        assert refused("request", url=world.base + path)["status"] == 403, path
    assert refused.goto(world.base + "/app/explorer.html")["status"] == 403
    bearer = {"Authorization": f"Bearer {doctor_token}"}
    assert refused("request", url=world.base + "/app/explorer.html", headers=bearer)["status"] == 403


SEGMENTATIONS_JS = """() => {
  const tools = window.cornerstoneTools, cs = window.cornerstone;
  if (!tools || !tools.segmentation) return [];
  return tools.segmentation.state.getSegmentations().map((s) => {
    const labelmap = (s.representationData || {}).Labelmap || {};
    let voxels = 0;
    for (const id of labelmap.imageIds || []) {
      const image = cs.cache.getImage(id);
      if (!image) continue;
      const data = image.getPixelData();
      for (let i = 0; i < data.length; i++) if (data[i]) voxels++;
    }
    return {label: s.label, segments: Object.keys(s.segments || {}).length, voxels};
  });
}"""

# Overlay pixels: the segment colour (red) on a grey image.
COLOURED_PIXELS_JS = """() => {
  let coloured = 0;
  for (const canvas of document.querySelectorAll('.viewport-element canvas, canvas.cornerstone-canvas')) {
    if (!canvas.width) continue;
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 120 && d[i] - d[i + 1] > 60 && d[i] - d[i + 2] > 60) coloured++;
  }
  return coloured;
}"""


def test_ai_results_listed_and_segmentation_overlaid(viewer_world: ViewerWorld, page: Page, new_page: Any) -> None:
    # The whole chain with the seed's contract: stable study -> job (by the rule) -> the
    # seed's one mask -> SEG + SR stored -> listed by the job API -> overlay shown in OHIF.
    world = viewer_world
    doctor = {"Authorization": f"Bearer {world.doctor_token()}"}
    deadline = time.monotonic() + 90
    while True:
        jobs = requests.get(f"{world.base}/neuronova/ai/jobs?study={world.head.study_uid}", headers=doctor,
                            timeout=30).json()
        if (jobs and jobs[0]["status"] in ("succeeded", "failed")) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert jobs, "the stable head study got no job"
    job = jobs[0]
    assert (job["status"], job["trigger"], job["rule"]) == ("succeeded", "auto", "e2e-head"), job
    kinds = {o["type"] for o in job["result"]["objects"]}
    assert kinds == {"SEG", "SR"}, job["result"]["objects"]
    assert job["result"]["mask"]["frames"] == 1  # the seed's one mask, on the instance sent
    mask_voxels = job["result"]["mask"]["voxels"]
    assert mask_voxels > 0
    # asking for it again gives the same job
    again = requests.post(world.base + "/neuronova/ai/jobs", headers=doctor, timeout=30,
                          json={"study": world.head.study_uid, "model": "stroke_risk"})
    assert again.status_code == 200 and again.json()["id"] == job["id"], again.text

    shown = open_study(page, world.viewer_url(world.head.study_uid, world.doctor_token()), "ai-study-opened")
    assert shown["rendered"], shown["canvases"]
    # The study browser lists both results beside the source series.
    page("waitForFunction", expression="() => /SEG[\\s\\S]*NeuroNova AI stroke_risk/.test(document.body.innerText)"
         " && /SR[\\s\\S]*NeuroNova AI stroke_risk report/.test(document.body.innerText)", timeout=30000)
    assert page("evaluate", expression=COLOURED_PIXELS_JS) == 0

    # Load the segmentation into the viewport, as a user does (double-click, confirm).
    page("dblclick", selector="text=NeuroNova AI stroke_risk Hyperintensity")
    page("click", selector="button:has-text('Yes')")
    loaded = page.wait_for_function(
        "() => { const all = (" + SEGMENTATIONS_JS + ")(); return all.length && all[0].voxels ? all : null; }")
    page("waitForFunction", expression="() => (" + COLOURED_PIXELS_JS + ")() > 0", timeout=15000)
    page.screenshot("ai-segmentation-overlay")
    assert len(loaded) == 1 and loaded[0]["segments"] == 1
    # Exactly the voxels the inference service returned, decoded from the stored DICOM SEG.
    assert loaded[0]["voxels"] == mask_voxels
    assert data_requests(page) and all(e["status"] == 200 for e in data_requests(page))

    # Explorer's NeuroNova panel lists the job for the admin.
    admin = new_page()
    admin.goto(world.base + "/neuronova/login")
    admin("fill", selector="input[name=username]", value="admin")
    admin("fill", selector="input[name=password]", value=world.server.admin_password)
    admin("click", selector="button[type=submit]")
    admin("waitForURL", pattern="/app/explorer.html")
    study_id = world.admin("POST", "/tools/lookup", data=world.head.study_uid).json()[0]["ID"]
    admin.goto(f"{world.base}/app/explorer.html#study?uuid={study_id}")
    admin("waitForFunction", expression="() => document.body.innerText.includes('stroke_risk \\u2014 succeeded')",
          timeout=30000)
    admin("evaluate", expression="() => document.querySelector('#neuronova-study').scrollIntoView()")
    admin.screenshot("explorer-study-ai-job")
