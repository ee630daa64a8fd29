"""How a chat model writes tool calls (the catalog's `specs.tool_calls`), as a grammar and as parsed calls.

hermes (Qwen2.5, Hermes, many others): `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one
block per call. mistral (Mistral v0.3): the `[TOOL_CALLS]` control token, then a JSON list of calls. The
model's own chat template shows it the tools and renders earlier calls and results; the grammar holds each
call's arguments to its function's JSON schema while decoding.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

from deployments.errors import InvalidRequest
from deployments.families.chat.constraints import Grammar, GrammarTokenizer, checked, lark_json


def call_schema(tools: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    """The JSON schema of one call: {"name": <a tool's name>, "arguments": <its parameters>}."""
    functions = [tool["function"] for tool in tools if name is None or tool["function"]["name"] == name]
    if not functions:
        raise InvalidRequest(f"tool_choice names function '{name}', which is not among the tools")
    branches = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                 "properties": {"name": {"const": f["name"]},
                                "arguments": f.get("parameters") or {"type": "object", "properties": {}}}}
                for f in functions]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


class ToolStyle:
    name = ""
    opener = ""  # the token that starts the calls

    def grammar(self, tokenizer: GrammarTokenizer, tools: list[dict[str, Any]], name: str | None,
                parallel: bool) -> Grammar:
        """Calls to `tools` (only `name` when given), one or (parallel) several, from the opener on."""
        trigger = tokenizer.token_id(self.opener)
        if trigger is None:
            raise InvalidRequest(f"This model's tokenizer has no '{self.opener}' token to call tools with")
        text = self._lark(trigger, lark_json(call_schema(tools, name)), parallel)
        return checked(text, tokenizer, "The tools' parameters", calls=True, trigger=trigger)

    def parse(self, text: str, finished: bool = True) -> list[dict[str, Any]] | None:
        """OpenAI tool calls from the model's calls text: all of them once the answer is `finished`, else those
        complete so far; None when it holds no complete, valid call."""
        try:
            calls = self._calls(text, finished)
        except (json.JSONDecodeError, TypeError, AttributeError):
            return None
        if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                and isinstance(c.get("arguments"), dict) for c in calls):
            return None
        return [{"id": self.call_id(), "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for c in calls]

    def call_id(self) -> str:
        return f"call_{secrets.token_hex(12)}"

    def _lark(self, trigger: int, call: str, parallel: bool) -> str:
        raise NotImplementedError

    def _calls(self, text: str, finished: bool) -> list[Any]:
        raise NotImplementedError


class Hermes(ToolStyle):
    name, opener = "hermes", "<tool_call>"

    def _lark(self, trigger: int, call: str, parallel: bool) -> str:
        more = ' ("\\n" call)*' if parallel else ""
        return f'start: call{more}\ncall: <[{trigger}]> "\\n" body "\\n</tool_call>"\nbody: {call}\n'

    def _calls(self, text: str, finished: bool) -> list[Any]:
        return [json.loads(body) for body in re.findall(r"<tool_call>\s*(.*?)\s*</tool_call>", text, re.S)]


class Mistral(ToolStyle):
    name, opener = "mistral", "[TOOL_CALLS]"

    def _lark(self, trigger: int, call: str, parallel: bool) -> str:
        more = ' (", " call)*' if parallel else ""
        return f'start: <[{trigger}]> " [" call{more} "]"\ncall: {call}\n'

    def _calls(self, text: str, finished: bool) -> list[Any]:
        if not finished:  # the list is whole only at the end
            return []
        calls = json.loads(text.strip())
        return calls if isinstance(calls, list) else []

    def call_id(self) -> str:
        """Mistral's template takes only 9 letters and digits as a call id."""
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


STYLES: dict[str, ToolStyle] = {style.name: style for style in (Hermes(), Mistral())}


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates read them: an earlier call's arguments as an object (templates write
    them with `tojson`), not OpenAI's JSON string."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = {**message, "tool_calls": [
                {**call, "function": {**call["function"], "arguments": _loaded(call["function"]["arguments"])}}
                for call in calls]}
        out.append({key: value for key, value in message.items() if value is not None})
    return out


def _loaded(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments
