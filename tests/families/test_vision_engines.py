"""The vision family's describers in this process, in the dtype INFERENCE_CPU_DTYPE picks: bfloat16 halves
their weights, and they still caption, describe and answer a chat turn held to a JSON schema (over HTTP, in
the default float32: tests/families/test_vision.py and test_chat_agents.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.tiny_vision import build_blip, build_qwen2_vl

BUILDERS = {"blip-image-captioning-base": build_blip, "qwen2-vl-2b-instruct": build_qwen2_vl}


def pictures(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]


def load(model: str, folder, cpu_dtype: str):
    from deployments.families.vision.engines import load_engine
    from deployments.serving.model_loading import generation_dtype
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    dtype = generation_dtype("cpu", ServiceSettings(cpu_dtype=cpu_dtype))
    return load_engine(load_catalog().resolve(model), False, str(folder), "cpu", dtype)


def weight_bytes(engine) -> tuple[int, int]:
    return sum(p.nbytes for p in engine.model.parameters()), sum(p.numel() for p in engine.model.parameters())


@pytest.mark.parametrize("model", list(BUILDERS))
def test_a_describer_in_bfloat16_takes_half_the_bytes_and_still_describes(tmp_path, model):
    folder = BUILDERS[model](tmp_path / model)
    full, count = weight_bytes(load(model, folder, "float32"))  # the default
    engine = load(model, folder, "bfloat16")
    assert full == 4 * count and weight_bytes(engine) == (full // 2, count)
    images, prompts = pictures(2), [engine.default_prompt] * 2
    described = engine.describe(images, prompts, [8, 5])
    assert [tokens <= limit for (_, tokens, _), limit in zip(described, [8, 5])] == [True, True], described
    assert any(text for text, _, _ in described), described
    assert engine.describe(images, prompts, [8, 5]) == described  # greedy: the same images, the same words


def test_a_vision_language_chat_turn_in_bfloat16_answers_to_its_schema(tmp_path):
    from deployments.families.chat.constraints import json_grammar
    from deployments.families.chat.decoding import Row, RowState
    from deployments.families.vision.chat_turn import Turn, decode_turns

    engine = load("qwen2-vl-2b-instruct", build_qwen2_vl(tmp_path / "qwen2-vl"), "bfloat16")
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
              "required": ["colour"]}
    grammar = json_grammar(schema, engine.chat_model.grammar_tokenizer, "test")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which colour?"}]}]
    inputs = engine.chat_inputs([messages], pictures(1))
    assert inputs["pixel_values"].dtype == engine.model.dtype
    row = Row(model="qwen2-vl-2b-instruct", prompt_ids=inputs["input_ids"][0].tolist(), max_tokens=40,
              temperature=1.0, top_p=1.0, top_k=0, seed=3, stop=[], grammar=grammar)
    steps: list = []
    decode_turns(engine, [Turn(messages, pictures(1), RowState(row, engine.chat_model), steps.append)])
    text = "".join(step.text for step in steps)
    assert steps[-1].finish_reason == "stop", text
    assert json.loads(text)["colour"] in {"red", "green", "blue"}


def test_chat_turns_sharing_a_generate_answer_as_they_do_alone(tmp_path):
    """Turns of different images, prompt lengths, seeds and limits, decoded in one left-padded generate:
    each row's answer is the one it gets alone, each Step tells the batch's size, and a row that ends early
    (max_tokens 3) stops there while the others go on."""
    from deployments.families.chat.decoding import Row, RowState
    from deployments.families.vision.chat_turn import Turn, decode_turns

    engine = load("qwen2-vl-2b-instruct", build_qwen2_vl(tmp_path / "qwen2-vl"), "float32")
    images = pictures(4)
    asks = [([images[0]], "What is this?", 12, 1), ([images[1], images[2]], "Compare these two, please.", 3, 2),
            ([], "No picture at all this time.", 10, 3), ([images[3]], "Colours?", 16, 4)]

    def turns(outboxes: list[list]) -> list[Turn]:
        made = []
        for (pictured, text, limit, seed), outbox in zip(asks, outboxes):
            parts = [{"type": "image"}] * len(pictured) + [{"type": "text", "text": text}]
            messages = [{"role": "user", "content": parts}]
            prompt = engine.chat_inputs([messages], pictured)["input_ids"][0].tolist()
            row = Row(model="qwen2-vl-2b-instruct", prompt_ids=prompt, max_tokens=limit, temperature=1.0,
                      top_p=1.0, top_k=0, seed=seed, stop=[])
            made.append(Turn(messages, pictured, RowState(row, engine.chat_model), outbox.append))
        return made

    alone: list[list] = [[] for _ in asks]
    for turn in turns(alone):
        decode_turns(engine, [turn])
    together: list[list] = [[] for _ in asks]
    decode_turns(engine, turns(together))
    text = lambda steps: "".join(step.text for step in steps)  # noqa: E731
    assert [text(steps) for steps in together] == [text(steps) for steps in alone]
    assert [steps[-1].finish_reason for steps in together] == [steps[-1].finish_reason for steps in alone]
    sizes = lambda answers: {step.batch_size for steps in answers for step in steps}  # noqa: E731
    assert sizes(together) == {4} and sizes(alone) == {1}
    assert len(together[1]) == 3 and together[1][-1].finish_reason == "length"
    assert max(len(steps) for steps in together) > 3
