"""The vision engines behind two contracts, one per task: a Classifier (labels and their probabilities) and a
Describer (a text per image). Which describer loads a model is said by the model's own config (`model_type`,
DESCRIBERS), so a catalog entry of another BLIP or Qwen2-VL checkpoint needs no code."""

from __future__ import annotations

from collections.abc import Hashable
from functools import cached_property
from typing import Any, Protocol

from deployments.errors import ModelUnavailable
from registry import ModelEntry

DEFAULT_PROMPT = "Describe this image."  # what chat models are asked when a request has no prompt


class Describer(Protocol):
    """What the vision deployment asks of an image-to-text engine."""

    def __init__(self, path: str, device: str, dtype: Any) -> None: ...

    def batch_key(self, prompt: str | None) -> Hashable:
        """Images with equal keys share one generate call."""

    def describe(self, images: list[Any], prompts: list[Any], max_tokens: list[int]) -> list[tuple]:
        """(text, generated tokens, cut by max_tokens) per image."""


class Classifier:
    """An image-classification model with its image processor (Pillow backend: no torchvision here)."""

    def __init__(self, path: str, device: str):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        self.model = AutoModelForImageClassification.from_pretrained(path).to(device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def probabilities(self, images: list) -> list[list[float]]:
        import torch

        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self.model(**inputs).logits.float().softmax(-1).cpu().tolist()


class BlipCaptioner:
    """BLIP conditional captioning: a prompt is the caption's first words, and the caption keeps them."""

    default_prompt = None  # an unconditional caption

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoProcessor, BlipForConditionalGeneration

        self.device, self.dtype = device, dtype
        self.processor = AutoProcessor.from_pretrained(path, backend="pil")
        self.model = BlipForConditionalGeneration.from_pretrained(path, dtype=self.dtype).to(device).eval()  # type: ignore[arg-type]
        text = self.model.config.text_config
        self.stop = {text.sep_token_id, text.pad_token_id}  # BLIP's text decoder ends a caption with [SEP]

    def batch_key(self, prompt: str | None) -> str | None:
        return prompt  # one text prefix per generate call

    def describe(self, images: list, prompts: list[str | None], max_tokens: list[int]) -> list[tuple[str, int, bool]]:
        import torch

        prompt = prompts[0]
        inputs = self.processor(images=images, text=[prompt] * len(images) if prompt else None, return_tensors="pt")
        inputs = inputs.to(self.device).to(self.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max(max_tokens))
        # rows are [DEC] + the prompt's words (its [CLS] and [SEP] dropped) + the generated tokens
        start = inputs["input_ids"].shape[1] - 1 if prompt else 1
        return [_decode(self.processor.tokenizer, row, start, limit, self.stop, keep=1)
                for row, limit in zip(output, max_tokens)]


class ChatDescriber:
    """A vision-language chat model (Qwen2-VL): the image and the prompt as one user turn of its chat template."""

    default_prompt = DEFAULT_PROMPT

    def __init__(self, path: str, device: str, dtype: Any):
        from transformers import AutoModelForImageTextToText

        self.device, self.dtype = device, dtype
        self.processor = _chat_processor(path)
        self.processor.tokenizer.padding_side = "left"  # rows of a batch end where generation starts
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=self.dtype).to(device).eval()  # type: ignore[arg-type]
        generation = self.model.generation_config
        eos = generation.eos_token_id
        self.stop = {*(eos if isinstance(eos, list) else [eos]), generation.pad_token_id,
                     self.processor.tokenizer.pad_token_id} - {None}

    def batch_key(self, prompt: str | None) -> None:
        return None  # each row carries its own prompt

    def describe(self, images: list, prompts: list[str], max_tokens: list[int]) -> list[tuple[str, int, bool]]:
        import torch

        texts = [self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True) for prompt in prompts]
        inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device).to(self.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max(max_tokens), do_sample=False)
        start = inputs["input_ids"].shape[1]
        return [_decode(self.processor.tokenizer, row, start, limit, self.stop)
                for row, limit in zip(output, max_tokens)]


    @cached_property
    def chat_model(self):
        """This model as the chat family's decoding reads it: tokenizer, end tokens, grammar vocabulary."""
        from deployments.families.chat.decoding import ChatModel

        text = getattr(self.model.config, "text_config", self.model.config)
        return ChatModel(self.processor.tokenizer, self.model, set(self.stop), min(self.stop),
                         getattr(text, "max_position_embeddings", None) or 32768, None)

    def chat_inputs(self, conversations: list[list[dict]], images: list):
        """The processor's tensors for a chat turn over each of `conversations` (messages whose content parts
        are {'type': 'text'} and {'type': 'image'}), left-padded into one batch ready for generate; `images`:
        every turn's images in the order of their parts."""
        texts = [self.processor.apply_chat_template(messages, add_generation_prompt=True) for messages in conversations]
        inputs = self.processor(images=images or None, text=texts, padding=True, return_tensors="pt")
        return inputs.to(self.device).to(self.dtype)


def _decode(tokenizer, row, start: int, limit: int, stop: set[int],
            keep: int | None = None) -> tuple[str, int, bool]:
    """Text of the tokens generated from `start` on, cut at `limit` and at the first stop token
    (end of text, padding), preceded by `row[keep:start]` (a prompt the caption keeps) when `keep`
    is given; how many tokens were generated; and whether `limit` cut the text (no stop token came)."""
    generated = row[start:start + limit].tolist()
    count = next((i for i, token in enumerate(generated) if token in stop), len(generated))
    kept = row[keep:start].tolist() if keep is not None else []
    text = tokenizer.decode(kept + generated[:count], skip_special_tokens=True).strip()
    return text, count, count == len(generated) == limit


def _chat_processor(path: str):
    """The model's processor. Qwen2-VL's also holds a video processor, which needs torchvision (not
    installed here); images need only its image half, which transformers' own class gives without it."""
    from transformers import AutoProcessor, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    try:
        return AutoProcessor.from_pretrained(path, backend="pil")
    except ImportError:
        pass

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor.from_pretrained(path, backend="pil")


# An image-to-text model's config `model_type` -> its engine.
DESCRIBERS: dict[str, type[Describer]] = {"blip": BlipCaptioner, "qwen2_vl": ChatDescriber}


def load_engine(entry: ModelEntry, classify: bool, path: str, device: str, dtype: Any) -> Any:
    """The engine for `entry`: a Classifier for image classification (float32), else the describer its config
    names, in `dtype` (the chat family's generation dtype: INFERENCE_CPU_DTYPE on a CPU)."""
    if classify:
        return Classifier(path, device)
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in DESCRIBERS:
        raise ModelUnavailable(f"Model '{entry.id}' is a '{model_type}' model; this service describes images with "
                               "BLIP and Qwen2-VL models")
    return DESCRIBERS[model_type](path, device, dtype)
