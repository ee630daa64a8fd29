"""Errors that carry their HTTP status and seed 003's error_code.

Families raise these without knowing HTTP; the ingress turns any of them into the one JSON error
shape. They cross Ray process boundaries intact (Ray re-raises the original type).
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500
    error_code = "INTERNAL_ERROR"
    error = "Internal error"

    def __init__(self, message: str, *, error: str | None = None, headers: dict[str, str] | None = None,
                 model_state: dict | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}  # e.g. Retry-After
        self.model_state = model_state  # the model's lifecycle, where the error is about its state
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


class HubError(ModelUnavailable):
    """A model's files could not be fetched from the hub (seed 003's HUGGINGFACE_API_ERROR)."""

    error_code = "HUGGINGFACE_API_ERROR"


class ModelStarting(ModelUnavailable):
    """The model has no replica ready (scaled to zero, or starting) and the caller would not wait longer."""

    error_code = "MODEL_STARTING"
    error = "Model starting"

    def __init__(self, message: str, retry_after_s: float, model_state: dict | None = None):
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))}, model_state=model_state)


class Overloaded(ServiceError):
    """Serve's back-pressure: the model's queue is full (max_queued_requests)."""

    status_code = 503
    error_code = "SERVICE_OVERLOADED"
    error = "Service overloaded"

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class RequestTimeout(ServiceError):
    """The model did not answer within the request timeout (seed 003's REQUEST_TIMEOUT)."""

    status_code = 504
    error_code = "TIMEOUT_ERROR"
    error = "Request timed out"


class NotFound(ServiceError):
    """An upload, job or file id that does not exist."""

    status_code = 404
    error_code = "NOT_FOUND"
    error = "Not found"


class Conflict(ServiceError):
    """The request is valid but the thing is in the wrong state, e.g. cancelling a finished job."""

    status_code = 409
    error_code = "CONFLICT"
    error = "Conflict"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"
    error = "Upload too large"


class InsufficientStorage(ServiceError):
    """A download that would pass the model cache's quota or the disk's free space."""

    status_code = 507
    error_code = "INSUFFICIENT_STORAGE"
    error = "Insufficient storage"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    error = "Unsupported file type"


class Unauthorized(ServiceError):
    """No API key on a route that needs one."""

    status_code = 401
    error_code = "UNAUTHORIZED"
    error = "API key required"


class Forbidden(ServiceError):
    """An API key that is not one of the configured keys."""

    status_code = 403
    error_code = "FORBIDDEN"
    error = "Invalid API key"


class InvalidApiKey(Forbidden):
    """An API key was sent but is not one of the service's (seed 003's INVALID_API_KEY)."""

    error_code = "INVALID_API_KEY"


class SourceNotAllowed(Forbidden):
    """A run-time model from a hub organisation or S3 bucket that INFERENCE_RUNTIME_MODEL_SOURCES does not list."""

    error_code = "MODEL_SOURCE_NOT_ALLOWED"
    error = "Model source not allowed"


class AdminKeyRequired(Forbidden):
    """A valid user key on a route that manages models: only admin keys may."""

    error_code = "ADMIN_KEY_REQUIRED"
    error = "Admin API key required"


class BadModelOutput(ServiceError):
    """The model answered, but not in a form the service can return (e.g. no valid JSON after retries)."""

    status_code = 502
    error_code = "BAD_MODEL_OUTPUT"
    error = "Model answer unusable"
