"""Chat over HTTP against the real app: tiny random Qwen2 and Mistral models from the test hub.

Answers of random weights are gibberish, but they are deterministic for a seed, which is what
these tests lean on: stream vs plain, alone vs batched, stop sequences, jobs vs routes.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.tiny_chat import MAX_POSITIONS, MISTRAL_REPO, QWEN_REPO

QWEN = "qwen2.5-0.5b-instruct"
MISTRAL = "mistral-7b-instruct"
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
         "AAAABJRU5ErkJggg==")
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def tokenizers(hub):
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(hub.repos[repo].files["config.json"].source.parent)
            for name, repo in ((QWEN, QWEN_REPO), (MISTRAL, MISTRAL_REPO))}


def template_tokens(tokenizer, messages) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])


def chat(client, **body):
    reply = client.post("/v1/chat/completions", json={"model": QWEN, "messages": CONVERSATION, **body})
    assert reply.status_code == 200, reply.text
    return reply


def content(reply) -> str:
    return reply.json()["choices"][0]["message"]["content"]


def sse_chunks(service, body: dict) -> list:
    """The raw `data:` payloads of a streamed reply, in order."""
    import httpx

    with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, timeout=120) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line.removeprefix("data: ") for line in lines]


def test_openai_client_stream_matches_plain_answer(service):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{service}/v1", api_key="unused")
    ask = {"model": QWEN_REPO, "messages": CONVERSATION, "max_tokens": 24, "temperature": 1.0, "seed": 7}
    plain = openai.chat.completions.create(**ask)
    assert plain.model == QWEN and plain.object == "chat.completion"  # the catalog id, whatever name was asked
    assert plain.choices[0].message.role == "assistant" and plain.choices[0].message.content
    chunks = list(openai.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # pieces, not one lump
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()
    other_seed = openai.chat.completions.create(**{**ask, "seed": 8})
    assert other_seed.choices[0].message.content != plain.choices[0].message.content


def test_raw_stream_is_server_sent_events_ending_with_done(service):
    body = {"model": QWEN, "messages": CONVERSATION, "max_tokens": 8, "seed": 3, "stream": True}
    payloads = sse_chunks(service, body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage


def test_usage_counts_the_template_and_every_turn(client, tokenizers):
    first = chat(client, max_tokens=12, seed=11).json()
    assert first["usage"]["prompt_tokens"] == template_tokens(tokenizers[QWEN], CONVERSATION)
    assert first["choices"][0]["finish_reason"] == "length" and first["usage"]["completion_tokens"] == 12
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + 12
    longer = CONVERSATION + [{"role": "assistant", "content": first["choices"][0]["message"]["content"]},
                             {"role": "user", "content": "And of Germany?"}]
    second = chat(client, messages=longer, max_tokens=4, seed=11).json()
    expected = template_tokens(tokenizers[QWEN], longer)
    assert second["usage"]["prompt_tokens"] == expected
    assert expected - first["usage"]["prompt_tokens"] == (template_tokens(tokenizers[QWEN], longer)
                                                         - template_tokens(tokenizers[QWEN], CONVERSATION)) > 10
    # OpenAI's developer role and text parts read as a system turn and plain text
    parts = [{"role": "developer", "content": CONVERSATION[0]["content"]},
             {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "the capital "
                                                                                  "of France?"}]}]
    assert chat(client, messages=parts, max_tokens=1).json()["usage"] == chat(client, max_tokens=1).json()["usage"]
    # without a system turn, Qwen's template adds its default one, and the count includes it
    alone = chat(client, messages=CONVERSATION[1:], max_tokens=2).json()
    assert alone["usage"]["prompt_tokens"] == template_tokens(tokenizers[QWEN], CONVERSATION[1:])


def test_stop_sequences_cut_the_answer(client, service):
    full = content(chat(client, max_tokens=30, seed=21, temperature=1.0))
    at = next(i for i in range(3, len(full) - 1) if full[i:i + 2].isalnum())
    stop = full[at:at + 2]
    cut = full[:full.find(stop)]
    for stops in (stop, [stop, "never-appears"]):
        reply = chat(client, max_tokens=30, seed=21, temperature=1.0, stop=stops).json()
        assert reply["choices"][0]["message"]["content"] == cut
        assert reply["choices"][0]["finish_reason"] == "stop"
    body = {"model": QWEN, "messages": CONVERSATION, "max_tokens": 30, "seed": 21, "temperature": 1.0,
            "stop": stop, "stream": True}
    chunks = [json.loads(p) for p in sse_chunks(service, body)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == cut
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests_share_a_batch_and_keep_their_answers(client, service):
    asks = [{"model": QWEN, "messages": [{"role": "user", "content": "hello " * (i + 1)}],
             "max_tokens": 6 + 3 * i, "seed": 100 + i, "temperature": 1.0} for i in range(5)]
    asks.append({**asks[0], "model": MISTRAL, "seed": 7})
    alone = [content(client.post("/v1/chat/completions", json=ask)) for ask in asks]

    def plain(ask):
        reply = client.post("/v1/chat/completions", json=ask)
        return content(reply), int(reply.headers["X-Batch-Size"])

    def streamed(ask):
        chunks = [json.loads(p) for p in sse_chunks(service, {**ask, "stream": True})[:-1]]
        return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks), None

    with ThreadPoolExecutor(len(asks) + 1) as pool:
        futures = [pool.submit(plain, ask) for ask in asks] + [pool.submit(streamed, asks[1])]
        results = [f.result() for f in futures]
    assert [text for text, _ in results] == alone + [alone[1]]
    assert max(size for _, size in results[:-1]) > 1


def test_seed_003_llm_route(client):
    started = time.perf_counter()
    reply = client.post("/api/llm", json={"messages": CONVERSATION, "model": MISTRAL_REPO, "max_tokens": 16,
                                          "temperature": 0.7})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True and body["model"] == MISTRAL and isinstance(body["response"], str)
    assert body["finish_reason"] in ("stop", "length") and 1 <= body["usage"]["completion_tokens"] <= 16
    assert body["truncated"] == (body["finish_reason"] == "length")
    assert 0 < body["processing_time"] < time.perf_counter() - started
    assert reply.headers["X-Batch-Size"] == "1"
    # the seed it drew is returned, and asking with it gives the same answer
    again = client.post("/api/llm", json={"messages": CONVERSATION, "model": MISTRAL, "max_tokens": 16,
                                          "temperature": 0.7, "seed": body["seed"]}).json()
    assert again["response"] == body["response"]
    default = client.post("/api/llm", json={"messages": CONVERSATION, "max_tokens": 4}).json()
    assert default["model"] == QWEN


def test_bad_chat_requests_name_the_problem(client, tokenizers):
    prompt = template_tokens(tokenizers[QWEN], CONVERSATION)
    room = MAX_POSITIONS - prompt
    ok = {"model": QWEN, "messages": CONVERSATION}
    cases = [
        ({**ok, "messages": []}, 400, "Invalid request: messages: messages must hold at least one message"),
        ({"model": QWEN}, 400, "Invalid request: messages: Field required"),
        ({**ok, "messages": [{"role": "robot", "content": "x"}]}, 400,
         "Invalid request: messages.0.role: role 'robot' is not supported; use system, user, assistant or tool"),
        ({**ok, "messages": [{"role": "tool", "content": "x"}]}, 400,
         "a tool message needs the tool_call_id of the call it answers"),
        ({**ok, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PIXEL}}]}]},
         400, f"Model '{QWEN}' takes no images; chat models that do: qwen2-vl-2b-instruct"),
        ({**ok, "n": 2}, 400, "Invalid request: n: n=2 is not supported; this service returns one choice (n=1)"),
        ({**ok, "temperature": 2.5}, 400, "Invalid request: temperature: Input should be less than or equal to 2"),
        ({**ok, "max_tokens": 0}, 400, "Invalid request: max_tokens: Input should be greater than 0"),
        ({**ok, "stop": ["a", "b", "c", "d", "e"]}, 400,
         "Invalid request: stop: stop must be up to 4 non-empty strings"),
        ({**ok, "functions": [{"name": "f"}]}, 400,
         "functions is not supported by this service (use tools and tool_choice)"),
        ({**ok, "tools": [{"type": "function"}]}, 400, "Invalid request: tools.0.function: Field required"),
        ({**ok, "tool_choice": "required"}, 400, "tool_choice needs tools to choose from"),
        ({**ok, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "not": {"required": ["a"]}}}}}, 400,
         "response_format's schema cannot be enforced while decoding: Unimplemented keys: [\"not\"]"),
        ({**ok, "max_tokens": room + 1}, 400,
         f"max_tokens {room + 1} is too large: the prompt is {prompt} tokens and model '{QWEN}' has a context of "
         f"{MAX_POSITIONS} tokens, so at most {room} can be generated"),
        ({**ok, "max_completion_tokens": 10_000}, 400, f"max_tokens 10000 is too large: the prompt is {prompt}"),
        ({**ok, "messages": [{"role": "user", "content": "word " * (MAX_POSITIONS + 100)}]}, 400,
         f"model '{QWEN}' reads at most {MAX_POSITIONS} tokens including the answer"),
        ({**ok, "model": "gpt-4o"}, 404, f"Model 'gpt-4o' not found for task 'chat'. Known models: {QWEN}, {MISTRAL}"),
        ({**ok, "model": "all-minilm-l6-v2"}, 400, "Model 'all-minilm-l6-v2' is a text-embedding model, not chat"),
        ({**ok, "model": MISTRAL, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
         400,
         f"The chat template of model '{MISTRAL}' rejected the messages: After the optional system message, "
         "conversation roles must alternate user/assistant/user/assistant/..."),
    ]
    for body, status, message in cases:
        for stream in (False, True):  # a streamed request is refused the same way, before any event
            reply = client.post("/v1/chat/completions", json={**body, "stream": stream})
            assert reply.status_code == status, (body, stream, reply.text)
            assert reply.headers["content-type"] == "application/json"
            assert message in reply.json()["message"], (body, reply.json())
    bad_llm = client.post("/api/llm", json={"messages": [{"role": "user", "content": "x"}], "temperature": -1})
    assert bad_llm.status_code == 400
    assert bad_llm.json()["message"] == "Invalid request: temperature: Input should be greater than or equal to 0"


def test_openai_client_sees_errors_as_its_own_exceptions(service):
    import openai

    client = openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="Model 'gpt-4o' not found"):
        client.chat.completions.create(model="gpt-4o", messages=CONVERSATION)
    with pytest.raises(openai.BadRequestError, match="n=3 is not supported"):
        client.chat.completions.create(model=QWEN, messages=CONVERSATION, n=3)


def test_product_description_is_valid_json_whatever_the_weights(client):
    """The listing is written under its JSON schema while decoding: random weights still give one that
    validates, in one go, for each seed and model (the retry loop and 502 of free JSON are gone)."""
    from deployments.families.chat.product import ProductListing

    for seed, mode in ((0, "guided"), (1, "json"), (2, "guided")):
        ask = {"image_description": "A brown leather wallet with six card slots.", "seed": seed, "mode": mode}
        reply = client.post("/api/product-description", json=ask)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["success"] is True and body["model"] == QWEN and body["mode"] == mode
        assert body["attempts"] == 1 and body["seed"] == seed
        product = ProductListing.model_validate(body["product"])
        assert product.title and "\n" not in product.title and product.description
        assert 1 <= len(product.keywords) <= 6 and 1 <= len(product.suggested_categories) <= 3
        assert body["usage"]["completion_tokens"] >= 20  # the JSON's keys alone take more
    again = client.post("/api/product-description", json={**ask, "model": MISTRAL_REPO}).json()
    assert again["model"] == MISTRAL and ProductListing.model_validate(again["product"])
    assert client.post("/api/product-description", json=ask).json()["product"] == body["product"]
    bad = client.post("/api/product-description", json={"image_description": "  ", "mode": "essay"})
    assert bad.status_code == 400
    assert bad.json()["message"] == ("Invalid request: image_description: image_description must not "
                                     "be empty; mode: Input should be 'guided' or 'json'")


def test_a_model_answer_is_parsed_and_validated():
    from deployments.families.chat.product import parse_listing

    listing = parse_listing('Sure! {"title": " Leather\\nwallet ", "description": "Six slots.", '
                            '"keywords": ["wallet", "leather", "wallet"], "suggested_categories": ["Accessories"]}')
    assert listing.title == "Leather wallet" and listing.keywords == ["wallet", "leather"]
    for answer, reason in [("no braces here", "the answer holds no JSON object"),
                           ('{"title": "x",}', "the answer's JSON is invalid"),
                           ('{"title": "x"}', "description: Field required"),
                           ('{"title": "x", "description": "y", "keywords": [], "suggested_categories": ["z"]}',
                            "keywords: List should have at least 1 item")]:
        with pytest.raises(ValueError, match=reason):
            parse_listing(answer)


def test_chat_and_product_jobs_through_api_v1_run(client):
    messages = [{"role": "user", "content": "Say hi"}]
    direct = client.post("/api/llm", json={"messages": messages, "max_tokens": 10, "seed": 9}).json()
    started = client.post("/api/v1/run?wait=60", json={"model": QWEN, "input": {
        "messages": messages, "max_tokens": 10, "seed": 9}})
    assert started.status_code == 200, started.text
    job = started.json()
    assert job["status"] == "completed" and job["task"] == "chat" and job["model"] == QWEN
    assert job["output"]["content"] == direct["response"] and job["output"]["usage"] == direct["usage"]
    product = client.post("/api/v1/run?wait=60", json={"model": QWEN, "input": {
        "image_description": "A navy cotton t-shirt.", "seed": 5}}).json()
    assert product["status"] == "completed" and product["output"]["product"]["title"], product
    refused = client.post("/api/v1/run", json={"model": MISTRAL, "input": {"messages": messages * 2}})
    assert refused.status_code == 400 and "conversation roles must alternate" in refused.json()["message"]
    empty = client.post("/api/v1/run", json={"model": QWEN, "input": {}})
    assert empty.status_code == 400 and empty.json()["message"] == "Invalid request: messages: Field required"


def test_a_vanishing_temperature_answers_as_greedy_decoding_does(client):
    """1e-197 is a valid temperature (ge=0); dividing logits by it overflowed to NaN and failed the request."""
    greedy = content(chat(client, max_tokens=12, seed=3, temperature=0))
    tiny = chat(client, max_tokens=12, seed=3, temperature=1.392420628093016e-197)
    assert tiny.status_code == 200, tiny.text
    assert content(tiny) == greedy
    product = client.post("/api/product-description", json={"image_description": "a red mug",
                                                            "temperature": 1e-197, "seed": 2835})
    assert product.status_code == 200, product.text
