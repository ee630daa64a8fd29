"""Tiny random-weight SpeechT5 + HiFi-GAN + speaker embeddings, and Bark with voice presets, saved with
the libraries' own save code and served by the test hub.

- SpeechT5: the real `SpeechT5ForTextToSpeech` (hidden 32) with a `SpeechT5Processor` whose tokenizer
  is a character sentencepiece model trained here, as the released `spm_char.model` is; the real
  `SpeechT5HifiGan` (16 kHz, 256 samples per mel frame). Its stop-token bias is set very low, so
  it never stops early: speech lasts exactly as long as `generate`'s `maxlenratio` allows, which
  makes durations predictable (20 frames, 0.32 s, per token).
- Speaker embeddings: the layout of the `Matthijs/cmu-arctic-xvectors` dataset repo, a
  `spkrec-xvect.zip` holding one 512-d x-vector `.npy` per utterance, for every catalog voice.
- Bark: the real `BarkModel` (semantic, coarse and fine sub-models with Bark's vocabulary sizes,
  hidden 16, plus a tiny 24 kHz EnCodec), a `BarkProcessor` over a small BERT word-piece vocabulary,
  and every catalog voice as a preset saved by `BarkProcessor.save_pretrained`
  (`speaker_embeddings_path.json` + `speaker_embeddings/v2/*.npy`). Its generation config stops
  the semantic model after 40 tokens (0.8 s of audio) and never lets it pick end-of-speech.

Also a program, for benchmarks (nothing imports tests/): `python -m tests.tiny_speech FOLDER
[--dims base]` writes SpeechT5, its vocoder and the x-vectors, `base` with the released sizes.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

SPEECHT5_REPO, VOCODER_REPO = "microsoft/speecht5_tts", "microsoft/speecht5_hifigan"
XVECTOR_REPO = "Matthijs/cmu-arctic-xvectors"  # a dataset repo
BARK_REPOS = ("suno/bark-small", "suno/bark")  # one tiny model, two names
BARK_SEMANTIC_TOKENS = 40  # 40 / 49.9 Hz * 75 Hz codec frames * 320 samples = 0.8 s at 24 kHz
SPEECHT5_SECONDS_PER_TOKEN = 20 * 256 / 16000  # maxlenratio 20 frames per token, 256 samples per frame

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app).
KINDS = ("speech",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {"user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05}}


def _catalog_voices(model_id: str) -> list[str]:
    from registry import load_catalog

    return load_catalog().models[model_id].specs.voices


# SpeechT5Config sizes: tiny for the tests, base = microsoft/speecht5_tts's (the vocoder's defaults are
# the released HiFi-GAN's)
SPEECHT5_DIMS: dict[str, dict] = {
    "tiny": {"hidden_size": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
             "speech_decoder_prenet_units": 32, "speech_decoder_postnet_units": 32,
             "speech_decoder_postnet_layers": 2},
    "base": {},
}


def build_speecht5(folder: Path, seed: int = 0, dims: str = "tiny") -> tuple[Path, Path]:
    """Acoustic model + processor, and the vocoder, each saved into its own folder."""
    import sentencepiece
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    model_dir, vocoder_dir = folder / "speecht5_tts", folder / "speecht5_hifigan"
    model_dir.mkdir(parents=True, exist_ok=True)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?'-"
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([alphabet, "hello world, the quick brown fox jumps over the lazy dog."]),
        model_prefix=str(model_dir / "spm_char"), model_type="char", vocab_size=len(set(alphabet)) + 4,
        bos_id=0, pad_id=1, eos_id=2, unk_id=3, character_coverage=1.0, minloglevel=2,
    )  # the released spm_char.model's special ids: <s> 0, <pad> 1, </s> 2, <unk> 3
    tokenizer = SpeechT5Tokenizer(str(model_dir / "spm_char.model"))
    config = SpeechT5Config(vocab_size=tokenizer.vocab_size, speaker_embedding_dim=512, **SPEECHT5_DIMS[dims])
    small = {"upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]]}
    vocoder_config = SpeechT5HifiGanConfig(  # initializer_range 0.15: the default 0.01 gives 1e-8 amplitudes
        initializer_range=0.15, **(small if dims == "tiny" else {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, vocoder = SpeechT5ForTextToSpeech(config), SpeechT5HifiGan(vocoder_config)
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.bias.fill_(-20.0)  # never predicts the end of speech
    model.save_pretrained(model_dir)
    SpeechT5Processor(SpeechT5FeatureExtractor(), tokenizer).save_pretrained(model_dir)
    vocoder.save_pretrained(vocoder_dir)
    return model_dir, vocoder_dir


def build_xvectors(folder: Path, speakers: list[str], utterances: int = 3, seed: int = 0) -> Path:
    """`spkrec-xvect.zip` as in the dataset repo: spkrec-xvect/cmu_us_<spk>_arctic-wav-arctic_a000<n>.npy."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(folder / "spkrec-xvect.zip", "w") as archive:
        for speaker in speakers:
            for n in range(1, utterances + 1):
                vector = rng.standard_normal(512).astype(np.float32)
                with archive.open(f"spkrec-xvect/cmu_us_{speaker}_arctic-wav-arctic_a{n:04d}.npy", "w") as out:
                    np.save(out, vector / np.linalg.norm(vector))
    (folder / "README.md").write_text("Tiny stand-in for Matthijs/cmu-arctic-xvectors: random unit x-vectors.\n")
    return folder


def build_bark(folder: Path, voices: list[str], seed: int = 0) -> Path:
    """BarkModel + BarkProcessor with voice presets; generation config written by its own to_json_file."""
    import torch
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkModel,
        BarkProcessor,
        BarkSemanticConfig,
        BertTokenizer,
        EncodecConfig,
    )
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig,
        BarkFineGenerationConfig,
        BarkGenerationConfig,
        BarkSemanticGenerationConfig,
    )

    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", *chars, *(f"##{c}" for c in chars)]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(words)}, do_lower_case=False)
    sub = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "block_size": 1024, "initializer_range": 0.5}
    config = BarkConfig(  # vocabulary sizes of the released checkpoints, so generation's offsets hold
        semantic_config=BarkSemanticConfig(input_vocab_size=129_600, output_vocab_size=10_048, **sub).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(input_vocab_size=12_096, output_vocab_size=12_096, **sub).to_dict(),
        fine_acoustics_config=BarkFineConfig(input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8,
                                             n_codes_given=1, **sub).to_dict(),
        codec_config=EncodecConfig(hidden_size=16, num_filters=4, num_lstm_layers=1, codebook_size=1024,
                                   codebook_dim=16).to_dict(),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BarkModel(config)
    semantic = BarkSemanticGenerationConfig(max_new_tokens=BARK_SEMANTIC_TOKENS)
    with torch.no_grad():
        model.semantic.lm_head.weight[semantic.eos_token_id] = 0.0  # end-of-speech never wins greedy decoding
        generator = torch.Generator().manual_seed(seed)
        for layer in model.codec_model.quantizer.layers:  # EnCodec's codebooks start as zeros (k-means fills them)
            layer.codebook.embed.copy_(torch.randn(layer.codebook.embed.shape, generator=generator))
    rng = np.random.default_rng(seed)
    staging = folder.with_name(folder.name + "-presets")
    presets: dict = {"repo_or_path": str(staging)}
    for voice in voices:  # history prompts: semantic tokens, 2 coarse and 8 fine codebooks
        arrays = {"semantic_prompt": rng.integers(0, 10_000, 64), "coarse_prompt": rng.integers(0, 1024, (2, 96)),
                  "fine_prompt": rng.integers(0, 1024, (8, 96))}
        presets[voice] = {}
        for key, array in arrays.items():
            path = staging / f"{voice}_{key}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, array)
            presets[voice][key] = path.relative_to(staging).as_posix()
    model.save_pretrained(folder)
    BarkProcessor(tokenizer, speaker_embeddings=presets).save_pretrained(str(folder))
    # GenerationConfig.save_pretrained rejects Bark's nested config (its validate() fails); to_json_file writes it
    generation = BarkGenerationConfig.from_sub_model_configs(
        semantic, BarkCoarseGenerationConfig(), BarkFineGenerationConfig())
    generation.to_json_file(folder / "generation_config.json")
    return folder


def add_repos(hub, folder: Path) -> None:
    """Build the tiny models into `folder` and add them to the test hub under the catalog's repo ids."""
    model_dir, vocoder_dir = build_speecht5(folder / "speecht5")
    hub.add_repo(SPEECHT5_REPO, model_dir)
    hub.add_repo(VOCODER_REPO, vocoder_dir)
    hub.add_repo(XVECTOR_REPO, build_xvectors(folder / "cmu-arctic-xvectors", _catalog_voices("speecht5-tts")),
                 repo_type="dataset")
    bark = build_bark(folder / "bark", _catalog_voices("bark-small"))
    for repo_id in BARK_REPOS:
        hub.add_repo(repo_id, bark)
    from tests.tiny_csm import CSM_REPO, build_csm

    hub.add_repo(CSM_REPO, build_csm(folder / "csm"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a random-weight SpeechT5, vocoder and x-vectors.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dims", choices=sorted(SPEECHT5_DIMS), default="tiny")
    arguments = parser.parse_args()
    built = build_speecht5(arguments.folder, dims=arguments.dims)
    xvectors = build_xvectors(arguments.folder / "cmu-arctic-xvectors", _catalog_voices("speecht5-tts"))
    print(*built, xvectors, sep="\n")
