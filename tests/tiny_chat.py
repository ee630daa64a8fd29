"""Tiny random-weight chat models, saved with the libraries' own save code and served by the test hub.

Two real architectures under the catalog's repo ids: `Qwen2ForCausalLM` (Qwen/Qwen2.5-0.5B-Instruct)
and `MistralForCausalLM` (mistralai/Mistral-7B-Instruct-v0.3), each ~60k parameters with a small
`max_position_embeddings` (512), so the deployment's context limit is the model's, not the catalog's
32768. Tokenizers are real `tokenizers` byte-level BPEs trained here on a few sentences, wrapped in
`PreTrainedTokenizerFast` with each family's special tokens and a chat template in its style
(ChatML for Qwen, [INST] with strict role alternation for Mistral). Weights are random, so answers
are gibberish made of the training sentences' word pieces.
"""

from __future__ import annotations

from pathlib import Path

QWEN_REPO = "Qwen/Qwen2.5-0.5B-Instruct"
MISTRAL_REPO = "mistralai/Mistral-7B-Instruct-v0.3"
MAX_POSITIONS = 512
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning finds patterns in data and makes predictions.",
    "A handmade leather wallet with six card slots and a coin pocket.",
    "Stainless steel water bottle, keeps drinks cold for 24 hours!",
    "What is the capital of France? Paris is the capital of France.",
    "You are a helpful assistant. Answer briefly and politely.",
    "Cotton t-shirt in navy blue; soft, breathable, and machine washable.",
    "Write a product title, a description, keywords and categories as JSON: {\"title\": \"...\"}",
]

# Qwen2.5-Instruct's released chat template: ChatML, a default system turn, and its tool-calling branches
# (the tools in the system turn, calls as <tool_call> JSON </tool_call>, results as <tool_response>).
QWEN_TEMPLATE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
# Mistral-7B-Instruct-v0.3's released template: the system prompt joins the last user turn, user/assistant
# turns must alternate (tool turns aside), tools go before the last user turn, calls and results carry
# 9-character ids.
MISTRAL_TEMPLATE = r"""
{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""
# Tokens added after training, as the released tokenizers have them: Qwen2.5's tool-call tags are plain
# added tokens, Mistral v0.3's tool markers are control (special) tokens.
QWEN_TOOL_TOKENS = ["<tool_call>", "</tool_call>"]
MISTRAL_TOOL_TOKENS = ["[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app): requests
# arriving within 0.2 s of each other share one batched generation loop.
KINDS = ("chat",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {"user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.2}}


def build_tokenizer(folder: Path, special: list[str], template: str, added: list[str], added_special: bool,
                    **roles: str):
    """A byte-level BPE trained on SENTENCES with `special` tokens, then `added` tokens (special or not),
    saved as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(SENTENCES * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, chat_template=template, **roles)
    tokenizer.add_tokens(added, special_tokens=added_special)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _save(folder: Path, config, tokenizer, seed: int) -> Path:
    """The model drawn for the trained vocabulary, then grown to the added tokens (so adding tokens left the
    other weights, and the tests' seeded answers, as they were)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():  # zero rows: the added tokens' logits sit mid-field, outside the sampled top-k
            for table in (model.get_input_embeddings(), model.get_output_embeddings()):
                table.weight[config.vocab_size:] = 0
    model.save_pretrained(folder)
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    # the released checkpoints' sampling defaults (Qwen2.5: temperature 0.7, top_p 0.8, top_k 20)
    GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, eos_token_id=eos,
                     pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id).save_pretrained(folder)
    return folder


# Qwen2 sizes: "tiny" for tests; "0.5b" is Qwen2.5-0.5B's real layer sizes (with the tiny vocabulary), for benchmarks.
QWEN_SIZES = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2},
    "0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2},
}


def build_tiny_qwen(folder: Path, seed: int = 0, size: str = "tiny") -> Path:
    from transformers import Qwen2Config

    tokenizer = build_tokenizer(folder, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN_TEMPLATE,
                                QWEN_TOOL_TOKENS, False, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    end, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(vocab_size=len(tokenizer) - len(QWEN_TOOL_TOKENS), **QWEN_SIZES[size], max_position_embeddings=MAX_POSITIONS,
                         tie_word_embeddings=True, bos_token_id=end, eos_token_id=[im_end, end], pad_token_id=end)
    return _save(folder, config, tokenizer, seed)


def build_tiny_mistral(folder: Path, seed: int = 1) -> Path:
    from transformers import MistralConfig

    tokenizer = build_tokenizer(folder, ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], MISTRAL_TEMPLATE,
                                MISTRAL_TOOL_TOKENS, True, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = MistralConfig(vocab_size=len(tokenizer) - len(MISTRAL_TOOL_TOKENS), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                           sliding_window=None, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    return _save(folder, config, tokenizer, seed)


def add_repos(hub, folder) -> None:
    """Build the tiny models into subfolders of `folder` and serve them under the catalog's repo ids."""
    folder = Path(folder)
    hub.add_repo(QWEN_REPO, build_tiny_qwen(folder / "tiny-qwen2"))
    mistral = build_tiny_mistral(folder / "tiny-mistral")
    for repo_id in (MISTRAL_REPO, "mistralai/Mistral-7B-Instruct-v0.1"):  # one tiny model, both releases' names
        hub.add_repo(repo_id, mistral)


if __name__ == "__main__":  # python -m tests.tiny_chat FOLDER [--size 0.5b]: a Qwen2 chat model for bench/
    import argparse

    parser = argparse.ArgumentParser(description="Write a random-weight Qwen2 chat model to FOLDER.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", choices=sorted(QWEN_SIZES), default="tiny")
    args = parser.parse_args()
    build_tiny_qwen(args.folder, size=args.size)
