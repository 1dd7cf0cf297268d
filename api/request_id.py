"""Request ids: echoed from ``X-Request-ID`` when the client sent a sane one, else made."""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

from litestar.types import Scope

HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Generated ids: a random per-process prefix and a counter (cheaper than uuid4 per request).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def request_id_of(scope: Scope) -> str:
    """The request's id, fixed on first use so that body and header always agree."""
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        sent = _header(scope, HEADER.encode())
        request_id = sent if sent and _ACCEPTABLE.fullmatch(sent) else f"{_PREFIX}{next(_COUNTER):012x}"
        state["request_id"] = request_id
    return str(request_id)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None
