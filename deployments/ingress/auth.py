"""API keys for the routes that change state (uploads, jobs, downloads, deletes, manage).

Keys come from `INFERENCE_API_KEYS`; with none configured the service is open, as on a laptop.
Read-only routes (GET) and inference routes stay open either way.
"""

from __future__ import annotations

import secrets

from fastapi import Request

from deployments.errors import InvalidApiKey, Unauthorized

READ_ONLY_METHODS = {"GET", "HEAD", "OPTIONS"}


def presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` (what the OpenAI client sends) or `X-API-Key: <key>`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def require_api_key_for_changes(request: Request) -> None:
    """Router dependency: a state-changing request must carry one of the configured keys."""
    keys = request.app.state.services.settings.api_keys
    if not keys or request.method in READ_ONLY_METHODS:
        return
    key = presented_key(request)
    if key is None:
        raise Unauthorized(f"{request.method} {request.url.path} needs an API key: send "
                           "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not any(secrets.compare_digest(key.encode(), known.encode()) for known in keys):
        raise InvalidApiKey(f"The API key sent is not valid for {request.method} {request.url.path}")
