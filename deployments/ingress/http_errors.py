"""The one JSON error shape (seed 001's success/message/error plus seed 003's error_code)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from deployments.errors import ServiceError

logger = logging.getLogger(__name__)

HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


class ErrorBody(BaseModel):
    success: bool = False
    message: str
    error: str
    error_code: str


ERROR_RESPONSES = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 415, 503)}


def error_response(status: int, message: str, error: str, error_code: str) -> JSONResponse:
    body = ErrorBody(message=message, error=error, error_code=error_code)
    return JSONResponse(status_code=status, content=body.model_dump())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    cause = getattr(exc, "cause", exc)  # errors raised in another replica arrive wrapped by Ray
    return error_response(cause.status_code, cause.message, cause.error, cause.error_code)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return error_response(400, "Invalid request: " + "; ".join(problems), "Invalid request", "VALIDATION_ERROR")


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    code = HTTP_ERROR_CODES.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, str(exc.detail), code.replace("_", " ").capitalize(), code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, f"Internal error while handling {request.url.path}: {type(exc).__name__}",
                          "Internal error", "INTERNAL_ERROR")
