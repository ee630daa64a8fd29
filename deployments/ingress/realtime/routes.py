"""/v1/realtime: OpenAI's Realtime API over WebSocket. `?intent=transcription` opens a transcription session,
`?model=<chat model>` a conversation. Keys as on every route (the header, or for browsers the
`openai-insecure-api-key.<key>` subprotocol); sessions at once, their length, idle time, event size and the
buffered audio are bounded by settings, and an over-limit session is told why in an `error` event."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from deployments.errors import ServiceError
from deployments.ingress.realtime.config import initial_session
from deployments.ingress.realtime.events import RealtimeError, event, new_id
from deployments.ingress.realtime.session import Session
from deployments.ingress.services import Services

logger = logging.getLogger(__name__)
router = APIRouter(tags=["realtime"])
SUBPROTOCOL = "realtime"  # what OpenAI's browser examples offer beside the key
OUTGOING_EVENTS = 256  # events waiting for a slow client before the session's work waits for it
_open_sessions: set[str] = set()  # this ingress replica's sessions


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, model: str | None = None, intent: str | None = None) -> None:
    services: Services = websocket.app.state.services
    settings = services.settings
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    session_id = new_id("sess")
    if len(_open_sessions) >= settings.realtime_max_sessions:
        await _refuse(websocket, RealtimeError(
            f"This server holds {settings.realtime_max_sessions} realtime sessions at once "
            "(INFERENCE_REALTIME_MAX_SESSIONS); try again shortly", "session_limit_reached", kind="server_error"),
            code=1013)
        return
    outgoing: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTGOING_EVENTS)
    try:
        session = _open(services, outgoing.put, session_id, model, intent)
    except (RealtimeError, ServiceError) as refused:
        await _refuse(websocket, _as_realtime(refused), code=1008)
        return
    _open_sessions.add(session_id)
    sender = asyncio.create_task(_send_all(websocket, outgoing))
    try:
        await outgoing.put(event("session.created", session=session.config.wire()))
        async with asyncio.timeout(settings.realtime_session_seconds):
            await _receive_all(websocket, session, outgoing, settings.realtime_idle_seconds,
                               settings.realtime_event_bytes)
    except TimeoutError:
        await outgoing.put(RealtimeError(f"The session reached its length limit of {settings.realtime_session_seconds}"
                                         " s (INFERENCE_REALTIME_SESSION_SECONDS)", "session_expired").event(None))
    except WebSocketDisconnect:
        pass
    finally:
        _open_sessions.discard(session_id)
        await session.close()
        await outgoing.put(None)
        await asyncio.wait([sender], timeout=5)
        sender.cancel()


def _open(services: Services, send: Any, session_id: str, model: str | None, intent: str | None) -> Session:
    if intent not in (None, "transcription"):
        raise RealtimeError(f"Unknown intent {intent!r}: use intent=transcription, or model=<chat model> for a "
                            "conversation", "invalid_value", param="intent")
    kind = "transcription" if intent == "transcription" or (intent is None and model is None) else "realtime"
    chat = services.model_for("chat", model) if kind == "realtime" else None
    expires_at = int(time.time() + services.settings.realtime_session_seconds)
    transcriber = services.model_for("speech-to-text", None).id
    config = initial_session(kind, session_id, chat.id if chat else None, transcriber, "alloy", expires_at)
    return Session(services, send, config, chat)


async def _receive_all(websocket: WebSocket, session: Session, outgoing: asyncio.Queue, idle_s: float,
                       event_bytes: int) -> None:
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), idle_s)
        except TimeoutError:
            await outgoing.put(RealtimeError(f"No client event for {idle_s:g} s (INFERENCE_REALTIME_IDLE_SECONDS): "
                                             "the session is closed", "session_idle").event(None))
            return
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data: str | bytes = message.get("text") or message.get("bytes") or b""
        client_event: dict[str, Any] = {}
        try:
            if len(data) > event_bytes:
                raise RealtimeError(f"A client event may be {event_bytes} bytes at most "
                                    f"(INFERENCE_REALTIME_EVENT_BYTES); this one was {len(data)}",
                                    "event_too_large")
            client_event = _parsed(data)
            await session.handle(client_event)
        except (RealtimeError, ServiceError) as refused:
            await outgoing.put(_as_realtime(refused).event(_event_id(client_event)))
        except Exception:  # a defect: said as an error event; the session goes on
            logger.exception("realtime event %s failed", client_event.get("type"))
            await outgoing.put(RealtimeError("The server failed on this event; see its log", "internal_error",
                                             kind="server_error").event(_event_id(client_event)))


def _event_id(client_event: dict[str, Any]) -> str | None:
    event_id = client_event.get("event_id")
    return event_id if isinstance(event_id, str) else None


def _parsed(data: str | bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise RealtimeError(f"A client event is one JSON object: {bad}", "invalid_json") from None
    if not isinstance(parsed, dict):
        raise RealtimeError("A client event is one JSON object with a 'type'", "invalid_json")
    return parsed


async def _send_all(websocket: WebSocket, outgoing: asyncio.Queue) -> None:
    while (server_event := await outgoing.get()) is not None:
        try:
            await websocket.send_text(json.dumps(server_event))
        except (WebSocketDisconnect, RuntimeError):
            return  # the client left; the receiving side ends the session


async def _refuse(websocket: WebSocket, error: RealtimeError, code: int) -> None:
    await websocket.send_text(json.dumps(error.event(None)))
    await websocket.close(code=code, reason=error.code)


def _as_realtime(error: RealtimeError | ServiceError) -> RealtimeError:
    if isinstance(error, RealtimeError):
        return error
    kind = "invalid_request_error" if error.status_code < 500 else "server_error"
    return RealtimeError(error.message, error.error_code.lower(), kind=kind)
