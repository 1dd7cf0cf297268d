"""The answers of the busiest endpoints: encoded once with msgspec and sent as two ASGI messages.

A handler returning a Litestar ``Response`` has it rendered by ``to_asgi_response``: the
body encoded through the type-encoder lookup, the headers normalized and put one by one
into a ``MutableScopeHeaders``, ``content-type`` and ``content-length`` set with
``setdefault``, then an ``ASGIResponse`` built. On the order path that measured at about
10 % of the API process's GIL time. A :class:`JsonAnswer` is an ASGI application of its
own, which Litestar sends as it is (a handler whose return annotation is an ASGI
callable): the same status, body and headers, built once. What every answer also gets
(``X-Request-ID``, the rate-limit headers) is added around it by :mod:`api.edge`, as for
any other answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar.types import Receive, Scope, Send

_ENCODER: Final = msgspec.json.Encoder()
_JSON: Final = (b"content-type", b"application/json")


class JsonAnswer:
    """``content`` as JSON with ``status`` and ``headers`` (names in any case)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, content: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = _ENCODER.encode(content)
        self.headers = [_JSON, (b"content-length", b"%d" % len(self.body))]
        for name, value in (headers or {}).items():
            self.headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
