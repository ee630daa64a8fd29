"""Chat as agent frameworks use it, against the real app with the tiny random Qwen2 and Mistral models:
tool calls and structured outputs through the official openai client and LangChain (unchanged but for
base_url), image parts to the vision-language model, and continuous batching.

Random weights write gibberish, so every structured answer here validating is the grammar's doing: only
constrained decoding can promise it. Schemas bound their strings and numbers, since a random model
never closes a string on its own.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from tests.families.test_vision import picture

QWEN, MISTRAL, VISION = "qwen2.5-0.5b-instruct", "mistral-7b-instruct", "qwen2-vl-2b-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 16},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["a", "b"],
                   "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 100},
                                  "b": {"type": "integer", "minimum": 0, "maximum": 100}}}}}
TOOLS = [WEATHER, ADD]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, and what is 2 plus 3?"}]


class Forecast(BaseModel):
    city: str = Field(max_length=20)
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)


@pytest.fixture(scope="module")
def openai_client(service):
    from openai import OpenAI

    return OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)


def check_calls(calls, model: str) -> None:
    """Each call names a tool, its arguments validate against that tool's schema, its id is the model's kind."""
    assert calls
    for call in calls:
        assert call.type == "function" and call.function.name in SCHEMAS
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        if model == MISTRAL:  # Mistral's template takes only 9 letters and digits as an id
            assert len(call.id) == 9 and call.id.isalnum(), call.id
        else:
            assert call.id.startswith("call_")


@pytest.mark.parametrize("model", [QWEN, MISTRAL])
def test_required_tool_calls_follow_the_functions_schemas(openai_client, model):
    for seed in range(3):
        reply = openai_client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                                                      seed=seed, temperature=1.0, max_tokens=200)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        check_calls(choice.message.tool_calls, model)
    named = openai_client.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False, seed=7, max_tokens=200)
    calls = named.choices[0].message.tool_calls
    check_calls(calls, model)
    assert [call.function.name for call in calls] == ["add"]

    # the calls and their results go back in the history, rendered by the model's own template
    answered = [{"role": "tool", "tool_call_id": call.id, "content": "5"} for call in calls]
    follow = openai_client.chat.completions.create(
        model=model, messages=[*ASK, named.choices[0].message.model_dump(exclude_none=True), *answered],
        tools=TOOLS, seed=1, max_tokens=8)
    assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert follow.usage.prompt_tokens > named.usage.prompt_tokens  # the call and its result were read


def test_streamed_tool_calls_equal_the_plain_ones(openai_client):
    ask = {"model": QWEN, "messages": ASK, "tools": TOOLS, "tool_choice": "required", "seed": 11, "max_tokens": 200}
    plain = openai_client.chat.completions.create(**ask).choices[0].message.tool_calls
    streamed: dict[int, dict] = {}
    finish = None
    for chunk in openai_client.chat.completions.create(**ask, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = streamed.setdefault(delta.index, {"name": "", "arguments": ""})
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [streamed[i] for i in sorted(streamed)] == [
        {"name": c.function.name, "arguments": c.function.arguments} for c in plain]


def test_tool_choice_auto_and_none(openai_client):
    for choice in ("auto", "none"):
        reply = openai_client.chat.completions.create(model=QWEN, messages=ASK, tools=TOOLS, tool_choice=choice,
                                                      seed=2, max_tokens=30)
        done = reply.choices[0]
        if done.finish_reason == "tool_calls":  # auto: the model may open a call; it then follows the schema
            assert choice == "auto"
            check_calls(done.message.tool_calls, QWEN)
        else:
            assert done.finish_reason in ("stop", "length") and done.message.tool_calls is None
            assert "<tool_call>" not in done.message.content or choice == "auto"


def test_auto_tools_with_a_response_format_answer_calls_or_the_formats_json(openai_client):
    """Either may come: the model decides with its first token (tests/families/test_chat_decoding.py forces
    each); whichever it is validates."""
    form = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": Forecast.model_json_schema()}}
    for seed in range(3):
        done = openai_client.chat.completions.create(model=QWEN, messages=ASK, tools=TOOLS, tool_choice="auto",
                                                     response_format=form, seed=seed, max_tokens=200).choices[0]
        if done.finish_reason == "tool_calls":
            check_calls(done.message.tool_calls, QWEN)
        else:
            assert done.finish_reason == "stop" and done.message.tool_calls is None, done
            Forecast.model_validate_json(done.message.content)


def test_parse_returns_the_pydantic_model_for_both_models(openai_client):
    for model in (QWEN, MISTRAL):
        for seed in range(2):
            completion = openai_client.chat.completions.parse(
                model=model, messages=[{"role": "user", "content": "Forecast for Paris?"}], response_format=Forecast,
                seed=seed, temperature=1.0, max_tokens=200)
            message = completion.choices[0].message
            assert completion.choices[0].finish_reason == "stop"
            assert isinstance(message.parsed, Forecast) and 1 <= message.parsed.days <= 7
            assert json.loads(message.content) == message.parsed.model_dump()


def test_json_object_and_refused_schemas(openai_client, client):
    import openai

    reply = openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Answer in JSON."}], response_format={"type": "json_object"},
        seed=3, max_tokens=60)
    text = reply.choices[0].message.content
    assert text.startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    with pytest.raises(openai.BadRequestError, match=r'Unimplemented keys: \["uniqueItems"\]'):
        openai_client.chat.completions.create(model=QWEN, messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "tags", "schema": {
                "type": "array", "items": {"type": "string"}, "uniqueItems": True}}})
    for body, message in [
            ({"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "mul"}}},
             "tool_choice names function 'mul', which is not among the tools"),
            ({"response_format": {"type": "json_schema"}}, "type json_schema needs a json_schema"),
            ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "String should match pattern")]:
        refused = client.post("/v1/chat/completions", json={"model": QWEN, "messages": ASK, **body})
        assert refused.status_code == 400 and message in refused.json()["message"], refused.text


def test_langchain_bind_tools_and_structured_output(service):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    class AddInput(BaseModel):
        a: int = Field(ge=0, le=100)
        b: int = Field(ge=0, le=100)

    @tool(args_schema=AddInput)
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = ChatOpenAI(base_url=f"{service}/v1", api_key="unused", model=QWEN, max_tokens=200, temperature=1.0,
                     seed=4, max_retries=0)
    message = llm.bind_tools([add], tool_choice="add").invoke("What is 2 plus 3?")
    assert [call["name"] for call in message.tool_calls] == ["add"]
    AddInput.model_validate(message.tool_calls[0]["args"])
    assert add.invoke(message.tool_calls[0]["args"]) == sum(message.tool_calls[0]["args"].values())
    forecast = llm.with_structured_output(Forecast, method="json_schema").invoke("Forecast for Paris?")
    assert isinstance(forecast, Forecast) and 1 <= forecast.days <= 7


def test_image_parts_go_to_the_vision_language_model(openai_client, client):
    url = "data:image/png;base64," + base64.b64encode(picture(3)).decode()
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]
    reply = openai_client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": content}],
                                                  max_tokens=6, seed=1)
    assert reply.model == VISION and reply.choices[0].finish_reason in ("stop", "length")
    assert 1 <= reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 10  # the image's patches count
    again = openai_client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": content}],
                                                  max_tokens=6, seed=1, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again) == reply.choices[0].message.content
    # streamed as it is decoded, token by token, not whole at the end
    sampled = {"model": VISION, "messages": [{"role": "user", "content": content}], "max_tokens": 16,
               "temperature": 1.0, "seed": 5}
    pieces = [c.choices[0].delta.content for c in openai_client.chat.completions.create(**sampled, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3 and "".join(pieces) == openai_client.chat.completions.create(
        **sampled).choices[0].message.content, pieces
    # a response_format holds the vision-language model's answer to its schema too
    for seed in range(2):
        parsed = openai_client.chat.completions.parse(
            model=VISION, messages=[{"role": "user", "content": content}], response_format=Forecast, seed=seed,
            temperature=1.0, max_tokens=200).choices[0]
        assert parsed.finish_reason == "stop" and isinstance(parsed.message.parsed, Forecast)
    for body, status, message in [
            ({"model": QWEN}, 400, f"Model '{QWEN}' takes no images; chat models that do: {VISION}"),
            ({"model": VISION, "tools": [ADD]}, 400, f"Model '{VISION}' takes no tools; chat models that do: "),
            ({"model": VISION, "url": "data:image/png;base64,@@@"}, 400, "the data URL's base64 is not valid"),
            ({"model": VISION, "url": "data:text/plain,hi"}, 400, "a data URL must be data:image/<type>;base64"),
            ({"model": VISION, "url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 400,
             "image 1"),
            ({"model": VISION, "url": "http://10.0.0.1/cat.png"}, 400, "private")]:
        parts = [{"type": "image_url", "image_url": {"url": body.pop("url", url)}}]
        refused = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}], **body})
        assert refused.status_code == status and message in refused.json()["message"], refused.text


def test_concurrent_image_chats_share_a_generate_and_keep_their_answers(client):
    """Image chats that arrive while one decodes share the next generate (X-Batch-Size), left-padded, each
    with its own picture, and each answers as it does alone."""
    def ask(i: int) -> dict:
        url = "data:image/png;base64," + base64.b64encode(picture(10 + i, size=(64 + 16 * i, 48))).decode()
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe " * (i + 1)}]
        return {"model": VISION, "messages": [{"role": "user", "content": content}], "max_tokens": 8 + 4 * i,
                "seed": i, "temperature": 1.0}

    def answer(i: int) -> tuple[str, int]:
        reply = client.post("/v1/chat/completions", json=ask(i))
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"], int(reply.headers["X-Batch-Size"])

    alone = [answer(i) for i in range(5)]
    assert {size for _, size in alone} == {1}
    with ThreadPoolExecutor(5) as pool:
        together = list(pool.map(answer, range(5)))
    assert [text for text, _ in together] == [text for text, _ in alone]
    assert max(size for _, size in together) > 1, together


def test_a_short_request_does_not_wait_for_a_long_one(service):
    """Continuous batching: a request arriving while a long answer decodes joins it at the next step and
    leaves when done, instead of waiting for the long answer's 400 tokens."""
    long_done = threading.Event()
    long_tokens: list[int] = []

    def long_answer(started: threading.Event) -> None:
        body = {"model": QWEN, "messages": ASK, "max_tokens": 400, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=120) as reply:
            for line in reply.iter_lines():
                started.set()
                if line.startswith("data: {") and json.loads(line[6:]).get("usage"):
                    long_tokens.append(json.loads(line[6:])["usage"]["completion_tokens"])
        long_done.set()

    started = threading.Event()
    worker = threading.Thread(target=long_answer, args=(started,))
    worker.start()
    assert started.wait(60)
    began = time.perf_counter()
    short = httpx.post(f"{service}/v1/chat/completions", json={"model": QWEN, "messages": ASK, "max_tokens": 4,
                                                                "temperature": 0}, timeout=60)
    took = time.perf_counter() - began
    answered_first = not long_done.is_set()
    worker.join(120)
    assert short.status_code == 200 and short.json()["usage"]["completion_tokens"] == 4
    assert answered_first, "the short request waited for the long one"
    assert short.headers["X-Batch-Size"] == "2", "it decoded beside the long one"
    assert long_tokens == [400], long_tokens  # greedy decoding of the tiny model writes the whole length
    print(f"short request answered in {took:.2f} s while the long one decoded")
