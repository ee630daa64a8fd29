"""The chat family's running batch in this process, on the tiny random Qwen2: rows that join a batch mid-decode,
or leave it early, give exactly the tokens they give alone, and grammars hold rows to their schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.tiny_chat import build_tiny_qwen


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deployments.families.chat.decoding import ChatModel
    from deployments.families.chat.tools import STYLES
    from deployments.serving.model_loading import generation_dtype
    from deployments.settings import ServiceSettings

    folder = build_tiny_qwen(tmp_path_factory.mktemp("qwen"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # in the dtype the chat deployment picks on this CPU (bfloat16 where it is native)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=generation_dtype("cpu", ServiceSettings())).eval()
    return ChatModel(tokenizer, model, set(model.generation_config.eos_token_id), tokenizer.pad_token_id, 2048,
                     STYLES["hermes"])


def row(qwen, text: str, max_tokens: int, seed: int, **shape):
    from deployments.families.chat.decoding import Row

    prompt = qwen.tokenizer.apply_chat_template([{"role": "user", "content": text}], tools=shape.pop("tools", None),
                                                add_generation_prompt=True, tokenize=False)
    return Row(model="qwen", prompt_ids=qwen.tokenizer(prompt)["input_ids"], max_tokens=max_tokens, temperature=1.0,
               top_p=1.0, top_k=20, seed=seed, stop=[], **shape)


def decode(qwen, rows, join_every: int | None = None) -> list[tuple[str, str, list | None]]:
    """Each row's (text, finish reason, tool calls): all joining at once, or (join_every) one more row joining
    the running batch every `join_every` steps."""
    from deployments.families.chat.decoding import Batch

    batch, steps = Batch(qwen, "cpu"), {id(r): [] for r in rows}
    waiting = list(rows)
    first, waiting = (waiting[:1], waiting[1:]) if join_every else (waiting, [])
    for r, s in zip(first, batch.join(first)):
        steps[id(r)].append(s)
    batch.leave()
    count = 0
    while batch.states or waiting:
        count += 1
        if waiting and count % join_every == 0:
            joining = waiting.pop(0)
            steps[id(joining)] += batch.join([joining])
            batch.leave()
        if batch.states:
            for r, s in zip(batch.rows, batch.step()):
                steps[id(r)].append(s)
            batch.leave()
    return [("".join(s.text for s in steps[id(r)]), steps[id(r)][-1].finish_reason,
             [call for s in steps[id(r)] for call in s.tool_calls or []] or None) for r in rows]


def test_rows_joining_mid_decode_answer_as_they_do_alone(qwen):
    rows = lambda: [row(qwen, "hello " * (i + 1), 6 + 9 * i, 100 + i) for i in range(4)]  # noqa: E731
    alone = [decode(qwen, [r])[0] for r in rows()]
    assert decode(qwen, rows()) == alone
    for every in (1, 3, 7):
        assert decode(qwen, rows(), join_every=every) == alone
    assert [text for text, _, _ in alone] != [alone[0][0]] * 4  # the rows' answers differ from one another


def test_grammars_hold_rows_to_their_schemas_beside_free_rows(qwen):
    from deployments.families.chat.constraints import json_grammar
    from deployments.families.chat.product import LISTING_SCHEMA

    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                                               "tag": {"enum": ["a", "b"]}}, "required": ["n", "tag"]}
    grammar = json_grammar(schema, qwen.grammar_tokenizer, "test")
    listing = json_grammar(LISTING_SCHEMA, qwen.grammar_tokenizer, "test")
    rows = [row(qwen, "json", 200, seed, grammar=grammar) for seed in range(3)]
    rows += [row(qwen, "free", 20, 9), row(qwen, "listing", 1500, 4, grammar=listing)]
    answers = decode(qwen, rows, join_every=2)
    for text, finish, _ in answers[:3]:
        assert finish == "stop" and set(json.loads(text)) == {"n", "tag"}  # closed: no other keys
        jsonschema.validate(json.loads(text), schema)
    assert answers[3][1] in ("stop", "length")
    jsonschema.validate(json.loads(answers[4][0]), LISTING_SCHEMA)


def test_tool_calls_follow_the_schema_and_parse(qwen):
    from deployments.families.chat.tools import STYLES

    tools = [{"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a"]}}}]
    calls = STYLES["hermes"].grammar(qwen.grammar_tokenizer, tools, None, parallel=True)
    answers = decode(qwen, [row(qwen, "add", 300, seed, grammar=calls, tools=tools) for seed in range(3)])
    for text, finish, found in answers:
        assert finish == "tool_calls" and text == "" and found
        for call in found:
            assert call["function"]["name"] == "add" and call["id"].startswith("call_")
            assert 0 <= json.loads(call["function"]["arguments"])["a"] <= 99
    assert STYLES["mistral"].parse(' [{"name": "add", "arguments": {"a": 1}}]')[0]["function"] == {
        "name": "add", "arguments": '{"a": 1}'}
    assert STYLES["hermes"].parse("<tool_call>\n{not json}\n</tool_call>") is None


def test_with_auto_tools_and_a_response_format_a_call_may_open_the_answer_and_nothing_else(qwen):
    """tool_choice auto with a JSON response_format: the model's first token may open a call (then the calls'
    grammar holds) or start the JSON; once the JSON has begun, the opener is masked like any other token."""
    import dataclasses

    import torch

    from deployments.families.chat.constraints import json_grammar
    from deployments.families.chat.decoding import RowState
    from deployments.families.chat.tools import STYLES

    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    calls = STYLES["hermes"].grammar(qwen.grammar_tokenizer, tools, None, parallel=False)
    answer = json_grammar({"type": "object"}, qwen.grammar_tokenizer, "test")
    brace = qwen.tokenizer.convert_tokens_to_ids("{")

    def favouring(token: int):
        logits = torch.zeros(qwen.model.config.vocab_size)
        logits[token] = 50.0
        return logits

    def fresh() -> RowState:
        return RowState(dataclasses.replace(row(qwen, "x", 50, 0, grammar=answer), tools=calls), qwen)

    opened = fresh()
    assert opened.pick(favouring(calls.trigger)) == calls.trigger and opened.text.calls_from == 0
    assert opened.matcher is not None and not opened.matcher.finished()
    began = fresh()
    assert began.pick(favouring(brace)) == brace
    began.advance(brace, 1)
    assert began.pick(favouring(calls.trigger)) != calls.trigger and began.text.calls_from is None


def test_in_bfloat16_rows_decode_to_their_schemas_in_half_the_memory(qwen):
    """INFERENCE_CPU_DTYPE=bfloat16 (the fast CPU mode on AMX/AVX512-BF16 cores): the weights take half the
    bytes, a row's answer repeats with its seed, and grammars still hold every row (they mask float32 logits)."""
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM

    from deployments.families.chat.constraints import json_grammar
    from deployments.serving.model_loading import generation_dtype
    from deployments.settings import ServiceSettings

    dtype = generation_dtype("cpu", ServiceSettings(cpu_dtype="bfloat16"))
    model = AutoModelForCausalLM.from_pretrained(qwen.model.name_or_path, dtype=dtype).eval()
    halved = dataclasses.replace(qwen, model=model)
    assert sum(p.nbytes for p in model.parameters()) == 2 * sum(p.numel() for p in model.parameters())
    assert generation_dtype("cpu", ServiceSettings(cpu_dtype="float32")) == torch.float32
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["n"]}
    grammar = json_grammar(schema, halved.grammar_tokenizer, "test")
    rows = lambda: [row(halved, "json", 100, seed, grammar=grammar) for seed in range(3)] + [  # noqa: E731
        row(halved, "free", 12, 7)]
    answers = decode(halved, rows(), join_every=2)
    assert decode(halved, rows(), join_every=2) == answers
    for text, finish, _ in answers[:3]:
        assert finish == "stop" and 1 <= json.loads(text)["n"] <= 9
    assert answers[3][1] in ("stop", "length") and answers[3][0] != answers[0][0]
