"""Batched Demucs separation against demucs' own apply_model, on tiny real models in the HF layout."""

from __future__ import annotations

import contextlib
import math
import random

import pytest
import torch
from demucs.apply import apply_model
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs

from deployments.families.separation.batched import separate
from deployments.families.separation.weights import load_separator
from tests.tiny_demucs import build_tiny_demucs

SAMPLERATE = 44100
SIX_SOURCES = ("drums", "bass", "other", "vocals", "guitar", "piano")


@pytest.fixture(scope="module")
def mix() -> torch.Tensor:
    """~3 s of stereo: a sine per channel plus noise."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(3.1 * SAMPLERATE)) / SAMPLERATE
    tones = torch.stack([torch.sin(2 * math.pi * 220 * t), torch.sin(2 * math.pi * 331 * t)])
    return (tones + 0.5 * torch.randn(2, t.numel(), generator=generator))[None]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each tiny bag built once, then loaded through load_separator as the service would."""
    root = tmp_path_factory.mktemp("separators")
    built = {"single": dict(), "bag": dict(bag_size=2, seed=1), "six": dict(sources=SIX_SOURCES, seed=2),
             "hdemucs": dict(klass="hdemucs", bag_size=2, seed=3), "long": dict(segment_seconds=1.2, seed=4)}
    return {name: load_separator(build_tiny_demucs(root / name, name, **kwargs), name)
            for name, kwargs in built.items()}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).norm() / ref.norm()).item()


def both(model, mix, seed=0, **kwargs):
    """apply_model and separate from the same RNG state; also checks both leave the same RNG state."""
    shifts, overlap = kwargs.get("shifts", 1), kwargs.get("overlap", 0.25)
    random.seed(seed)
    ref = apply_model(model, mix, shifts=shifts, split=True, overlap=overlap, segment=kwargs.get("segment"))
    after_ref = random.random()
    random.seed(seed)
    out = separate(model, mix, **kwargs)
    assert random.random() == after_ref, "separate drew a different number of random values than apply_model"
    return out, ref


@contextlib.contextmanager
def forward_inputs(model):
    """Yields a list that collects (batch, length) of every real forward call of the bag's models."""
    seen = []
    hooks = [member.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[::2])))
             for member in model.models]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("shifts", [0, 1])
def test_single_htdemucs_matches_apply_model(models, mix, shifts):
    model = models["single"].models[0]  # the bare model, not a bag
    assert isinstance(model, HTDemucs)
    out, ref = both(model, mix, shifts=shifts, batch_size=3)
    assert out.shape == ref.shape == (1, 4, 2, mix.shape[-1]) and out.dtype == torch.float32
    assert relative_error(out, ref) < 1e-4


def test_batches_are_bounded_and_partial(models, mix):
    model = models["single"]
    with forward_inputs(model) as seen:
        separate(model, mix, shifts=1, batch_size=3)
    training_length = int(model.models[0].segment * SAMPLERATE)
    assert {length for _, length in seen} == {training_length}  # HTDemucs pads every chunk to its segment
    assert max(batch for batch, _ in seen) == 3 and min(batch for batch, _ in seen) < 3


def test_bag_with_weights_matches_apply_model(models, mix):
    model = models["bag"]
    assert model.weights[0] != model.weights[1] and len(model.models) == 2
    for shifts in (1, 2):  # the second model's shifts come after the first one's forwards
        out, ref = both(model, mix, seed=7, shifts=shifts, batch_size=3)
        assert out.shape == (1, 4, 2, mix.shape[-1])
        assert relative_error(out, ref) < 1e-4


def test_six_sources(models, mix):
    out, ref = both(models["six"], mix, shifts=1, batch_size=4)
    assert out.shape == ref.shape == (1, 6, 2, mix.shape[-1])
    assert relative_error(out, ref) < 1e-4


def test_hdemucs_bag_with_short_last_segment(models, mix):
    model = models["hdemucs"]
    assert all(isinstance(member, HDemucs) and not hasattr(member, "valid_length") for member in model.models)
    with forward_inputs(model) as seen:
        out, ref = both(model, mix, seed=3, shifts=1, batch_size=3)
    assert len({length for _, length in seen}) > 1  # the last chunks run at their own lengths
    assert max(batch for batch, _ in seen) == 3
    assert out.shape == (1, 4, 2, mix.shape[-1])
    assert relative_error(out, ref) < 1e-4


def test_segment_override_matches_apply_model(models, mix):
    out, ref = both(models["long"], mix, shifts=1, segment=0.7, overlap=0.5, batch_size=5)
    assert relative_error(out, ref) < 1e-4


def test_progress_reports_every_batch(models, mix):
    calls = []
    separate(models["bag"], mix, shifts=0, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    # 3.1 s in 1 s segments with 25% overlap: 5 segments per model, batches of 3 then 2, two models.
    assert calls == [(3, 10), (5, 10), (8, 10), (10, 10)]


def test_progress_total_counts_shifts(models, mix):
    calls = []
    separate(models["single"], mix, shifts=2, batch_size=4, progress=lambda done, total: calls.append((done, total)))
    # Each shifted pass is 3.1 s plus up to 0.5 s: 5 segments; batches span the two shifts.
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_raising_callback_cancels(models, mix):
    class Cancelled(Exception):
        pass

    calls = []

    def cancel(done, total):
        calls.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        separate(models["bag"], mix, shifts=1, batch_size=2, progress=cancel)
    assert calls == [2]


def test_autocast_returns_float32(models, mix):
    out, ref = both(models["single"], mix, shifts=1, autocast_dtype=torch.bfloat16)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert relative_error(out, ref) < 5e-2


def test_segment_over_the_model_limit(models, mix):
    bag = models["long"]
    with pytest.raises(ValueError, match=r"segment 2\.5s exceeds model limit of 1\.2s"):
        separate(bag, mix, segment=2.5)
    single = bag.models[0]
    assert isinstance(single, HTDemucs)
    with pytest.raises(ValueError, match=r"2\.5s .* 1\.2s"):
        separate(single, mix, segment=2.5)


@pytest.mark.parametrize("kwargs", [dict(overlap=1.0), dict(overlap=-0.1), dict(shifts=-1), dict(batch_size=0)])
def test_invalid_arguments(models, mix, kwargs):
    with pytest.raises(ValueError):
        separate(models["single"], mix, **kwargs)


def test_load_separator_needs_a_bag_definition(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bag definition htdemucs.yaml") as error:
        load_separator(tmp_path, "htdemucs")
    assert str(tmp_path) in str(error.value)
    (tmp_path / "a.yaml").write_text("models: []\n")
    (tmp_path / "b.yaml").write_text("models: []\n")
    with pytest.raises(FileNotFoundError, match="a.yaml, b.yaml"):
        load_separator(tmp_path, "htdemucs")


def test_load_separator_uses_the_only_yaml(tmp_path):
    build_tiny_demucs(tmp_path, "published-name")
    model = load_separator(tmp_path, "our-catalog-id")
    assert len(model.models) == 1 and not model.training and model.sources == ["drums", "bass", "other", "vocals"]
