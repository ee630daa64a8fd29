"""Demucs separation with the model run on batches of segments instead of one segment per call.

`demucs.apply.apply_model` calls the model once per segment (7.8 s of audio for htdemucs), which
leaves a GPU mostly idle. `separate` computes the same thing (bag weights, random shifts, chunk
padding, triangle overlap-add, all from demucs' own helpers) but stacks up to `batch_size` padded
segments per model call, adding each batch's outputs into the track buffers as soon as it is done.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import torch
from demucs.apply import BagOfModels, TensorChunk
from demucs.htdemucs import HTDemucs
from demucs.utils import center_trim


class _Pass:
    """One model over the (shifted) mix, i.e. one `split` level of apply_model, with its buffers."""

    def __init__(self, source: TensorChunk, trim: int):
        self.source, self.trim = source, trim  # output samples before `trim` belong to the shift padding
        self.out = self.sum_weight = None


def _valid_length(model, chunk_length: int, segment) -> int:
    """The padded input length apply_model gives the model for a chunk (its non-split branch)."""
    if isinstance(model, HTDemucs) and segment is not None:
        return int(segment * model.samplerate)
    return model.valid_length(chunk_length) if hasattr(model, "valid_length") else chunk_length


def _replay_forward_draws(model, forwards: int) -> None:
    """HTDemucs' transformer calls `random.randrange(sin_random_shift + 1)` on every forward, which
    advances Python's RNG even for randrange(1). apply_model runs one forward per segment between
    its shift draws; we run fewer, so we replay those draws to get the same shifts for a seed."""
    transformer = getattr(model, "crosstransformer", None)
    if isinstance(model, HTDemucs) and transformer is not None and transformer.emb == "sin":
        for _ in range(forwards):
            random.randrange(transformer.sin_random_shift + 1)


def _forward(model, x: torch.Tensor, autocast_dtype) -> torch.Tensor:
    """One model call on a batch; its RNG draws were already replayed while planning, so undo them."""
    state = random.getstate()
    try:
        with torch.no_grad(), (torch.autocast(x.device.type, dtype=autocast_dtype)
                               if autocast_dtype else contextlib.nullcontext()):
            return model(x).float()
    finally:
        random.setstate(state)


def _check(model, mix, shifts, overlap, segment, transition_power, batch_size, autocast_dtype) -> None:
    if mix.dim() != 3 or mix.shape[0] != 1:
        raise ValueError(f"mix must have shape (1, channels, length), got {tuple(mix.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if shifts < 0 or batch_size < 1 or transition_power < 1:
        raise ValueError(f"need shifts >= 0, batch_size >= 1 and transition_power >= 1, "
                         f"got {shifts}, {batch_size} and {transition_power}")
    if autocast_dtype not in (None, torch.float16, torch.bfloat16):
        raise ValueError(f"autocast_dtype must be None, torch.float16 or torch.bfloat16, got {autocast_dtype}")
    if segment is not None:
        limit = model.max_allowed_segment if isinstance(model, BagOfModels) else (
            model.segment if isinstance(model, HTDemucs) else float("inf"))
        if not 0 < segment <= limit:  # HTDemucs cannot attend beyond the length it was trained on
            raise ValueError(f"segment {float(segment):g}s exceeds model limit of {float(limit):g}s"
                             if segment > 0 else f"segment must be positive, got {segment}")


def separate(model, mix: torch.Tensor, *, shifts: int = 1, overlap: float = 0.25, segment=None,
             transition_power: float = 1.0, batch_size: int = 8, device=None, autocast_dtype=None,
             progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """apply_model(model, mix, shifts, split=True, overlap, segment, transition_power), batched.

    Returns (1, sources, channels, length) float32 on mix's device. With the same `random.seed`
    it draws the same shifts as apply_model (and leaves the RNG in the same state). Memory: the
    activations of one batch plus O(shifts * length) output buffers for the model being run.
    Models run on `device` (a lone model stays there, bag members go back, as in apply_model).
    `progress(done, total)` runs after every batch; an exception from it aborts the separation.
    """
    _check(model, mix, shifts, overlap, segment, transition_power, batch_size, autocast_dtype)
    device = mix.device if device is None else torch.device(device)
    is_bag = isinstance(model, BagOfModels)
    models, length = (list(model.models) if is_bag else [model]), mix.shape[-1]
    seg_lens = [int(sub.samplerate * (segment if segment is not None else sub.segment)) for sub in models]
    if min(int((1 - overlap) * seg_len) for seg_len in seg_lens) < 1:
        raise ValueError(f"overlap {overlap} leaves no stride between segments of {min(seg_lens)} samples")

    # Plan every segment first: the shift draws happen in apply_model's order, and `total` is known.
    plans, padded_mixes = [], {}
    for sub, seg_len in zip(models, seg_lens):
        stride, passes = int((1 - overlap) * seg_len), []
        if shifts:
            max_shift = int(0.5 * sub.samplerate)
            if max_shift not in padded_mixes:
                padded_mixes[max_shift] = TensorChunk(mix).padded(length + 2 * max_shift)
            for _ in range(shifts):
                offset = random.randint(0, max_shift)
                source = TensorChunk(padded_mixes[max_shift], offset, length + max_shift - offset)
                passes.append(_Pass(source, max_shift - offset))
                _replay_forward_draws(sub, len(range(0, source.length, stride)))
        else:
            passes.append(_Pass(TensorChunk(mix), 0))
            _replay_forward_draws(sub, len(range(0, length, stride)))
        groups: dict[int, list] = {}  # padded length -> segments, as a batch needs one length
        for p in passes:
            for offset in range(0, p.source.length, stride):
                chunk = TensorChunk(p.source, offset, seg_len)
                groups.setdefault(_valid_length(sub, chunk.length, segment), []).append((p, offset, chunk))
        plans.append((sub, seg_len, passes, groups))
    total, done = sum(len(jobs) for *_, groups in plans for jobs in groups.values()), 0

    estimates, totals = 0.0, [0.0] * len(models[0].sources)
    for (sub, seg_len, passes, groups), model_weights in zip(plans, model.weights if is_bag else [None]):
        # apply_model's triangle: peak in the middle, so overlapping segments cross-fade.
        weight = torch.cat([torch.arange(1, seg_len // 2 + 1, device=device),
                            torch.arange(seg_len - seg_len // 2, 0, -1, device=device)])
        weight = (weight / weight.max()) ** transition_power
        for p in passes:
            p.out = torch.zeros(1, len(sub.sources), mix.shape[1], p.source.length, device=mix.device)
            p.sum_weight = torch.zeros(p.source.length, device=mix.device)
        original_device = next(iter(sub.parameters())).device
        sub.to(device).eval()
        try:
            for valid_length, jobs in groups.items():
                for start in range(0, len(jobs), batch_size):
                    batch = jobs[start:start + batch_size]
                    y = _forward(sub, torch.cat([chunk.padded(valid_length) for *_, chunk in batch]).to(device),
                                 autocast_dtype)
                    for (p, offset, chunk), y_i in zip(batch, y):
                        w = weight[:chunk.length]
                        p.out[..., offset:offset + seg_len] += (w * center_trim(y_i, chunk.length)).to(mix.device)
                        p.sum_weight[offset:offset + seg_len] += w.to(mix.device)
                    del y
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
        finally:
            if is_bag:
                sub.to(original_device)
        out = 0.0
        for p in passes:  # as apply_model: normalize each pass, undo its shift, average the shifts
            p.out /= p.sum_weight
            out += p.out[..., p.trim:]
            p.out = p.sum_weight = None
        out /= max(shifts, 1)
        if not is_bag:
            return out
        for k, inst_weight in enumerate(model_weights):
            out[:, k] *= inst_weight
            totals[k] += inst_weight
        estimates += out
    for k in range(estimates.shape[1]):
        estimates[:, k] /= totals[k]
    return estimates
