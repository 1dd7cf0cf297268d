"""``OPTIONS`` answers name every method of the route.

Litestar answers ``OPTIONS`` itself (204 with ``Allow``), but when handlers of one path
are registered separately its ``Allow`` lists only some of them (``OPTIONS /v1/orders``
said ``GET, OPTIONS``, leaving out ``POST``). The answer gets the complete list, taken
from the application's routes (:class:`api.edge.ResponseEdge` writes it).
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar
from litestar.routes import HTTPRoute


def allow_headers(app: Litestar) -> Mapping[str, str]:
    """``Allow`` of each route, keyed by its path template (as routing records it in the scope)."""
    methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            methods.setdefault(route.path_format, set()).update(route.methods)
    return {path: ", ".join(sorted(allowed)) for path, allowed in methods.items()}
