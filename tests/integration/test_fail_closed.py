"""Fail closed: a broken configuration or store denies every request; health says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.orthanc_server import start_orthanc

ADMIN_PASSWORD = "fail-closed admin password"
SECRET = "fail-closed-jwt-secret-0123456789abcdef"

CASES = {
    "signing secret too short": ({"NEURONOVA_SIGNING_SECRET": "short"}, "SigningSecret"),
    "store cannot be opened": ({"NEURONOVA_DATABASE_URL": "sqlite:////nonexistent/dir/neuronova.sqlite"}, "store"),
    "unreadable public key": ({"NEURONOVA_JWT_PUBLIC_KEY_FILE": "/nonexistent/idp.pem"}, "cannot read"),
    "unknown database driver": ({"NEURONOVA_DATABASE_URL": "nosuchdb://x"}, "store"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_start_denies_everything(tmp_path: Path, case: str) -> None:
    env, reason = CASES[case]
    server = start_orthanc(tmp_path, wait_status=503, env={
        "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD, "NEURONOVA_JWT_SECRET": SECRET, **env})
    try:
        health = requests.get(server.base + "/neuronova/health", timeout=10)
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "closed" and reason in body["reason"]
        assert ADMIN_PASSWORD not in health.text and SECRET not in health.text
        for path in ("/system", "/dicom-web/studies", "/app/explorer.html", "/neuronova/me", "/wado",
                     "/instances", "/dicom-web-internal/studies"):
            for auth in (None, ("admin", ADMIN_PASSWORD)):
                assert requests.get(server.base + path, auth=auth, timeout=10).status_code == 403, path
        assert requests.post(server.base + "/instances", data=b"x", auth=("admin", ADMIN_PASSWORD),
                             timeout=10).status_code == 403
        assert "the gate is CLOSED" in server.log()
    finally:
        server.stop()
