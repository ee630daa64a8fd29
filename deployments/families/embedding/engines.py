"""The embedding engines behind one contract (SentenceEncoder), picked by the model's `engine`: the
sentence-transformers model on torch (the reference) or the same model exported whole (transformer,
pooling, normalization) to ONNX by the model manager and run on ONNX Runtime, which answers a single
sentence several times sooner on a CPU (bench/embedding_engines.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from registry import ModelEntry

ENCODE_BATCH = 64  # texts per forward pass, sorted by length so a pass pads little


class SentenceEncoder(Protocol):
    """What the embedding deployment asks of an engine."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str) -> None: ...

    def encode(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        """Normalized vectors (as OpenAI's are), and the tokens each text was read as."""

    def torch_modules(self) -> list:
        """The modules a replica reports (memory, dtypes) and optimizes (none for ONNX Runtime)."""


class SentenceTransformersEncoder:
    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(paths["weights"], device=device, local_files_only=True)
        if entry.specs.max_input_tokens:
            self.model.max_seq_length = entry.specs.max_input_tokens

    def torch_modules(self) -> list:
        return [self.model]

    def encode(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        vectors = self.model.encode(texts, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True)
        token_ids = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return vectors.tolist(), [len(ids) for ids in token_ids]


class OnnxEncoder:
    """paths["converted"]: model.onnx (inputs input_ids, attention_mask, token_type_ids; output the
    sentence embedding) and the tokenizer, as model_cache/conversions.py exports them."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import onnxruntime
        import torch
        from transformers import AutoTokenizer

        folder = Path(paths["converted"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_length = entry.specs.max_input_tokens or int((folder / "max_seq_length").read_text())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the replica's CPU share (settings.cpu_threads)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def torch_modules(self) -> list:
        return []

    def encode(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list = [None] * len(texts)
        counts = [0] * len(texts)
        for start in range(0, len(order), ENCODE_BATCH):
            chosen = order[start:start + ENCODE_BATCH]
            tokens = self.tokenizer([texts[i] for i in chosen], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="np")
            tokens.setdefault("token_type_ids", np.zeros_like(tokens["input_ids"]))
            out = self.session.run(None, {name: tokens[name].astype(np.int64) for name in self.inputs})[0]
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
            for row, i in enumerate(chosen):
                vectors[i] = out[row].tolist()
                counts[i] = int(tokens["attention_mask"][row].sum())
        return vectors, counts


ENGINES: dict[str, type[SentenceEncoder]] = {"sentence-transformers": SentenceTransformersEncoder,
                                             "onnx": OnnxEncoder}
