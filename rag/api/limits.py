"""Request body limits: JSON bodies up to RAG_API_MAX_BODY_KB, uploads up to
RAG_API_MAX_UPLOAD_MB. Refused with a JSON 413 before the body is read when the
Content-Length says so, and while reading otherwise (chunked bodies)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.errors import error_response
from rag.settings import Settings

UPLOAD_ROUTE = ("POST", "/v1/documents")


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI's body parsing passes HTTPExceptions through to our handler."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=describe_limit(limit))


def describe_limit(limit: int) -> str:
    size = f"{limit / (1 << 20):.4g} MB" if limit >= 1 << 20 else f"{limit / 1024:.4g} KB"
    return f"The request body is larger than the limit of {size}."


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.body_limit = settings.api_max_body_kb * 1024
        self.upload_limit = int(settings.api_max_upload_mb * (1 << 20))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = (scope["method"], scope["path"].rstrip("/")) == UPLOAD_ROUTE
        limit = self.upload_limit if is_upload else self.body_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(scope["path"], 413, describe_limit(limit))(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_and_note)
        except BodyTooLarge as exc:  # raised outside FastAPI's body parsing
            if started:
                raise
            await error_response(scope["path"], 413, exc.detail)(scope, receive, send)
