"""A tiny random-weight Sesame CSM (`CsmForConditionalGeneration`: a 2-layer backbone, a 1-layer depth
decoder, 4 codebooks) with a tiny Mimi codec (24 kHz, 1920 samples per frame, 12.5 frames/s) and a
`CsmProcessor` over a character-level tokenizer that has CSM's special tokens and its chat template,
saved with the libraries' own save code and served by the test hub as `sesame/csm-1b`.

Mimi's codebooks start as zeros (training fills them by k-means), which would decode every code to
the same sound; here they get random centroids, so different codes are different audio. Weights are
initialised with a wide spread so the reference sample (the context) changes what is generated.
It never picks end-of-audio, so it speaks for exactly the cap the catalog's duration sets.
"""

from __future__ import annotations

from pathlib import Path

CSM_REPO = "sesame/csm-1b"
CODEBOOKS, CODEBOOK_SIZE = 4, 64
SAMPLES_PER_FRAME = 1920  # 24 kHz / 12.5 Hz
# CSM's chat template: each turn is "<bos>[speaker]text<eos>", a turn with audio adds its codes
CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- bos_token }}{{- '[' + message['role'] + ']' }}"
    "{{- message['content'][0]['text'] }}{{- eos_token }}"
    "{%- if message['content']|length > 1 %}{{- '<|AUDIO|><|audio_eos|>' }}{%- endif %}{%- endfor %}"
)


def build_csm(folder: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CsmConfig,
        CsmForConditionalGeneration,
        CsmProcessor,
        EncodecFeatureExtractor,
        MimiConfig,
        PreTrainedTokenizerFast,
    )
    from transformers.models.csm.configuration_csm import CsmDepthDecoderConfig

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>", "<|pad|>"]
    vocab = {chr(i): i - 32 for i in range(32, 127)}  # printable ASCII, one token per character
    for token in ["[UNK]", *specials]:
        vocab[token] = len(vocab)
    words = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, bos_token=specials[0], eos_token=specials[1],
                                        pad_token="<|pad|>", unk_token="[UNK]", additional_special_tokens=specials[2:4])
    codec = MimiConfig(hidden_size=32, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 6, 5, 4],
                       codebook_size=CODEBOOK_SIZE, codebook_dim=16, vector_quantization_hidden_dimension=16,
                       num_quantizers=CODEBOOKS, num_semantic_quantizers=1, num_hidden_layers=1, intermediate_size=64,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=16, upsample_groups=32)
    vocab_size = CODEBOOK_SIZE + 3  # as CSM's 2051 = 2048 codes + padding and spare ids
    depth = CsmDepthDecoderConfig(num_codebooks=CODEBOOKS, backbone_hidden_size=32, vocab_size=vocab_size,
                                  hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  num_key_value_heads=2, max_position_embeddings=CODEBOOKS + 1, initializer_range=0.5)
    ids = {token: vocab[token] for token in specials}
    config = CsmConfig(num_codebooks=CODEBOOKS, vocab_size=vocab_size, text_vocab_size=len(vocab), hidden_size=32,
                       intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=1024, initializer_range=0.5, pad_token_id=ids["<|pad|>"],
                       codebook_pad_token_id=vocab_size - 1, codebook_eos_token_id=0,
                       bos_token_id=ids["<|begin_of_text|>"], audio_token_id=ids["<|AUDIO|>"],
                       audio_eos_token_id=ids["<|audio_eos|>"], depth_decoder_config=depth.to_dict(),
                       codec_config=codec.to_dict())
    torch.manual_seed(seed)
    model = CsmForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, buffer in model.codec_model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buffer.copy_(torch.randn_like(buffer))
    model.generation_config.do_sample = True  # as the released model's generation config
    model.save_pretrained(folder)
    processor = CsmProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=24000), tokenizer,
                             chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder
