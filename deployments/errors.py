"""Errors that carry their HTTP status and seed 003's error_code.

Families raise these without knowing HTTP; the ingress turns any of them into the one JSON error
shape. They cross Ray process boundaries intact (Ray re-raises the original type).
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500
    error_code = "INTERNAL_ERROR"
    error = "Internal error"

    def __init__(self, message: str, *, error: str | None = None):
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error


class InvalidRequest(ServiceError):
    status_code = 400
    error_code = "VALIDATION_ERROR"
    error = "Invalid request"


class ModelNotFound(ServiceError):
    status_code = 404
    error_code = "MODEL_NOT_FOUND"
    error = "Model does not exist"


class WrongModelTask(ServiceError):
    status_code = 400
    error_code = "WRONG_MODEL_TASK"
    error = "Model cannot do this task"


class ModelUnavailable(ServiceError):
    """The model is known but cannot be served now (download failed, family not deployed)."""

    status_code = 503
    error_code = "MODEL_UNAVAILABLE"
    error = "Model unavailable"
