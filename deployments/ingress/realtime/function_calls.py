"""Function calling in a realtime conversation, in the GA protocol's shapes: the model's calls become
`function_call` items, the client answers each with a `function_call_output` item (conversation.item.create),
and the conversation with both is handed to the chat model as its template reads tool calls and results."""

from __future__ import annotations

import json
from typing import Any

from deployments.ingress.realtime.events import RealtimeError, item_text

MAX_OUTPUT_CHARS = 100_000  # a function's result, as the client sends it back


def call_item(item_id: str, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A `function_call` item from one of the chat family's tool calls (OpenAI's chat shape)."""
    return {"id": item_id, "type": "function_call", "object": "realtime.item", "status": status,
            "name": call["function"]["name"], "call_id": call["id"],
            "arguments": call["function"]["arguments"] if status == "completed" else ""}


def client_item(item: dict[str, Any], items: dict[str, dict[str, Any]], item_id: str) -> dict[str, Any]:
    """A `function_call` or `function_call_output` item a client creates, checked: a result must answer a
    call in the conversation, a call's arguments must be a JSON object."""
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 64:
        raise RealtimeError("A function item needs 'call_id' (a string of at most 64 characters)", "invalid_value",
                            param="item.call_id")
    if item["type"] == "function_call_output":
        output = item.get("output")
        if not isinstance(output, str) or len(output) > MAX_OUTPUT_CHARS:
            raise RealtimeError(f"'output' is the function's result as text (at most {MAX_OUTPUT_CHARS} "
                                "characters)", "invalid_value", param="item.output")
        if not any(i.get("type") == "function_call" and i.get("call_id") == call_id for i in items.values()):
            raise RealtimeError(f"No function_call item with call_id {call_id!r} in this conversation",
                                "item_not_found", param="item.call_id")
        return {"id": item_id, "type": "function_call_output", "object": "realtime.item", "status": "completed",
                "call_id": call_id, "output": output}
    name, arguments = item.get("name"), item.get("arguments", "{}")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(name, str) or not name or not isinstance(parsed, dict):
        raise RealtimeError("A function_call item needs 'name' and 'arguments' (a JSON object as a string)",
                            "invalid_value", param="item")
    return call_item(item_id, {"id": call_id, "function": {"name": name, "arguments": arguments}})


def chat_messages(items: dict[str, dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """The conversation as chat messages, the instructions first: calls as the assistant's `tool_calls`
    (calls in a row, or after the assistant's words, join that assistant message), results as `tool` turns."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items.values():
        kind = item.get("type")
        if kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"] or "{}"}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        elif (text := item_text(item)) and item.get("role") in ("user", "assistant", "system"):
            messages.append({"role": item["role"], "content": text})
    return messages
