"""The one table of the plugin's REST routes: (method, regex, scope) -> handler.

The gate's filter classifies ``/neuronova/`` requests by the same table the router
dispatches with (:meth:`Router.scope_of`), so a route's scope is declared once, next to
its handler. A path or method missing from the table is no route: the gate treats it as
ADMIN and the router answers 404/405.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import HttpError
from .http import Handler, Request, Response, error_response
from .scope import Scope


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    scope: Scope
    handler: Handler


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, scope: Scope = Scope.ADMIN) -> None:
        """Register a route; ``scope`` is what the gate lets through before ``handler`` runs
        (ADMIN unless said otherwise: a route is never opened by omission)."""
        self._routes.append(Route(method, re.compile(f"^{pattern}$"), scope, handler))

    def scope_of(self, method: str, path: str) -> Scope | None:
        """The scope of the route ``method path`` answers to, None when there is none."""
        for route in self._routes:
            if route.method == method and route.pattern.match(path):
                return route.scope
        return None

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if route.method != request.method:
                continue
            try:
                return route.handler(_with_groups(request, match.groupdict()))
            except HttpError as exc:
                return error_response(exc.status, exc.message)
        if path_matched:
            return error_response(405, f"{request.method} is not allowed on {request.path}")
        return error_response(404, f"no route {request.path}")


def _with_groups(request: Request, groups: Mapping[str, str]) -> Request:
    return Request(request.method, request.path, tuple(groups.values()), request.query, request.headers,
                   request.body, request.ip)
