"""Tiny random-weight Demucs models saved in the Hugging Face layout Demucs 4.1 downloads.

The layout is what demucs' `tools/export_hf.py` writes and `demucs.hf.get_hf_model` reads:
`<name>.yaml` (`models: [sig, ...]`, optional `weights`) and one `<sig>.safetensors` per model,
whose metadata holds `klass` ("module.ClassName") and the init `args`/`kwargs` as JSON, with
Fractions as {"_type": "fraction", ...}. The models are the real demucs classes, only smaller.
Independent of `deployments/` on purpose: it stands in for files published by someone else.
"""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import torch
import yaml


def _json_default(value):
    """As in tools/export_hf.py: Fractions (HTDemucs' `segment`) in the form demucs.hf decodes."""
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    return str(value)


def tiny_model(klass: str, sources, segment_seconds: float):
    """A real HTDemucs / HDemucs with few channels (depth and nfft kept: shrinking those is slower)."""
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    segment = Fraction(str(segment_seconds))  # e.g. 7.8 -> 39/5, like the released htdemucs
    if klass == "htdemucs":
        return HTDemucs(list(sources), channels=8, depth=4, t_layers=2, samplerate=44100, segment=segment)
    if klass == "hdemucs":
        return HDemucs(list(sources), channels=4, depth=6, samplerate=44100, segment=segment)
    raise ValueError(f"unknown klass {klass!r} (htdemucs or hdemucs)")


def save_safetensors_model(model, path: Path) -> None:
    """One model the way tools/export_hf.py converts a checkpoint: state + klass/args/kwargs metadata."""
    from safetensors.torch import save_file

    args, kwargs = model._init_args_kwargs  # recorded by demucs' @capture_init, as serialize_model uses
    metadata = {"klass": f"{type(model).__module__}.{type(model).__qualname__}",
                "args": json.dumps(args, default=_json_default),
                "kwargs": json.dumps(kwargs, default=_json_default)}
    state = {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def build_tiny_demucs(folder: Path, name: str, *, sources=("drums", "bass", "other", "vocals"), bag_size=1,
                      klass="htdemucs", segment_seconds=1.0, seed=0, weights=None) -> Path:
    """Write a bag of `bag_size` tiny models into `folder`; the same arguments give the same files.

    With bag_size > 1 and no `weights`, model i gets weight 1 on the sources k with k % bag_size == i
    and 0.25 on the others (non-trivial, like htdemucs_ft's per-source specialists, yet every
    source keeps a positive total)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sigs = []
    for index in range(bag_size):
        with torch.random.fork_rng(devices=[]):  # deterministic weights without touching the caller's RNG
            torch.manual_seed(seed * 1000 + index)
            model = tiny_model(klass, sources, segment_seconds)
        sig = hashlib.sha256(f"{name}-{klass}-{seed}-{index}".encode()).hexdigest()[:8]
        save_safetensors_model(model, folder / f"{sig}.safetensors")
        sigs.append(sig)
    bag = {"models": sigs}
    if weights is None and bag_size > 1:
        weights = [[1.0 if k % bag_size == i else 0.25 for k in range(len(sources))] for i in range(bag_size)]
    if weights is not None:
        bag["weights"] = [[float(w) for w in row] for row in weights]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(bag, sort_keys=False))
    return folder
