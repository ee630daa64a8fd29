"""Tiny random-weight chat models, saved with the libraries' own save code and served by the test hub.

Two real architectures under the catalog's repo ids: `Qwen2ForCausalLM` (Qwen/Qwen2.5-0.5B-Instruct)
and `MistralForCausalLM` (mistralai/Mistral-7B-Instruct-v0.3), each ~60k parameters with a small
`max_position_embeddings` (2048), so the deployment's context limit is the model's, not the catalog's
32768. Tokenizers are real `tokenizers` byte-level BPEs trained here on a few sentences, wrapped in
`PreTrainedTokenizerFast` with each family's special tokens and a chat template in its style
(ChatML for Qwen, [INST] with strict role alternation for Mistral). Weights are random, so answers
are gibberish made of the training sentences' word pieces.
"""

from __future__ import annotations

from pathlib import Path

QWEN_REPO = "Qwen/Qwen2.5-0.5B-Instruct"
MISTRAL_REPO = "mistralai/Mistral-7B-Instruct-v0.3"
MAX_POSITIONS = 2048  # room for the tools a template writes into the prompt (a tiny vocabulary spells them long)
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

TEMPLATES = Path(__file__).parent / "chat_templates"
# Qwen2.5-Instruct's released chat template: ChatML, a default system turn, and its tool-calling branches
# (the tools in the system turn, calls as <tool_call> JSON </tool_call>, results as <tool_response>).
QWEN_TEMPLATE = (TEMPLATES / "qwen2.5-instruct.jinja").read_text()
# Mistral-7B-Instruct-v0.3's released template: the system prompt joins the last user turn, user/assistant
# turns must alternate (tool turns aside), tools go before the last user turn, calls and results carry
# 9-character ids.
MISTRAL_TEMPLATE = (TEMPLATES / "mistral-7b-instruct-v0.3.jinja").read_text()
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
    config = Qwen2Config(vocab_size=len(tokenizer) - len(QWEN_TOOL_TOKENS), **QWEN_SIZES[size],
                         max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True, bos_token_id=end,
                         eos_token_id=[im_end, end], pad_token_id=end)
    return _save(folder, config, tokenizer, seed)


def build_tiny_mistral(folder: Path, seed: int = 1) -> Path:
    from transformers import MistralConfig

    tokenizer = build_tokenizer(folder, ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], MISTRAL_TEMPLATE,
                                MISTRAL_TOOL_TOKENS, True, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = MistralConfig(vocab_size=len(tokenizer) - len(MISTRAL_TOOL_TOKENS), hidden_size=64,
                           intermediate_size=128, num_hidden_layers=2,
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
