"""Server events of the Realtime API as the GA protocol shapes them (the official client's types validate
every one in the tests), with ids in OpenAI's style, and the error a client event can be refused with."""

from __future__ import annotations

import secrets
from typing import Any


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": new_id("event"), **fields}


class RealtimeError(Exception):
    """A client event refused: sent as an `error` event; the socket stays open for the next one."""

    def __init__(self, message: str, code: str, *, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.code, self.param, self.kind = message, code, param, kind

    def event(self, client_event_id: str | None) -> dict[str, Any]:
        return event("error", error={"type": self.kind, "code": self.code, "message": self.message,
                                     "param": self.param, "event_id": client_event_id})


def user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "object": "realtime.item", "role": "user",
            "status": "completed", "content": [{"type": "input_audio", "transcript": transcript}]}


def message_item(item_id: str, role: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "object": "realtime.item", "role": role, "status": status,
            "content": content}


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as events show it (without what the session keeps beside it, under '_' keys)."""
    return {key: value for key, value in item.items() if not key.startswith("_")}


def item_text(item: dict[str, Any]) -> str:
    """What an item says, for the chat model: its texts and transcripts in order."""
    parts = (part.get("text") or part.get("transcript") or "" for part in item.get("content", []))
    return " ".join(part for part in parts if part).strip()


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"total_tokens": input_tokens + output_tokens, "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0}}
