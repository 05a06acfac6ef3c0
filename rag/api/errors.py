"""Every error the API returns is JSON with one plain sentence, never a stack trace.

Shape: ``{"detail": "..."}``, except on the OpenAI-compatible routes, which answer in
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` so its SDKs raise
their usual exceptions with our message.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.embedding import EmbeddingError
from rag.llm import LLMRequestError, LLMUnavailable
from rag.retrieval import QuestionError
from rag.store.base import StoreError

log = logging.getLogger("rag.api")


# --- the error bodies, as documented in the OpenAPI schema --------------------------------
class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, in one sentence.")
    errors: list[FieldError] | None = Field(None, description="Every invalid field (validation errors only).")


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorInfo


def documented_errors(model: type[BaseModel]) -> dict:
    """The error answers every authenticated route may give (for `include_router(responses=...)`)."""
    reasons = {400: "The body cannot be parsed (e.g. not UTF-8).", 401: "No API key, or an invalid or revoked one.",
               404: "Not found (or not visible to the key).",
               413: "The request body is too large.", 422: "The request is not valid."}
    return {status: {"model": model, "description": text} for status, text in reasons.items()}

OPENAI_PREFIXES = ("/v1/chat/", "/v1/models")
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                503: "service_unavailable"}


def error_response(path: str, status: int, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    if path.startswith(OPENAI_PREFIXES):
        body = {"error": {"message": message, "type": OPENAI_TYPES.get(status, "api_error"),
                          "param": None, "code": status}}
    else:
        body = {"detail": message, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> tuple[str, list[dict]]:
    """One sentence naming the first problem, plus a short list of all (inputs not echoed)."""
    errors = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = e.get("msg", "invalid value")
        if e.get("type") == "json_invalid":
            loc, msg = "body", f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')})"
        errors.append({"field": loc, "message": msg, "type": e.get("type", "value_error")})
    if not errors:
        return "The request is not valid.", []
    first = errors[0]
    return f"Invalid request: {first['field']}: {first['message']}.", errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = describe_validation(exc)
        return error_response(request.url.path, 422, message, errors=errors)

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return error_response(request.url.path, 422, str(exc))

    @app.exception_handler(LLMUnavailable)
    async def llm_down(request: Request, exc: LLMUnavailable) -> JSONResponse:
        return error_response(request.url.path, 503, f"The language model is unavailable: {exc}.")

    @app.exception_handler(LLMRequestError)
    async def llm_refused(request: Request, exc: LLMRequestError) -> JSONResponse:
        return error_response(request.url.path, 400, f"The language model refused the request: {exc}.")

    @app.exception_handler(EmbeddingError)
    async def embedder_down(request: Request, exc: EmbeddingError) -> JSONResponse:
        return error_response(request.url.path, 503, f"The embedding model is unavailable: {exc}")

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error on %s: %s", request.url.path, exc)
        return error_response(request.url.path, 503, f"The document store is unavailable: {exc}")


class LastResort:
    """A bug must not reach the client as a stack trace: log it, answer a plain 500.

    Pure ASGI and outside FastAPI's own handlers, which only see what the routes raise.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            # The path and method only: headers (API keys) are never logged.
            log.exception("unhandled error %s on %s %s", incident, scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(scope.get("path", ""), 500,
                                      f"Internal error (incident {incident}); the server log has the details.")
            await response(scope, receive, send)
