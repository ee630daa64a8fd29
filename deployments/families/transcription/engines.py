"""The Whisper engines behind one contract (WhisperEngine), picked by the model's `engine`: transformers
(the reference) or CTranslate2 (faster-whisper's runtime, on a copy the model manager converts once). Both
take a batch of windows of one request shape and give each window's pieces, words, language and
no-speech probability; the deployment cuts, batches and merges windows the same way for either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from deployments.errors import InvalidRequest
from deployments.families.transcription.protocol import TranscriptionOptions
from deployments.families.transcription.transcripts import (
    Piece,
    WindowResult,
    compression_ratio,
    split_at_timestamps,
    words_of,
)
from registry import ModelEntry


class WhisperEngine(Protocol):
    """What the transcription deployment asks of an engine."""

    sampling_rate: int  # the audio rate the model hears
    chunk_length: int  # seconds of audio one window holds at most
    generation_config: Any  # transformers' GenerationConfig of the checkpoint: tokens, languages, tasks

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str) -> None: ...

    def transcribe(self, windows: list[np.ndarray], options: TranscriptionOptions,
                   max_new_tokens: int) -> list[WindowResult]:
        """One result per window; every window shares the options' task, temperature and language rule."""

    def torch_modules(self) -> list:
        """The modules a replica reports (memory, dtypes) and optimizes (none for CTranslate2)."""


def check_options(entry: ModelEntry, config: Any, options: TranscriptionOptions) -> None:
    """What only the loaded model can tell: the languages and tasks it was trained for."""
    known = [token.strip("<|>") for token in getattr(config, "lang_to_id", None) or {}]
    if options.language and known and options.language not in known:
        raise InvalidRequest(f"Model '{entry.id}' does not know language '{options.language}'; "
                             f"it knows {', '.join(known)}")
    if options.language not in (None, "en") and not known:
        raise InvalidRequest(f"Model '{entry.id}' transcribes English only")
    if options.task not in (getattr(config, "task_to_id", None) or {"transcribe": None}):
        raise InvalidRequest(f"Model '{entry.id}' cannot {options.task}")


def language_of(ids: list[int], config: Any) -> str:
    """The language token Whisper was prompted with or detected (the second token), as a code."""
    by_id = {token_id: token.strip("<|>") for token, token_id in (getattr(config, "lang_to_id", None) or {}).items()}
    return by_id.get(ids[1], "en") if len(ids) > 1 else "en"


def window_result(decode: Callable[[list[int]], str], config: Any, duration: float, ids: list[int],
                  logprobs: list[float], times: list[float] | None, no_speech: float,
                  batch_size: int) -> WindowResult:
    """Pieces (and words) of one window from its ids (prompt included), each id's log-probability and,
    for word timestamps, each id's start time in seconds."""
    pieces, timed = [], []
    for start, end, positions in split_at_timestamps(ids, config, duration):
        tokens = [ids[p] for p in positions]
        text = decode(tokens)
        sampled = logprobs[positions[0]:positions[-1] + 2] if positions else []  # its text and closing time
        pieces.append(Piece(start, end, tokens, text, round(sum(sampled) / max(1, len(sampled)), 6),
                            compression_ratio(text)))
        if times is not None:
            timed += [(ids[p], min(times[p], duration),
                       min(times[p + 1] if p + 1 < len(times) else duration, duration)) for p in positions]
    words = None if times is None else words_of(timed, decode)
    return WindowResult(pieces, words, language_of(ids, config), no_speech, batch_size)


class TransformersWhisper:
    """WhisperForConditionalGeneration: per-token log-probabilities, and word times from its alignment heads."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        dtype = torch.float16 if device == "cuda" else torch.float32
        model = WhisperForConditionalGeneration.from_pretrained(paths["weights"], dtype=dtype, local_files_only=True)
        self.processor = WhisperProcessor.from_pretrained(paths["weights"], local_files_only=True)
        self.model, self.device = model.to(device).eval(), device  # type: ignore[arg-type]
        self.generation_config: Any = model.generation_config
        self.sampling_rate = self.processor.feature_extractor.sampling_rate
        self.chunk_length = self.processor.feature_extractor.chunk_length

    def torch_modules(self) -> list:
        return [self.model]

    def decode(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True)

    def transcribe(self, windows: list[np.ndarray], options: TranscriptionOptions,
                   max_new_tokens: int) -> list[WindowResult]:
        import torch

        extractor, model, config = self.processor.feature_extractor, self.model, self.generation_config
        features = extractor(windows, sampling_rate=self.sampling_rate,
                             return_tensors="pt").input_features.to(self.device, model.dtype)
        multilingual = getattr(config, "is_multilingual", True)
        languages = [options.language] * len(windows) if options.language and multilingual else None
        words = options.word_timestamps and getattr(config, "alignment_heads", None) is not None
        with torch.inference_mode():
            encoded = model.get_encoder()(features)
            start = torch.full((len(windows), 1), config.decoder_start_token_id, device=features.device)
            first = model(encoder_outputs=encoded, decoder_input_ids=start).logits[:, -1].float()
            no_speech = first.softmax(-1)[:, config.no_timestamps_token_id - 1].tolist()  # as transformers finds it
            out = model.generate(
                encoder_outputs=encoded, task=options.task if multilingual else None, language=languages,
                temperature=options.temperature,
                return_timestamps=True, force_unique_generate_call=True,  # one pass per window, no seeking
                max_new_tokens=max_new_tokens, return_dict_in_generate=True, output_scores=True,
                return_token_timestamps=words,
            )
            sequences = out["sequences"]
            steps = torch.stack(out["scores"], dim=1).float().log_softmax(-1)  # (windows, steps, vocab)
            prompt = sequences.shape[1] - steps.shape[1]
            logprobs = steps.gather(-1, sequences[:, prompt:, None])[..., 0]
        times = out["token_timestamps"].tolist() if words else None
        return [window_result(self.decode, config, len(audio) / self.sampling_rate, ids,
                              [0.0] * prompt + lps.tolist(), times[row] if times else None, no_speech[row],
                              len(windows))
                for row, (audio, ids, lps) in enumerate(zip(windows, sequences.tolist(), logprobs))]


class CTranslate2Whisper:
    """Whisper on CTranslate2 (faster-whisper's runtime) from the manager's converted copy (paths["converted"]):
    int8 on a CPU, float16 on a GPU; features, prompts and timestamps as the transformers engine makes them.
    CTranslate2 scores whole sequences, so every segment of a window carries the window's avg_logprob, and it
    decodes at most half its max_length (448) per window: max_new_tokens above 224 decode 224."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import ctranslate2
        import torch
        from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(paths["weights"], local_files_only=True)
        self.generation_config: Any = GenerationConfig.from_pretrained(paths["weights"], local_files_only=True)
        self.max_length = WhisperConfig.from_pretrained(paths["weights"], local_files_only=True).max_target_positions
        self.sampling_rate = self.processor.feature_extractor.sampling_rate
        self.chunk_length = self.processor.feature_extractor.chunk_length
        self.hop_length = self.processor.feature_extractor.hop_length
        self.model = ctranslate2.models.Whisper(paths["converted"], device=device,
                                                compute_type="float16" if device == "cuda" else "int8",
                                                intra_threads=torch.get_num_threads())

    def torch_modules(self) -> list:
        return []

    def decode(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True)

    def transcribe(self, windows: list[np.ndarray], options: TranscriptionOptions,
                   max_new_tokens: int) -> list[WindowResult]:
        import ctranslate2

        config = self.generation_config
        features = self.processor.feature_extractor(windows, sampling_rate=self.sampling_rate,
                                                    return_tensors="np").input_features
        encoded = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features, np.float32)),
                                    to_cpu=False)
        prompts = self._prompts(encoded, len(windows), options)
        decoded = self.model.generate(
            encoded, prompts, beam_size=1, max_length=min(2 * max_new_tokens, self.max_length), return_scores=True,
            return_no_speech_prob=True, sampling_temperature=options.temperature or 1.0,
            sampling_topk=0 if options.temperature else 1)
        sequences = [prompt + result.sequences_ids[0] for prompt, result in zip(prompts, decoded)]
        times = self._token_times(features, windows, prompts, sequences) if options.word_timestamps else None
        return [window_result(self.decode, config, len(audio) / self.sampling_rate, ids,
                              [result.scores[0]] * len(ids), times[row] if times else None, result.no_speech_prob,
                              len(windows))
                for row, (audio, ids, result) in enumerate(zip(windows, sequences, decoded))]

    def _prompts(self, encoded: Any, count: int, options: TranscriptionOptions) -> list[list[int]]:
        """<|startoftranscript|>, then for a multilingual model the language (given, or the likeliest
        language token after the start) and the task."""
        config = self.generation_config
        start = config.decoder_start_token_id
        languages = getattr(config, "lang_to_id", None) or {}
        if not languages or not getattr(config, "is_multilingual", True):
            return [[start]] * count
        if options.language:
            chosen = [languages[f"<|{options.language}|>"]] * count
        else:  # the first step's logits over the language tokens (what detect_language does, for any vocabulary)
            first = self.model.generate(encoded, [[start]] * count, beam_size=1, max_length=2,
                                        return_logits_vocab=True)
            ids = np.array(list(languages.values()))
            chosen = [int(ids[np.asarray(result.logits[0][0])[ids].argmax()]) for result in first]
        return [[start, language, config.task_to_id[options.task]] for language in chosen]

    def _token_times(self, features: np.ndarray, windows: list[np.ndarray], prompts: list[list[int]],
                     sequences: list[list[int]]) -> list[list[float]]:
        """Each id's start time from the cross-attention alignment (CTranslate2's align, as faster-whisper
        uses it): a text token starts where the alignment path reaches it; any other id where the next
        text token (or the end) starts. Aligned one window at a time (each has its own prompt), from its
        features: a second encoder pass, paid only for word timestamps."""
        import ctranslate2

        eos = self.generation_config.eos_token_id
        eos = min(eos) if isinstance(eos, list) else eos  # text tokens come before the first special token
        times: list[list[float]] = []
        for row, (prompt, ids) in enumerate(zip(prompts, sequences)):
            text = [t for t in ids[len(prompt):] if t < eos]
            if not text:
                times.append([len(windows[row]) / self.sampling_rate] * len(ids))
                continue
            one = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[row:row + 1], np.float32))
            aligned = self.model.align(one, prompt, [text], [len(windows[row]) // self.hop_length],
                                       median_filter_width=7)[0].alignments
            text_index = np.array([pair[0] for pair in aligned])
            time_index = np.array([pair[1] for pair in aligned])
            jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
            starts = (time_index[jumps] / (self.sampling_rate / self.hop_length / 2)).tolist()
            seen, row_times = 0, []
            for position, token in enumerate(ids):
                row_times.append(starts[min(seen, len(starts) - 1)])
                seen += position >= len(prompt) and token < eos
            times.append(row_times)
        return times


ENGINES: dict[str, type[WhisperEngine]] = {"transformers": TransformersWhisper, "ctranslate2": CTranslate2Whisper}
