"""Server-sent events, as every streaming route writes them: one `data:` line per event, and one shape for an
error that happens after the headers were sent (when a status code can no longer say it)."""

from __future__ import annotations

import json
from typing import Any

from deployments.errors import ServiceError


def sse(data: dict[str, Any] | str) -> str:
    """One event: a JSON object, or a bare word such as OpenAI's [DONE]."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def error_event(error: ServiceError) -> str:
    """The error event of every stream: `type` for clients that switch on it (OpenAI's speech and realtime
    events), `error` with the message and the service's error_code (what OpenAI's clients raise from)."""
    cause = getattr(error, "cause", error)  # a replica's error arrives wrapped by Ray
    return sse({"type": "error", "error": {"message": cause.message, "type": cause.error_code,
                                           "code": cause.status_code}})
