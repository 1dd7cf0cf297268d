"""``OPTIONS`` answers name every method of the route.

Litestar answers ``OPTIONS`` itself (204 with ``Allow``), but when handlers of one path
are registered separately its ``Allow`` lists only some of them (``OPTIONS /v1/orders``
said ``GET, OPTIONS``, leaving out ``POST``). This ``before_send`` hook writes the
complete list, taken from the application's routes.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


def allow_headers(app: Litestar) -> Mapping[str, str]:
    """``Allow`` of each route, keyed by its path template (as routing records it in the scope)."""
    methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            methods.setdefault(route.path_format, set()).update(route.methods)
    return {path: ", ".join(sorted(allowed)) for path, allowed in methods.items()}


async def complete_allow_header(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the full ``Allow`` on answers to ``OPTIONS``."""
    if message["type"] == "http.response.start" and scope.get("method") == "OPTIONS" and message["status"] == 204:
        allow = scope["app"].state.allow_headers.get(scope.get("path_template"))
        if allow is not None:
            MutableScopeHeaders.from_message(message)["Allow"] = allow
