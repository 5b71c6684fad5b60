"""Methods and Accept values DICOMweb 1.24 refuses, decided by the front before forwarding."""

import pytest

from neuronova.dicomweb.front import _refusal
from neuronova.dicomweb.rules import allowed_methods, core_rendering_query, json_accepted, rendered_media_type
from neuronova.errors import HttpError
from neuronova.htj2k.negotiation import instance_refusal_status
from neuronova.http import Request

STUDY = "/studies/1.2"
INSTANCE = STUDY + "/series/3.4/instances/5.6"


@pytest.mark.parametrize("rest,allowed", [
    ("/studies", "GET,POST"), (STUDY, "GET,POST"), ("/series", "GET"), ("/instances", "GET"),
    (STUDY + "/metadata", "GET"), (STUDY + "/series", "GET"), (INSTANCE, "GET"), (INSTANCE + "/frames/1", "GET"),
    (INSTANCE + "/frames/1/rendered", "GET"), (STUDY + "/nothing", None), ("/servers", None), ("/info", None),
])
def test_allowed_methods_as_dicomweb_1_24(rest: str, allowed: str | None) -> None:
    assert allowed_methods(rest) == allowed


@pytest.mark.parametrize("method,rest,allow", [
    ("DELETE", "/studies", "GET,POST"), ("PUT", STUDY + "/metadata", "GET"), ("DELETE", STUDY, "GET,POST"),
    ("PUT", INSTANCE + "/frames/1", "GET"), ("POST", INSTANCE, "GET"),
])
def test_unsupported_methods_get_405_with_allow(method: str, rest: str, allow: str) -> None:
    refused = _refusal(Request(method, "/dicom-web" + rest), rest)
    assert refused is not None and refused.status == 405 and refused.headers == {"Allow": allow}


@pytest.mark.parametrize("method,rest", [("POST", "/studies"), ("POST", STUDY), ("GET", INSTANCE),
                                         ("DELETE", "/servers/remote"), ("GET", STUDY + "/nothing")])
def test_allowed_methods_pass(method: str, rest: str) -> None:
    assert _refusal(Request(method, "/dicom-web" + rest), rest) is None


@pytest.mark.parametrize("rest,accept,status", [
    (STUDY + "/metadata", "application/xml", 400),
    (STUDY + "/metadata", "application/dicom+xml", 400),
    ("/studies", "application/xml", 400),
    (STUDY + "/series", "text/html", 400),
    (INSTANCE + "/rendered", "image/tiff", 400),
    (INSTANCE + "/frames/1/rendered", "image/gif", 400),
    (STUDY + "/metadata", "application/dicom+json", None),
    (STUDY + "/metadata", "application/json", None),
    (STUDY + "/metadata", "*/*", None),
    ("/studies", None, None),
    (INSTANCE + "/rendered", "image/png", None),
    (INSTANCE + "/thumbnail", "image/jpeg", None),
    (INSTANCE + "/frames/1", "image/tiff", None),  # frames negotiate in the HTJ2K retriever
])
def test_refused_accept(rest: str, accept: str | None, status: int | None) -> None:
    headers = {"accept": accept} if accept is not None else {}
    refused = _refusal(Request("GET", "/dicom-web" + rest, headers=headers), rest)
    assert (refused.status if refused is not None else None) == status


def test_json_accept() -> None:
    assert json_accepted("application/dicom+json; q=0.9, application/xml")
    assert not json_accepted("application/dicom+json; q=0")
    assert json_accepted("")


@pytest.mark.parametrize("accept,mime", [
    (None, "image/jpeg"), ("*/*", "image/jpeg"), ("image/*", "image/jpeg"), ("image/png", "image/png"),
    ("IMAGE/PNG", "image/png"), ("image/jpeg", "image/jpeg"), ("image/jpeg;q=0.5, image/png", "image/png"),
    ("image/png;q=0, image/jpeg", "image/jpeg"), ("image/tiff", None), ("application/dicom", None),
])
def test_rendered_media_type(accept: str | None, mime: str | None) -> None:
    assert rendered_media_type(accept) == mime


def test_core_rendering_query() -> None:
    assert core_rendering_query({}) == {}
    assert core_rendering_query({"quality": "50"}) == {}
    assert core_rendering_query({"viewport": "32,16,0,0,64,64"}) == {"width": "32", "height": "16"}
    assert core_rendering_query({"window": "40.5,400"}) == {"window-center": "40.5", "window-width": "400"}
    for bad in ({"viewport": "32"}, {"viewport": "a,b"}, {"window": "x,1"}):
        with pytest.raises(HttpError) as refused:
            core_rendering_query(bad)
        assert refused.value.status == 400


@pytest.mark.parametrize("accept,status", [
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4', 400),
    ("image/png", 400),
    ("application/xml", 400),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90', 406),
    ("multipart/related; type=application/dicom", 406),
])
def test_instance_refusal_status(accept: str, status: int) -> None:
    assert instance_refusal_status(accept) == status
