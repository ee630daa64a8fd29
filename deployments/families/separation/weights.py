"""Load a Demucs model from our own cache folder, in the Hugging Face layout Demucs 4.1 downloads.

`demucs.hf.get_hf_model` would fetch the files itself; we only borrow its format (and its loader,
`load_safetensors_model`), so the files come from the model manager's cache and nothing downloads.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from demucs.apply import BagOfModels
from demucs.hf import load_safetensors_model


def bag_definition(folder: Path, name: str) -> Path:
    """`<name>.yaml`, or the folder's only yaml (repos hold one bag; its name may differ from ours)."""
    folder = Path(folder)
    wanted = folder / f"{name}.yaml"
    if wanted.is_file():
        return wanted
    found = sorted(path.name for path in folder.glob("*.yaml")) if folder.is_dir() else []
    if len(found) == 1:
        return folder / found[0]
    raise FileNotFoundError(f"no bag definition {name}.yaml in {folder} "
                            f"(yaml files found: {', '.join(found) or 'none'})")


def load_separator(folder: Path, name: str) -> BagOfModels:
    """The bag of models in `folder`, in eval mode, exactly as `demucs.hf.get_hf_model` builds it:
    one `<sig>.safetensors` per signature listed under `models`, plus optional `weights`/`segment`."""
    folder = Path(folder)
    with open(bag_definition(folder, name)) as file:
        bag = yaml.safe_load(file) or {}
    if not bag.get("models"):
        raise ValueError(f"bag definition in {folder} lists no models")
    missing = [sig for sig in bag["models"] if not (folder / f"{sig}.safetensors").is_file()]
    if missing:
        raise FileNotFoundError(f"missing weights in {folder}: {', '.join(f'{sig}.safetensors' for sig in missing)}")
    models = [load_safetensors_model(folder / f"{sig}.safetensors") for sig in bag["models"]]
    return BagOfModels(models, bag.get("weights"), bag.get("segment")).eval()
