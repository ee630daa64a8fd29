"""Converted copies of cached checkpoints, for engines that do not read the hub's format: Whisper for
CTranslate2 (faster-whisper) and sentence-transformers models as ONNX graphs for ONNX Runtime.

The manager (or a node's copier) converts once per model, conversion and source snapshot, in a child
process (the converters import torch and hold a second copy of the weights; the manager stays small),
into `<cache>/converted/<model>/<conversion>-<snapshot>.incomplete`, renamed only when whole: a failed
conversion leaves no folder an engine could load, and the next caller tries again.

A conversion that changes numbers (quantized ONNX) must keep every vector of FIXED_SENTENCES at cosine
ACCEPTED_COSINE or above against the torch model, checked at export, or it is refused with its figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from deployments.state.safe_paths import check_name, inside

CONVERSIONS = ("ctranslate2-int8", "ctranslate2-float16", "onnx-fp32")
ACCEPTED_COSINE = 0.99  # the least cosine any fixed sentence may keep against the torch model
FIXED_SENTENCES = [
    "A cat sits on the mat.", "Stock prices fell sharply on Monday.", "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog.", "Ray Serve runs one deployment per model.",
    "Il pleut depuis trois jours.", "Bring two eggs, flour and a pinch of salt.", "Error 404: page not found",
    "short", "The committee postponed its decision until the next quarterly meeting in Brussels.",
]
REPORT = "conversion.json"  # what a conversion wrote: the conversion, its source and its checks


class ConversionFailed(RuntimeError):
    pass


def converted_root(cache_dir: Path, model: str) -> Path:
    """The folder holding every conversion of `model`."""
    return inside(cache_dir, "converted", check_name(model, "model"))


def converted_folder(cache_dir: Path, model: str, conversion: str, source: str) -> Path:
    """Where `model`'s `conversion` of the snapshot folder `source` lives (its name: the snapshot's commit)."""
    if conversion not in CONVERSIONS:
        raise ValueError(f"Unknown conversion '{conversion}'; known: {', '.join(CONVERSIONS)}")
    return inside(converted_root(cache_dir, model), f"{conversion}-{Path(source).name}")


def convert_once(cache_dir: Path, model: str, source: str, conversion: str, timeout_s: float = 1800) -> str:
    """The converted folder, converting now if it is not there whole (blocking: run it in a thread)."""
    target = converted_folder(cache_dir, model, conversion, source)
    if (target / REPORT).is_file():
        return str(target)
    partial = target.with_name(target.name + ".incomplete")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", __name__, conversion, source, str(partial)],
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not (partial / REPORT).is_file():
        shutil.rmtree(partial, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConversionFailed(f"Converting '{model}' for {conversion} failed: {reason}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return str(target)


def to_ctranslate2(source: str, target: str, quantization: str) -> dict:
    import ctranslate2

    files = [name for name in ("tokenizer.json", "preprocessor_config.json") if (Path(source) / name).exists()]
    converter = ctranslate2.converters.TransformersConverter(source, copy_files=files)
    converter.convert(target, quantization=quantization, force=True)
    return {"quantization": quantization}


def to_onnx(source: str, target: str) -> dict:
    """The whole sentence-transformers model (transformer, pooling, normalization) as one ONNX graph with
    dynamic batch and sequence axes, its tokenizer files beside it, checked against torch."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(source, device="cpu", local_files_only=True).eval()

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.encoder(features)["sentence_embedding"]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = encoder.tokenize(FIXED_SENTENCES[:2])
    example.setdefault("token_type_ids", torch.zeros_like(example["input_ids"]))
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"sentence_embedding": {0: "batch"}}
    with torch.inference_mode():
        torch.onnx.export(Whole().eval(), tuple(example[n] for n in names), str(Path(target) / "model.onnx"),
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    encoder.tokenizer.save_pretrained(target)
    (Path(target) / "max_seq_length").write_text(str(encoder.max_seq_length))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(Path(target) / "model.onnx"), providers=["CPUExecutionProvider"])
    features = encoder.tokenize(FIXED_SENTENCES)
    feed = {n: features[n].numpy() if n in features else np.zeros_like(features["input_ids"].numpy())
            for n in names}
    ours = session.run(None, feed)[0]
    reference = encoder.encode(FIXED_SENTENCES, convert_to_numpy=True)
    cosines = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    if cosines.min() < ACCEPTED_COSINE:
        raise ConversionFailed(f"ONNX vectors drift from the torch model's: cosine min {cosines.min():.4f}, mean "
                               f"{cosines.mean():.4f} over {len(cosines)} sentences (at least {ACCEPTED_COSINE})")
    return {"cosine_min": round(float(cosines.min()), 6), "cosine_mean": round(float(cosines.mean()), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert one cached checkpoint (run by the model manager).")
    parser.add_argument("conversion", choices=CONVERSIONS)
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args()
    Path(args.target).mkdir(parents=True, exist_ok=True)
    if args.conversion.startswith("ctranslate2-"):
        checks = to_ctranslate2(args.source, args.target, args.conversion.removeprefix("ctranslate2-"))
    else:
        checks = to_onnx(args.source, args.target)
    report = {"conversion": args.conversion, "source": args.source, **checks}
    (Path(args.target) / REPORT).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
