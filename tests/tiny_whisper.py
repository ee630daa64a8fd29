"""Tiny random-weight Whisper with its feature extractor and tokenizer, saved with the libraries' own
save code and served by the test hub.

The model is the real `WhisperForConditionalGeneration`, only small (d_model 64, 2+2 layers); the
tokenizer is a real `WhisperTokenizer` over a byte-level vocabulary with Whisper's special tokens
in Whisper's order (timestamps last), so prompts, language detection and timestamp decoding run
the same code paths as the released checkpoints. Weights are random: transcripts are gibberish
(kept to printable ASCII by the generation config's `suppress_tokens`).

Also a program, for benchmarks (nothing imports tests/): `python -m tests.tiny_whisper FOLDER
[--dims base]` writes the model, `base` with whisper-base's real sizes and vocabulary length.
"""

from __future__ import annotations

import argparse
import itertools
import string
from pathlib import Path

TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps, as in the released checkpoints
MAX_NEW_TOKENS = 6  # keeps every generate call in the tests short
REPOS = ("openai/whisper-base", "openai/whisper-tiny", "openai/whisper-large-v3")  # one tiny model, three names
# name -> (d_model, layers per stack, attention heads, ffn dim, text tokens, languages; None = all 99)
DIMS = {
    "tiny": (64, 2, 4, 128, 256, ("en", "de", "fr", "es")),
    "base": (512, 6, 8, 2048, 50257, None),  # openai/whisper-base
}

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app).
KINDS = ("transcription",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {
    "user_config": {"max_new_tokens": MAX_NEW_TOKENS, "max_batch_size": 16, "batch_wait_timeout_s": 0.05},
}


def _vocab(text_tokens: int, languages) -> tuple[dict[str, int], list[str], list[str]]:
    """Byte-level alphabet (id = byte) and filler words up to `text_tokens`, then the special tokens
    in Whisper's order, then the timestamp tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    alphabet = [bytes_to_unicode()[byte] for byte in range(256)]
    words = ("".join(letters) for size in (2, 3, 4)
             for letters in itertools.product(string.ascii_lowercase, repeat=size))
    text = alphabet + list(itertools.islice(words, text_tokens - len(alphabet)))
    special = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in languages or LANGUAGES),
               "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>"]
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)]
    return {token: index for index, token in enumerate(text + special + timestamps)}, special, timestamps


def build_tiny_whisper(folder: Path, seed: int = 0, dims: str = "tiny") -> Path:
    """Save model, generation config, feature extractor and tokenizer into `folder` (deterministic)."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    width, layers, heads, ffn, text_tokens, languages = DIMS[dims]
    vocab, special, timestamps = _vocab(text_tokens, languages)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": special[1:]})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps])
    ids = {token: vocab[token] for token in special}
    config = WhisperConfig(
        vocab_size=len(vocab), d_model=width, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        num_mel_bins=80, max_source_positions=1500, max_target_positions=448, pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], max_length=448,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={token: ids[token] for token in special[2:-6]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        is_multilingual=True, max_initial_timestamp_index=50,
        suppress_tokens=[byte for byte in range(256) if not 32 <= byte < 127],  # readable gibberish: ASCII only
        begin_suppress_tokens=[vocab["Ġ"], ids["<|endoftext|>"]],
        alignment_heads=[[layers - 1, head] for head in range(heads)],  # cross-attention heads for word times
    )
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(), tokenizer).save_pretrained(folder)
    return folder


def add_repos(hub, folder: Path) -> None:
    """Build the tiny models into `folder` and add them to the test hub under the catalog's repo ids."""
    built = build_tiny_whisper(folder / "whisper")
    for repo_id in REPOS:
        hub.add_repo(repo_id, built)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a random-weight Whisper into a folder.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    arguments = parser.parse_args()
    print(build_tiny_whisper(arguments.folder, dims=arguments.dims))
