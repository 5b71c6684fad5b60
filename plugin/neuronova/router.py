"""A small table of REST routes: (method, regex) -> handler."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import HttpError
from .http import Handler, Request, Response, error_response


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                return handler(_with_groups(request, match.groupdict()))
            except HttpError as exc:
                return error_response(exc.status, exc.message)
        if path_matched:
            return error_response(405, f"{request.method} is not allowed on {request.path}")
        return error_response(404, f"no route {request.path}")


def _with_groups(request: Request, groups: Mapping[str, str]) -> Request:
    return Request(request.method, request.path, tuple(groups.values()), request.query, request.headers,
                   request.body, request.ip)
