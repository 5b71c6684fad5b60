"""public_base: the public DICOMweb root of a request, as DICOMweb 1.24 computes it (validated)."""

import pytest

from neuronova.dicomweb.urls import public_base
from neuronova.http import Request

HOST = {"host": "127.0.0.1:8042"}


@pytest.mark.parametrize("headers,expected", [
    ({}, "http://127.0.0.1:8042"),
    # RFC 7239 Forwarded: host and proto, any order, names case-insensitive, first element only
    ({"forwarded": "proto=https;host=pacs.example.org"}, "https://pacs.example.org"),
    ({"forwarded": "host=pacs.example.org"}, "http://pacs.example.org"),
    ({"forwarded": "Host=pacs.example.org; PROTO=https"}, "https://pacs.example.org"),
    ({"forwarded": "for=1.2.3.4;host=a.example, host=b.example;proto=https"}, "http://a.example"),
    ({"forwarded": "proto=https"}, "https://127.0.0.1:8042"),
    ({"forwarded": "for=1.2.3.4;by=5.6.7.8"}, "http://127.0.0.1:8042"),
    ({"forwarded": "proto=HTTPS;host=a.example"}, "http://a.example"),  # 1.24: exactly "https"
    ({"forwarded": "proto=ftp;host=a.example"}, "http://a.example"),
    ({"forwarded": 'host="a.example:8443";proto=https'}, "https://a.example:8443"),  # quoted-string
    ({"forwarded": "host=[::1]:8443"}, "http://[::1]:8443"),
    # X-Forwarded-*: only the pair counts, and it wins over Forwarded
    ({"x-forwarded-proto": "https", "x-forwarded-host": "pacs.example.org"}, "https://pacs.example.org"),
    ({"x-forwarded-host": "pacs.example.org"}, "http://127.0.0.1:8042"),
    ({"x-forwarded-proto": "https"}, "http://127.0.0.1:8042"),
    ({"x-forwarded-proto": "http", "x-forwarded-host": "x.example", "forwarded": "proto=https;host=f.example"},
     "http://x.example"),
])
def test_forwarded_headers(headers: dict[str, str], expected: str) -> None:
    assert public_base(Request("GET", "/dicom-web/studies", headers={**HOST, **headers})) == expected + "/dicom-web"


@pytest.mark.parametrize("headers", [
    {"forwarded": "host=evil.example/x"},
    {"forwarded": 'host="evil.example\\"><script>"'},
    {"forwarded": "host=a.example b.example"},
    {"forwarded": "host=a.example@b.example"},
    {"x-forwarded-proto": "https", "x-forwarded-host": "a.example, b.example"},
    {"x-forwarded-proto": "https", "x-forwarded-host": "a.example/../x"},
    {"forwarded": "host=a.example:port"},
])
def test_injected_hosts_are_not_used(headers: dict[str, str]) -> None:
    assert public_base(Request("GET", "/", headers={**HOST, **headers})) == "http://127.0.0.1:8042/dicom-web"


def test_invalid_or_missing_host_header_falls_back_to_localhost() -> None:
    assert public_base(Request("GET", "/", headers={"host": "a b"})) == "http://localhost/dicom-web"
    assert public_base(Request("GET", "/")) == "http://localhost/dicom-web"
