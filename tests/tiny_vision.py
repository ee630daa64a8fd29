"""Tiny random-weight vision models saved with the libraries' own save code and served by the test hub.

- ResNet (`microsoft/resnet-50`): the real `ResNetForImageClassification` (two bottleneck stages,
  widths 16/32) with the released checkpoint's `ConvNextImageProcessor` settings (shortest edge 224,
  crop_pct 0.875) and ten ImageNet class names as `id2label`.
- ViT (`google/vit-base-patch16-224`): the real `ViTForImageClassification` (hidden 32, 2 layers,
  16 px patches on 224 px) with a `ViTImageProcessor`, the same ten labels in another order.
- BLIP (`Salesforce/blip-image-captioning-base`): the real `BlipForConditionalGeneration` (hidden 32,
  96 px images) with a `BlipProcessor`: `BlipImageProcessor` + a BERT word-piece tokenizer over a small
  vocabulary (words, letters and `##` letters, so any lower-case prompt tokenizes without [UNK]) and
  BLIP's `[DEC]` start token, as in the released tokenizer.
- Qwen2-VL (`Qwen/Qwen2-VL-2B-Instruct`): the real `Qwen2VLForConditionalGeneration` (hidden 64,
  vision depth 2), a byte-level `Qwen2Tokenizer` with Qwen's special tokens and a chat template in
  the released one's form, and a `Qwen2VLImageProcessor` capped at 112x112 px (16 image tokens).

Weights are random, so labels are arbitrary and captions gibberish (kept printable by the generation
configs). Everything is seeded: the same images give the same answers on every run.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

RESNET_REPO, VIT_REPO = "microsoft/resnet-50", "google/vit-base-patch16-224"
BLIP_REPO, QWEN_VL_REPO = "Salesforce/blip-image-captioning-base", "Qwen/Qwen2-VL-2B-Instruct"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # as in the released config
LABELS = ["tench", "goldfish", "tabby cat", "golden retriever", "sports car", "pizza", "banana", "volcano",
          "daisy", "coffee mug"]
WORDS = ("a an the of in on with and is are there this photo picture image photograph painting drawing "
         "cat dog car bird person man woman child tree house street sky water beach field road table room "
         "red green blue white black yellow small large old young sitting standing next to near front "
         "describe briefly").split()
QWEN_TEMPLATE = (  # the released chat template's structure (system prompt, image placeholders, generation prompt)
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app):
# a generous batch wait so that concurrent test requests visibly share one forward pass.
KINDS = ("vision",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {
    "user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.2, "default_max_tokens": 12},
}


def _seeded(seed: int, build):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_resnet(folder: Path, seed: int = 0, full: bool = False) -> Path:
    """`full`: ResNet-50's real sizes (4 stages, 25M parameters, 1000 labels), for benchmarks."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    labels = LABELS + [f"imagenet class {i}" for i in range(len(LABELS), 1000)] if full else LABELS
    sizes = {} if full else {"embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1]}
    config = ResNetConfig(**sizes, layer_type="bottleneck", id2label=dict(enumerate(labels)),
                          label2id={label: i for i, label in enumerate(labels)})
    _seeded(seed, lambda: ResNetForImageClassification(config)).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875, resample=3, image_mean=IMAGENET_MEAN,
                           image_std=IMAGENET_STD).save_pretrained(folder)
    return folder


def build_vit(folder: Path, seed: int = 1) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = LABELS[::-1]
    config = ViTConfig(image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, id2label=dict(enumerate(labels)),
                       label2id={label: i for i, label in enumerate(labels)})
    _seeded(seed, lambda: ViTForImageClassification(config)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def build_blip(folder: Path, seed: int = 2) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    letters = list(string.ascii_lowercase + string.digits)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS + letters),
             *(f"##{c}" for c in letters), *".,!?'-:;"]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(words)})
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token, appended as in the release
    ids = tokenizer.convert_tokens_to_ids
    config = BlipConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "encoder_hidden_size": 32,
                     "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 128, "bos_token_id": ids("[DEC]"), "sep_token_id": ids("[SEP]"),
                     "pad_token_id": ids("[PAD]"), "eos_token_id": ids("[SEP]")},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 96, "patch_size": 16},
        projection_dim=32, image_text_hidden_size=32,
    )
    _seeded(seed, lambda: BlipForConditionalGeneration(config)).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 96, "width": 96})
    BlipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_qwen2_vl(folder: Path, seed: int = 3, full: bool = False) -> Path:
    """`full`: Qwen2-VL-2B's real sizes (2.2B parameters, its 151936-row vocabulary; the tokenizer stays the
    byte-level one, so the rows past it decode to nothing), saved in bfloat16, for benchmarks."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2TokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_tokens = bytes_to_unicode()
    tokenizer = Qwen2TokenizerFast(vocab={byte_tokens[b]: b for b in range(256)}, merges=[], unk_token=None,
                                   bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    tokenizer.chat_template = QWEN_TEMPLATE
    ids = dict(zip(QWEN_SPECIAL, tokenizer.convert_tokens_to_ids(QWEN_SPECIAL)))
    text_sizes = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                  "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
                  "tie_word_embeddings": True, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                                   "mrope_section": [16, 24, 24]}} if full else {
        "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}}
    vision_sizes = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16} if full else {
        "depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 4}
    config = Qwen2VLConfig(
        text_config={**text_sizes, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={**vision_sizes, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    model = _seeded(seed, lambda: Qwen2VLForConditionalGeneration(config))
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], do_sample=False,
        suppress_tokens=[b for b in range(256) if not 32 <= b < 127],  # readable gibberish: printable ASCII only
    )
    (model.to(torch.bfloat16) if full else model).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=(448 if full else 112) ** 2).save_pretrained(folder)
    return folder


def add_repos(hub, folder) -> None:
    """Build the tiny models into subfolders of `folder` and serve them under the catalog's repo ids."""
    folder = Path(folder)
    hub.add_repo(RESNET_REPO, build_resnet(folder / "resnet"))
    hub.add_repo(VIT_REPO, build_vit(folder / "vit"))
    hub.add_repo(BLIP_REPO, build_blip(folder / "blip"))
    hub.add_repo(QWEN_VL_REPO, build_qwen2_vl(folder / "qwen2-vl"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write random-weight vision models into subfolders of a folder.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--full-resnet", action="store_true", help="ResNet-50's real sizes instead of a tiny ResNet.")
    arguments = parser.parse_args()
    print(build_resnet(arguments.folder / "resnet", full=arguments.full_resnet))
    print(build_vit(arguments.folder / "vit"))
