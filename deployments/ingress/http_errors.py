"""The one JSON error shape: seed 001's success/message/error plus seed 003's detail/error_code/status_code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from deployments.errors import ServiceError

logger = logging.getLogger(__name__)

HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE",
                    415: "UNSUPPORTED_MEDIA_TYPE"}


class OpenAIError(BaseModel):
    """OpenAI's error object: what its clients read the message from (`error.message`)."""

    message: str
    type: str
    code: str
    param: str | None = None


class ErrorBody(BaseModel):
    success: bool = False
    message: str
    error: str | OpenAIError  # the object on OpenAI-compatible /v1/ routes, a short summary elsewhere
    error_code: str
    detail: str = Field(description="The message again, under seed 003's (and FastAPI's) name for it.")
    status_code: int = Field(description="The HTTP status, in the body too, as seed 003's clients read it.")
    model_state: dict | None = Field(None, description="The model's lifecycle, on errors about its state "
                                     "(503 while it starts).")
    request_id: str | None = Field(None, description="The request's X-Request-ID (echoed in the response "
                                   "headers and in the service's JSON logs): quote it when reporting an error.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 502, 503, 504)}


def error_response(request: Request, status: int, message: str, error: str, error_code: str,
                   headers: dict[str, str] | None = None, model_state: dict | None = None) -> JSONResponse:
    if request.url.path.startswith("/v1/"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        error = OpenAIError(message=message, type=kind, code=error_code.lower())
    body = ErrorBody(message=message, error=error, error_code=error_code, detail=message, status_code=status,
                     model_state=model_state, request_id=request.headers.get("x-request-id"))
    content = body.model_dump()
    for optional in ("model_state", "request_id"):
        if content[optional] is None:
            del content[optional]
    return JSONResponse(status_code=status, content=content, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    cause = getattr(exc, "cause", exc)  # errors raised in another replica arrive wrapped by Ray
    return error_response(request, cause.status_code, cause.message, cause.error, cause.error_code,
                          getattr(cause, "headers", None), getattr(cause, "model_state", None))


def validation_message(exc: RequestValidationError) -> str:
    """'Invalid request: field: problem; ...' for a body that failed validation."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "Invalid request: " + "; ".join(problems)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(request, 400, validation_message(exc), "Invalid request", "VALIDATION_ERROR")


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    message = str(exc.detail)
    services = getattr(request.app.state, "services", None)
    if exc.status_code == 413 and services is not None:  # the body cap counted more bytes than it allows
        message = f"Request body exceeds this route's limit (at most {services.settings.max_upload_bytes} bytes)"
    return error_response(request, exc.status_code, message, code.replace("_", " ").capitalize(), code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.scope.get("method", "WEBSOCKET"), request.url.path)
    return error_response(request, 500, f"Internal error while handling {request.url.path}: {type(exc).__name__}",
                          "Internal error", "INTERNAL_ERROR")
