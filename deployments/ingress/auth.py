"""API keys as identities.

No keys configured (`INFERENCE_API_KEYS`, `INFERENCE_ADMIN_API_KEYS`): the service is open, as on a laptop
on loopback. Keys configured: every route needs one except `GET /health` and the console's static files
(`authenticate`, a dependency of the whole app). What a key creates (jobs, uploads, results, saved voices)
records a hash of it, and only that key sees it (`current_owner`, read by the job store's callers). Admin
keys may do everything a user key may, and they alone manage models (`require_admin`).
"""

from __future__ import annotations

import hashlib
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from deployments.errors import AdminKeyRequired, InvalidApiKey, Unauthorized

READ_ONLY_METHODS = {"GET", "HEAD", "OPTIONS"}
# load balancers and probes ask without a key; /ui only redirects to the console's static files
OPEN_ROUTES = {("GET", "/health"), ("HEAD", "/health"), ("GET", "/ui")}
# A browser cannot set headers on a WebSocket: it offers the key as a subprotocol, as OpenAI's Realtime API reads it.
KEY_SUBPROTOCOL = "openai-insecure-api-key."


class _Bearer(HTTPBearer):
    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        return await super().__call__(request)  # reads only the headers: WebSockets too


class _HeaderKey(APIKeyHeader):
    async def __call__(self, request: HTTPConnection) -> str | None:
        return await super().__call__(request)


# Shown as security schemes in /openapi.json (so /docs has an Authorize button); neither refuses by itself.
BEARER = _Bearer(auto_error=False, description="Authorization: Bearer <key> (what the OpenAI client sends)")
HEADER_KEY = _HeaderKey(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


@dataclass(frozen=True)
class Caller:
    owner: str | None  # hash of the caller's key; None: no keys configured, or a trusted Python caller
    admin: bool


TRUSTED = Caller(owner=None, admin=True)
# Unset for Python callers through Serve handles: they run inside the cluster, trusted, and see every owner's jobs.
CALLER: ContextVar[Caller | None] = ContextVar("caller", default=None)


def caller() -> Caller:
    return CALLER.get() or TRUSTED


# A client's `Idempotency-Key`: a request replayed with the same key (by the client, or by HAProxy after an
# ingress replica died under it) returns the job the first one created instead of creating another.
IDEMPOTENCY_KEY: ContextVar[str | None] = ContextVar("idempotency_key", default=None)


def current_owner() -> str | None:
    """Whose request this is: rows are recorded with it and read only by it (None: no scoping)."""
    return caller().owner


def owner_of(key: str) -> str:
    """What rows record of a key: a hash, so the database never holds a usable key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _known(key: str, keys: list[str]) -> bool:
    return any(secrets.compare_digest(key.encode(), known.encode()) for known in keys)


async def authenticate(request: HTTPConnection, bearer: HTTPAuthorizationCredentials | None = Security(BEARER),
                       header_key: str | None = Security(HEADER_KEY)) -> None:
    """App dependency (HTTP and WebSocket routes): with keys configured, the request's key names the caller,
    or the request is refused."""
    key_header = request.headers.get("idempotency-key", "").strip()
    IDEMPOTENCY_KEY.set(key_header[:200] or None)
    settings = request.app.state.services.settings
    users, admins = settings.api_keys, settings.admin_api_keys
    if not users and not admins:
        CALLER.set(TRUSTED)
        return
    method = request.scope.get("method", "WEBSOCKET")
    route = request.scope.get("route")
    if (method, getattr(route, "path", None)) in OPEN_ROUTES:
        return
    key = (bearer.credentials.strip() if bearer and bearer.credentials.strip() else None) or header_key or \
        _subprotocol_key(request)
    where = f"{method} {request.url.path}"
    if not key:
        raise Unauthorized(f"{where} needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                           + (f" (a browser: the subprotocol '{KEY_SUBPROTOCOL}<key>')" if method == "WEBSOCKET"
                              else ""))
    admin = _known(key, admins)
    if not admin and not _known(key, users):
        raise InvalidApiKey(f"The API key sent is not valid for {where}")
    CALLER.set(Caller(owner=owner_of(key), admin=admin))


def _subprotocol_key(connection: HTTPConnection) -> str | None:
    if connection.scope["type"] != "websocket":
        return None
    offered = (p.strip() for p in connection.headers.get("sec-websocket-protocol", "").split(","))
    return next((p.removeprefix(KEY_SUBPROTOCOL) for p in offered if p.startswith(KEY_SUBPROTOCOL)), None) or None


async def require_admin(request: Request) -> None:
    """Router dependency: the router's state-changing routes manage models, which only admin keys may."""
    if request.method not in READ_ONLY_METHODS and not caller().admin:
        raise AdminKeyRequired(f"{request.method} {request.url.path} manages models: it needs an admin key "
                               "(INFERENCE_ADMIN_API_KEYS)")
