"""The one ASGI layer around the whole application: response headers every answer gets, and metrics.

It wraps ``Litestar.asgi_handler``, outside routing and the exception handlers, so it
sees every answer as sent (401s of authentication, 404s and 405s of the router,
problems of every kind) and wraps ``send`` once per request. On the response start it
notes the status and writes ``X-Request-ID`` (:mod:`api.request_id`), the rate-limit
headers noted by :meth:`api.rate_limit.SharedRateLimiter.admit`, and the complete
``Allow`` of an ``OPTIONS`` answer (:mod:`api.methods`); when the request is over it
observes the request's latency under its route template and the status actually sent.
Should nothing be sent at all, the server answers 500, which is what is counted.

These were three Litestar ``before_send`` hooks (each rebuilding a header view of the
message) and a metrics middleware with a ``send`` wrapper of its own: two wrappers and
three header scans per message. Litestar's Prometheus middleware measured at ~20 % of
the API's CPU under load (four labelled metrics resolved per request); this layer
observes one histogram (its ``_count`` is the request counter) through a cache of
label children, and counts into the process's tally (:mod:`api.tally`), not into the
shared metric files, once per request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from api.metrics import REQUEST_SECONDS, REQUESTS_IN_PROGRESS
from api.rate_limit import noted_headers
from api.request_id import request_id_of
from api.tally import TALLY

_REQUEST_ID = b"x-request-id"
_ALLOW = b"allow"


class ResponseEdge:
    """Adds the headers every answer carries and counts every answer, in one ``send`` wrapper."""

    def __init__(self, app: ASGIApp, allow_headers: Mapping[str, str]) -> None:
        self.app = app
        self._allow = {path: allow.encode("latin-1") for path, allow in allow_headers.items()}
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._complete_headers(message, scope, status)
            await send(message)

        TALLY.inc(REQUESTS_IN_PROGRESS)
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            TALLY.inc(REQUESTS_IN_PROGRESS, -1)
            key = (scope["method"], scope.get("path_template") or "unmatched", status)
            child = self._children.get(key)
            if child is None:
                child = self._children.setdefault(key, REQUEST_SECONDS.labels(*key))
            TALLY.observe(child, time.perf_counter() - started)

    def _complete_headers(self, message: HTTPResponseStartEvent, scope: Scope, status: int) -> None:
        headers = message.get("headers")
        if not isinstance(headers, list):
            headers = list(headers or ())
            message["headers"] = headers
        _put(headers, _REQUEST_ID, request_id_of(scope).encode("latin-1"))
        noted = noted_headers(scope)
        if noted:
            for name, value in noted:
                _put(headers, name, value)
        if status == 204 and scope.get("method") == "OPTIONS":
            allow = self._allow.get(scope.get("path_template") or "")
            if allow is not None:
                _put(headers, _ALLOW, allow)


def _put(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Sets header ``name`` (lower case) to ``value``, replacing any the answer already has."""
    for index in range(len(headers) - 1, -1, -1):
        if headers[index][0].lower() == name:
            del headers[index]
    headers.append((name, value))
