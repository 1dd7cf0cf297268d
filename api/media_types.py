"""Request bodies are JSON: anything else is 415 ``unsupported_media_type``.

Litestar decodes a body as JSON whatever its ``Content-Type`` says; a payments API
must not guess (a form-encoded ``curl -d`` is a mistake to point out, not to parse).
Runs before idempotency keys are claimed, so a refused body takes no key.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from api.problems import ApiError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` value is JSON in UTF-8 (``application/json``, ``application/*+json``)."""
    media_type, *parameters = (part.strip().lower() for part in content_type.split(";"))
    if media_type != JSON_MEDIA_TYPE and not (media_type.startswith("application/") and media_type.endswith("+json")):
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') != "utf-8":
            return False
    return True


class JsonBodyMiddleware(ASGIMiddleware):
    """415 for a body that is not declared ``application/json`` (or a JSON suffix type) in UTF-8."""

    scopes = (ScopeType.HTTP,)

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        """Gateways sign bytes in their own formats; the webhook edge checks those itself."""
        return str(scope["path"]).startswith("/v1/webhooks/")

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") in BODY_METHODS:
            content_type, has_body = None, False
            for name, value in scope["headers"]:
                if name == b"content-type":
                    content_type = bytes(value).decode("latin-1")
                elif name == b"content-length":
                    has_body = has_body or bytes(value).strip() not in (b"", b"0")
                elif name == b"transfer-encoding":
                    has_body = True
            if (content_type is not None and not is_json_media_type(content_type)) or (
                content_type is None and has_body
            ):
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    "Send the body as JSON with 'Content-Type: application/json'.",
                    headers={"Accept-Post": JSON_MEDIA_TYPE},
                )
        await next_app(scope, receive, send)
