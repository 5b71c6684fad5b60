from typing import Any

from neuronova.ai.api import AiApi
from neuronova.gate.api import GateApi
from neuronova.gate.routes import Scope, classify
from neuronova.htj2k.api import Htj2kApi
from neuronova.router import Router


def plugin_routes() -> Router:
    """The plugin's route table as app.py fills it (handlers unbound: only scopes matter)."""
    nothing: Any = None
    router = Router()
    router.add("GET", "/neuronova/health", lambda request: nothing, scope=Scope.PUBLIC)
    for api in (GateApi(nothing, nothing), Htj2kApi(nothing, nothing), AiApi(nothing, nothing)):
        api.register(router)
    return router


ROUTES = plugin_routes()

S, SE, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def test_dicomweb_routes() -> None:
    assert classify("/dicom-web/studies", "GET").scope is Scope.SEARCH
    assert classify("/dicom-web/series", "GET").scope is Scope.SEARCH
    assert classify("/dicom-web/instances", "GET").scope is Scope.SEARCH
    assert classify("/dicom-web/studies", "POST").scope is Scope.STOW
    target = classify(f"/dicom-web/studies/{S}/series/{SE}/instances/{SOP}/frames/1,3,5", "GET")
    assert (target.scope, target.study, target.series, target.instance) == (Scope.STUDY, S, SE, SOP)
    assert target.route == "wado-rs/frames" and target.event == "110103"
    assert classify(f"/dicom-web/studies/{S}/series", "GET").event == "110112"
    for tail in ("", "/metadata", "/rendered", "/series", "/instances"):
        assert classify(f"/dicom-web/studies/{S}{tail}", "GET").scope is Scope.STUDY


def test_everything_unknown_is_admin_or_closed() -> None:
    for uri, method in (
        (f"/dicom-web/studies/{S}", "DELETE"), (f"/dicom-web/studies/{S}/frames/1", "GET"),
        ("/dicom-web/servers", "GET"), (f"/dicom-web/studies/{S}/weird", "GET"), ("/dicom-web/studies/abc", "GET"),
        (f"/dicom-web/studies/{S}/../../system", "GET"), ("/system", "GET"), ("/app/explorer.html", "GET"),
        ("/neuronova/audit", "GET"), ("/neuronova/studies/1.2/grants", "POST"), ("/DICOM-WEB/studies", "GET"),
        ("/wado", "POST"),
    ):
        assert classify(uri, method).scope is Scope.ADMIN, uri
    assert classify("/dicom-web-internal/studies", "GET").scope is Scope.CLOSED


def test_wado_uri_and_plugin_routes() -> None:
    target = classify("/wado", "GET", {"studyUID": S, "objectUID": SOP})
    assert (target.scope, target.study, target.instance) == (Scope.STUDY, S, SOP)
    assert classify("/neuronova/health", "GET", routes=ROUTES).scope is Scope.PUBLIC
    assert classify("/neuronova/login", "POST", routes=ROUTES).scope is Scope.PUBLIC
    assert classify("/neuronova/me", "GET", routes=ROUTES).scope is Scope.USER
    assert classify("/neuronova/shares/abc_DEF-1", "DELETE", routes=ROUTES).scope is Scope.USER


def test_plugin_routes_are_classified_by_the_route_table_fail_closed() -> None:
    job = "0123456789abcdef0123456789abcdef"
    for uri, method in (("/neuronova/ai/jobs", "GET"), ("/neuronova/ai/jobs", "POST"),
                        (f"/neuronova/ai/jobs/{job}", "GET"), (f"/neuronova/ai/jobs/{job}/retry", "POST")):
        target = classify(uri, method, routes=ROUTES)
        assert (target.scope, target.route) == (Scope.USER, "ai"), uri
    for uri, method in (
        # Not routes at all: the old regexes let these through as USER (job ids the AI api never takes).
        ("/neuronova/ai/jobs/not-a-job", "GET"), (f"/neuronova/ai/jobs/{job.upper()}", "GET"),
        (f"/neuronova/ai/jobs/{job}/retry", "GET"), ("/neuronova/me", "POST"), ("/neuronova/shares", "GET"),
        # Admin routes, and what no table lists.
        ("/neuronova/audit", "GET"), ("/neuronova/htj2k/stats", "GET"), ("/neuronova/studies/1.2/grants", "POST"),
        ("/neuronova/nothing", "GET"), ("/neuronova/health", "POST"), ("/neuronova/me/", "GET"),
    ):
        assert classify(uri, method, routes=ROUTES).scope is Scope.ADMIN, (uri, method)
    # Without the table, every plugin route is ADMIN (the gate never opens by omission).
    assert classify("/neuronova/me", "GET").scope is Scope.ADMIN
    assert classify("/neuronova/health", "GET").scope is Scope.ADMIN


def test_a_route_registered_without_a_scope_is_admin() -> None:
    router = Router()
    router.add("GET", "/neuronova/new-thing", lambda request: None)  # type: ignore[arg-type, return-value]
    assert router.scope_of("GET", "/neuronova/new-thing") is Scope.ADMIN
    assert classify("/neuronova/new-thing", "GET", routes=router).scope is Scope.ADMIN


def test_ohif_static_files_are_public_with_a_strict_prefix() -> None:
    for uri in ("/ohif", "/ohif/", "/ohif/viewer", "/ohif/viewer/", "/ohif/app-config.js", "/ohif/index.html",
                "/ohif/app.bundle.0f6159c501addfe9.js", "/ohif/assets/favicon.ico", "/ohif/5130ccb17e3f3f5b.wasm",
                "/ohif/dicom-microscopy-viewer/dicomMicroscopyViewer.min.js", "/ohif/callback"):
        target = classify(uri, "GET")
        assert (target.scope, target.route) == (Scope.PUBLIC, "ohif"), uri
    for uri, method in (
        ("/ohif/app-config.js", "POST"), ("/ohif/", "PUT"), ("/ohif/viewer", "DELETE"),
        ("/ohifx", "GET"), ("/ohif-admin", "GET"), ("/OHIF/", "GET"), ("/ohif//system", "GET"),
        ("/ohif/../system", "GET"), ("/ohif/..", "GET"), ("/ohif/.env", "GET"), ("/ohif/a/../../tools/find", "GET"),
        ("/ohif/%2e%2e/system", "GET"), ("/ohif/a%2Fb", "GET"), ("/ohif/a\\b", "GET"), ("/ohif/a b", "GET"),
        ("/ohif/a;b", "GET"), ("/ohif/~root", "GET"), ("/app/ohif/index.html", "GET"), ("/ohif/a//b", "GET"),
    ):
        assert classify(uri, method).scope is Scope.ADMIN, (uri, method)


def test_one_path_parser_for_every_dicomweb_resource() -> None:
    from neuronova.dicomweb.paths import parse

    frames = parse("/studies/1.2/series/3/instances/4.5/frames/3,1,3")
    assert frames is not None and frames.frames == (3, 1, 3) and frames.action == "frames"
    assert frames.resource == "/studies/1.2/series/3/instances/4.5"
    assert parse("/studies/1.2/series/3/rendered") is not None
    assert parse("/studies/1.2/series/3/instances/4/thumbnail") is not None
    for bad in ("/studies/1.2/frames/1", "/studies/1.2/series/3/frames/1", "/studies/x", "/studies/1.2/",
                "/studies/1.2/series/3/instances/4/frames/", "/studies/1.2/metadata/x", "/series/1.2"):
        assert parse(bad) is None, bad
