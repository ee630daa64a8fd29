"""/v1/realtime with the official openai client, unchanged but for base_url: a transcription session and a
voice conversation, spoken by espeak-ng. Every server event is checked against the client's own types."""

from __future__ import annotations

import base64
import json
import time
from typing import get_args

import numpy as np
import openai
import pytest
from openai.types.realtime import RealtimeServerEvent

from tests.realtime.speech import RATE, appends, spoken

# the client's model of each server event, by its type
SERVER_EVENTS = {get_args(model.model_fields["type"].annotation)[0]: model
                 for model in get_args(get_args(RealtimeServerEvent)[0])}


def checked(raw: dict) -> dict:
    """`raw` validated as the protocol's model of its type (every field, strictly as the client reads it)."""
    SERVER_EVENTS[raw["type"]].model_validate(raw)
    return raw
CHAT = "qwen2.5-0.5b-instruct"


@pytest.fixture(scope="module")
def client(service):
    return openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)


def events_until(connection, last_type: str, timeout_s: float = 120) -> list[dict]:
    """Server events, each validated as the protocol's type, up to and including the first `last_type`."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = checked(json.loads(connection.recv_bytes()))
        seen.append(raw)
        assert raw["type"] != "error", raw
        if raw["type"] == last_type:
            return seen
    raise AssertionError(f"no {last_type} within {timeout_s} s; saw {[e['type'] for e in seen]}")


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_a_transcription_session_detects_the_turn_and_transcribes_it(client):
    speech = spoken("Hello there, what is the weather like today?", silence_before_s=0.6)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        created = events_until(connection, "session.created")[-1]
        assert created["session"]["type"] == "transcription"
        connection.session.update(session={
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "whisper-1", "language": "en"},
                                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                                   "silence_duration_ms": 400}}}})
        updated = events_until(connection, "session.updated")[-1]["session"]
        assert updated["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
        for append in appends(speech):
            connection.send(json.loads(append))
        seen = events_until(connection, "conversation.item.input_audio_transcription.completed")
    order = types(seen)
    assert order.index("input_audio_buffer.speech_started") < order.index("input_audio_buffer.speech_stopped") \
        < order.index("input_audio_buffer.committed") < order.index("conversation.item.added")
    started = next(e for e in seen if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in seen if e["type"] == "input_audio_buffer.speech_stopped")
    committed = next(e for e in seen if e["type"] == "input_audio_buffer.committed")
    completed = seen[-1]
    # espeak-ng starts speaking 0.6 s in and speaks about 2.6 s
    assert 450 <= started["audio_start_ms"] <= 900, started
    assert 2600 <= stopped["audio_end_ms"] <= 3600, stopped
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == completed["item_id"]
    # the committed turn: the speech, the prefix padding before it, the silence that ended it
    heard_s = completed["usage"]["seconds"]
    assert (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000 < heard_s < 4.5, completed
    assert isinstance(completed["transcript"], str)


def test_a_conversation_answers_a_spoken_turn_with_audio_and_its_transcript(client):
    with client.realtime.connect(model=CHAT) as connection:
        created = events_until(connection, "session.created")[-1]["session"]
        assert created["type"] == "realtime" and created["model"] == CHAT
        connection.session.update(session={"type": "realtime", "instructions": "Answer in one short sentence.",
                                           "max_output_tokens": 12, "audio": {"output": {"voice": "alloy"}}})
        events_until(connection, "session.updated")
        for append in appends(spoken("What is the capital of France?")):
            connection.send(json.loads(append))
        seen = events_until(connection, "response.done")
    order = types(seen)
    assert "conversation.item.input_audio_transcription.completed" in order
    done = seen[-1]["response"]
    assert done["status"] == "completed", done
    assert 0 < done["usage"]["output_tokens"] <= 12 and done["usage"]["input_tokens"] > 0
    audio = b"".join(base64.b64decode(e["delta"]) for e in seen if e["type"] == "response.output_audio.delta")
    transcript = "".join(e["delta"] for e in seen if e["type"] == "response.output_audio_transcript.delta")
    answer = done["output"][0]
    assert answer["role"] == "assistant" and answer["content"][0]["transcript"] == transcript
    if any(c.isalnum() for c in transcript):  # the tiny model's random words: spoken, 24 kHz 16-bit
        assert len(audio) % 2 == 0 and len(audio) / 2 / RATE > 0.05
        assert np.abs(np.frombuffer(audio, "<i2")).max() > 0
    assert order.index("response.created") < order.index("response.output_item.added") \
        < order.index("response.content_part.added") < order.index("response.output_audio_transcript.done") \
        < order.index("response.output_item.done") < order.index("response.done")


def test_a_conversation_takes_text_turns_and_answers_in_text(client):
    with client.realtime.connect(model=CHAT) as connection:
        events_until(connection, "session.created")
        connection.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Say hello."}]})
        events_until(connection, "conversation.item.done")
        connection.response.create(response={"output_modalities": ["text"], "max_output_tokens": 8})
        seen = events_until(connection, "response.done")
    text = "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta")
    done = seen[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert "response.output_audio.delta" not in types(seen)
    assert 0 < done["usage"]["output_tokens"] <= 8


ADD = {"type": "function", "name": "add", "description": "Add two numbers.",
       "parameters": {"type": "object", "required": ["a", "b"],
                      "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 100},
                                     "b": {"type": "integer", "minimum": 0, "maximum": 100}}}}


def test_a_conversation_calls_a_function_and_answers_with_its_result(client):
    """tool_choice required: the answer is a function_call item whose arguments validate (the grammar's doing,
    on random weights); the client's function_call_output goes back into the conversation the model reads."""
    import jsonschema

    with client.realtime.connect(model=CHAT) as connection:
        events_until(connection, "session.created")
        connection.session.update(session={"type": "realtime", "tools": [ADD], "tool_choice": "required",
                                           "output_modalities": ["text"], "seed": 3, "max_output_tokens": 200})
        assert events_until(connection, "session.updated")[-1]["session"]["tools"][0]["name"] == "add"
        connection.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "What is 2 plus 3?"}]})
        events_until(connection, "conversation.item.done")
        connection.response.create()
        seen = events_until(connection, "response.done")
        done = seen[-1]["response"]
        assert done["status"] == "completed", done
        calls = [item for item in done["output"] if item["type"] == "function_call"]
        assert calls and [item["type"] for item in done["output"]] == ["function_call"] * len(calls), done["output"]
        argued = [e for e in seen if e["type"] == "response.function_call_arguments.done"]
        assert [(e["call_id"], e["name"], e["arguments"]) for e in argued] == [
            (c["call_id"], c["name"], c["arguments"]) for c in calls]
        for call in calls:
            assert call["name"] == "add" and call["status"] == "completed"
            jsonschema.validate(json.loads(call["arguments"]), ADD["parameters"])
        prompt = done["usage"]["input_tokens"]

        # the result goes back; a result for a call that was never made is refused
        connection.conversation.item.create(item={"type": "function_call_output", "call_id": "call_nobody_made",
                                                  "output": "5"})
        refused = json.loads(connection.recv_bytes())
        assert refused["type"] == "error" and refused["error"]["code"] == "item_not_found", refused
        for call in calls:
            connection.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                                      "output": "5"})
            assert events_until(connection, "conversation.item.done")[-1]["item"]["output"] == "5"
        connection.session.update(session={"type": "realtime", "tool_choice": "none", "max_output_tokens": 6})
        events_until(connection, "session.updated")
        connection.response.create()
        answer = events_until(connection, "response.done")[-1]["response"]
    assert answer["status"] == "completed" and answer["output"][0]["type"] == "message", answer
    assert answer["usage"]["input_tokens"] > prompt  # the calls and their results were read


def test_tools_for_a_model_that_takes_none_are_refused(client):
    with client.realtime.connect(model="mistral-7b-instruct-v0.1") as connection:
        events_until(connection, "session.created")
        connection.session.update(session={"type": "realtime", "tools": [ADD]})
        refused = json.loads(connection.recv_bytes())
        assert refused["type"] == "error" and refused["error"]["param"] == "session.tools", refused
        assert "does not take tools; models that do: " in refused["error"]["message"]
        connection.session.update(session={"type": "realtime", "tools": [{**ADD, "type": "mcp"}]})
        refused = json.loads(connection.recv_bytes())
        assert "'mcp' tools are not supported here" in refused["error"]["message"], refused
