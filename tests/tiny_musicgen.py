"""Tiny random-weight MusicGen (T5 text encoder + EnCodec + decoder), its tokenizer, and LoRA adapters,
saved with the libraries' own save code and served by the test hub.

The model is the real `MusicgenForConditionalGeneration` with the released checkpoints' audio
layout (32 kHz, hop 640 = 50 frames/s, 4 codebooks with the delay pattern, guidance 3, top-k 250)
but ~230k parameters; the tokenizer is a real `T5Tokenizer` over a sentencepiece model trained
here on a few prompts. Adapters are real PEFT LoRA checkpoints on the decoder's attention.
"""

from __future__ import annotations

import io
from pathlib import Path

SMALL_REPO = "facebook/musicgen-small"
MEDIUM_REPO = "facebook/musicgen-medium"
LARGE_REPO = "facebook/musicgen-large"
# catalog adapter id -> (its hub repo, the base model's repo, seed)
ADAPTERS = {
    "lofi-small": ("musicgen-loras/musicgen-small-lofi", SMALL_REPO, 11),
    "jazz-medium": ("musicgen-loras/musicgen-medium-jazz", MEDIUM_REPO, 12),
}
# An adapter for musicgen-small whose feed-forward LoRA was trained on a wider decoder (ffn 96, not 64):
# lora_B of fc2 fits the base and lora_A does not, so transformers fails half-way through loading it.
MISFIT_ADAPTER = ("misfit-small", "musicgen-loras/musicgen-small-misfit", SMALL_REPO, 13)
PROMPTS = ["upbeat electronic dance music with a driving bassline", "calm piano melody in the rain",
           "90s rock song with loud guitars and heavy drums", "lofi hip hop beat to study to",
           "jazz trio with walking bass and brushed drums", "epic orchestral film score with choir"]

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app): a
# batch of two fires as soon as both prompts are in; a lone prompt waits up to a second for company.
KINDS = ("music",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {"user_config": {"max_batch_size": 2, "batch_wait_timeout_s": 1.0}}


def build_tokenizer(folder: Path) -> None:
    """A sentencepiece unigram model trained on PROMPTS, saved as a T5 tokenizer (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(PROMPTS * 20), model_writer=model, vocab_size=120,
                                   hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    T5Tokenizer.from_pretrained(folder, extra_ids=0).save_pretrained(folder)


# Model sizes: "tiny" for tests (~230k parameters, 1 s of audio in ~0.06 s on a CPU core), "small" with
# musicgen-small's own dimensions (T5-base text encoder, EnCodec 32 kHz, 24-layer decoder; ~590M) for
# benchmarks on a GPU. Both: 32 kHz, hop 8*5*4*4 = 640 (50 frames/s), 4 codebooks; tiny gets its 4 from
# 64-entry codebooks (6 bits) at 1.2 kbps, as the released 2048-entry ones (11 bits) come from 2.2 kbps.
SIZES = {
    "tiny": {"text": dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8),
             "audio": dict(codebook_size=64, target_bandwidths=[1.2], hidden_size=16, codebook_dim=16,
                           num_filters=4, num_lstm_layers=1),
             "decoder": dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64)},
    "small": {"text": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
              "audio": dict(codebook_size=2048, target_bandwidths=[2.2], hidden_size=128, num_filters=64,
                            num_lstm_layers=2),
              "decoder": dict(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                              ffn_dim=4096)},
}


def build_tiny_musicgen(folder: Path, seed: int = 0, hidden: int | None = None, size: str = "tiny") -> Path:
    """Save model, generation config and processor (tokenizer + EnCodec feature extractor) into `folder`."""
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        GenerationConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
        T5Tokenizer,
    )

    build_tokenizer(folder)
    tokenizer = T5Tokenizer.from_pretrained(folder)
    dims = SIZES[size]
    text = T5Config(**{"vocab_size": len(tokenizer), **dims["text"]})
    audio = EncodecConfig(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], num_residual_layers=1,
                          use_causal_conv=False, **dims["audio"])
    decoder_dims = dims["decoder"] | ({"hidden_size": hidden, "ffn_dim": 2 * hidden} if hidden else {})
    pad = decoder_dims["vocab_size"]  # MusicGen's pad/start token is one past the codebook entries
    decoder = MusicgenDecoderConfig(num_codebooks=audio.num_quantizers, pad_token_id=pad, bos_token_id=pad,
                                    max_position_embeddings=2048, **decoder_dims)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio,
                                                                decoder=decoder)).eval()
        for layer in model.audio_encoder.quantizer.layers:  # created as zeros: every code would decode alike
            layer.codebook.embed.normal_(0, 10)
        # random biases make a loud constant offset; without them the audio comes from the codes alone
        for name, parameter in model.audio_encoder.decoder.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
        final_gain = [p for n, p in model.audio_encoder.decoder.named_parameters() if n.endswith("original0")][-1]
        final_gain.mul_(10)  # about 0.1 RMS instead of 0.01
    # the released checkpoints' generation_config.json
    model.generation_config = GenerationConfig(do_sample=True, guidance_scale=3.0, top_k=250, max_length=1500,
                                               decoder_start_token_id=pad, pad_token_id=pad, bos_token_id=pad)
    model.save_pretrained(folder)
    MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(sampling_rate=32000),
                      tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_tiny_lora(folder: Path, base_folder: Path, base_repo: str, seed: int, ffn_dim: int | None = None) -> Path:
    """A PEFT LoRA adapter with random (non-zero) weights on the decoder's attention projections;
    with `ffn_dim`, on the feed-forward layers of a decoder that much wider instead (a misfit)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import MusicgenConfig, MusicgenForConditionalGeneration

    if ffn_dim is None:
        base = MusicgenForConditionalGeneration.from_pretrained(base_folder)
        targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    else:
        config = MusicgenConfig.from_pretrained(base_folder)
        config.decoder.ffn_dim = ffn_dim
        base, targets = MusicgenForConditionalGeneration(config), ["fc1", "fc2"]
    config = LoraConfig(r=4, lora_alpha=16, init_lora_weights=False, target_modules=targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapted = get_peft_model(base, config)
    adapted.peft_config["default"].base_model_name_or_path = base_repo  # not the local build folder
    adapted.save_pretrained(folder, save_embedding_layers=False)  # no hub lookup of the base config
    return folder


def add_repos(hub, folder: Path) -> None:
    """Build the tiny models into `folder` and add them to the test hub under the catalog's repo ids."""
    small = build_tiny_musicgen(folder / "musicgen-small", seed=0)
    medium = build_tiny_musicgen(folder / "musicgen-medium", seed=1, hidden=48)
    hub.add_repo(SMALL_REPO, small)
    hub.add_repo(MEDIUM_REPO, medium)
    hub.add_repo(LARGE_REPO, medium)
    bases = {SMALL_REPO: small, MEDIUM_REPO: medium}
    for adapter_id, (repo_id, base_repo, seed) in ADAPTERS.items():
        hub.add_repo(repo_id, build_tiny_lora(folder / adapter_id, bases[base_repo], base_repo, seed))
    adapter_id, repo_id, base_repo, seed = MISFIT_ADAPTER
    hub.add_repo(repo_id, build_tiny_lora(folder / adapter_id, small, base_repo, seed, ffn_dim=96))


if __name__ == "__main__":  # for benchmarks, which do not import tests/:  python -m tests.tiny_musicgen OUT [SIZE]
    import sys

    build_tiny_musicgen(Path(sys.argv[1]), size=sys.argv[2] if len(sys.argv) > 2 else "tiny")
    print(sys.argv[1])
