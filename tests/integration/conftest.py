"""A real Orthanc with the plugin, started once for the session, and a seeded world:
two patients, three studies, physicians named in DICOM attributes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pynetdicom import AE, StoragePresentationContexts

from tests.support.dicom_factory import Study, make_study
from tests.support.jwks_server import JwksServer
from tests.support.orthanc_server import OrthancServer, free_port, start_orthanc

JWT_SECRET = "integration-secret-0123456789abcdefghijklmnop"
ISSUER = "https://idp.test/realms/neuronova"
AUDIENCE = "neuronova"
ADMIN_PASSWORD = "correct horse battery staple"
SCU_AET = "TESTSCU"


@dataclass
class Keys:
    rsa_private: Any
    rsa_public_pem: bytes


@dataclass
class World:
    server: OrthancServer
    keys: Keys
    a: Study  # PAT-001, referring HOUSE^GREGORY
    b: Study  # PAT-001, read by WILSON^JAMES
    c: Study  # PAT-002, no physicians; sent by C-STORE
    scu_port: int
    jwks: JwksServer

    @property
    def base(self) -> str:
        return self.server.base

    def token(self, sub: str = "user", role: str | None = "doctor", *, ttl: int = 600, name: str = "",
              patient_id: str = "", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl, "iss": ISSUER, "aud": AUDIENCE}
        if role is not None:
            claims["realm_access"] = {"roles": [role]}
        if name:
            claims["name"] = name
        if patient_id:
            claims["patient_id"] = patient_id
        key = overrides.pop("key", JWT_SECRET)
        algorithm = overrides.pop("algorithm", "HS256")
        headers = overrides.pop("headers", None)
        claims.update(overrides)
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.base + path, headers=headers, timeout=30, **kwargs)

    def admin_get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base + path, auth=self.server.admin, timeout=30, **kwargs)


def c_store(host_port: int, study: Study, aet: str = SCU_AET) -> list[int]:
    ae = AE(ae_title=aet)
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", host_port, ae_title="NEURONOVA")
    assert assoc.is_established, "C-STORE association refused"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in study.instances]
    finally:
        assoc.release()


@pytest.fixture(scope="session")
def keys() -> Keys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Keys(private, pem)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[World]:
    data = tmp_path_factory.mktemp("orthanc")
    pem_path = Path(data) / "idp-public.pem"
    pem_path.write_bytes(keys.rsa_public_pem)
    scu_port = free_port()
    jwks = JwksServer()
    jwks.add_key("kid-1")
    server = start_orthanc(data, overlay={"NeuroNova": {"Gate": {"JwksMinRefreshSeconds": 2}}}, env={
        "NEURONOVA_JWKS_URL": jwks.url,
        "NEURONOVA_JWT_SECRET": JWT_SECRET,
        "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "NEURONOVA_JWT_ISSUER": ISSUER,
        "NEURONOVA_JWT_AUDIENCE": AUDIENCE,
        "NEURONOVA_JWT_PUBLIC_KEY_FILE": str(pem_path),
        "NEURONOVA_MODALITIES": f'{{"{SCU_AET}": ["{SCU_AET}", "127.0.0.1", {scu_port}]}}',
    })
    try:
        a = make_study("MR_small.dcm", patient_id="PAT-001", patient_name="DOE^JANE", slices=3,
                       referring="HOUSE^GREGORY", description="Brain MR")
        b = make_study("CT_small.dcm", patient_id="PAT-001", patient_name="DOE^JANE", slices=2, series=2,
                       reading="WILSON^JAMES", description="Head CT")
        c = make_study("MR_small.dcm", patient_id="PAT-002", patient_name="ROE^RICHARD", slices=2,
                       description="Brain MR follow-up")
        for study in (a, b):
            for blob in study.files():
                answer = requests.post(server.base + "/instances", data=blob, auth=server.admin, timeout=30)
                assert answer.status_code == 200, answer.text
        assert c_store(server.dicom_port, c) == [0] * len(c.instances)
        yield World(server, keys, a, b, c, scu_port, jwks)
    finally:
        server.stop()
        jwks.close()
