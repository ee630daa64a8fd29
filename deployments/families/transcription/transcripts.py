"""From Whisper's output ids to a transcript: windows that overlap, segments and words per window,
merged into one clip-long transcript, and subtitles.

Long audio is cut into 30 s windows that overlap (5 s by default), so a word spoken across a
window's edge is heard whole by the next window. Each window owns the time from the middle of its
overlap with the window before to the middle of its overlap with the one after; a segment (or a
word) is taken from the window that owns its midpoint. Segments stay in order and cover the clip.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

TIME_PRECISION = 0.02  # seconds per Whisper timestamp token


@dataclass
class Piece:
    """One segment of one window; times in seconds into that window."""

    start: float
    end: float
    tokens: list[int]
    text: str
    avg_logprob: float  # mean log-probability of the segment's sampled tokens (timestamps included)
    compression_ratio: float  # of the text's UTF-8 bytes under zlib, as openai-whisper computes it


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class WindowResult:
    pieces: list[Piece]
    words: list[Word] | None  # None unless word timestamps were asked for
    language: str
    no_speech_prob: float  # probability of <|nospeech|> right after <|startoftranscript|>
    batch_size: int


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Where each window begins (in samples): every `window - overlap`, until one reaches the end."""
    hop = max(1, window - overlap)
    starts = [0]
    while starts[-1] + window < total:
        starts.append(starts[-1] + hop)
    return starts


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def split_at_timestamps(ids: list[int], config, duration: float) -> list[tuple[float, float, list[int]]]:
    """A window's generated ids as (start, end, positions of the text tokens in `ids`) pieces
    covering [0, duration] in order.

    Text between timestamp tokens is a piece from the timestamp before it to the one after it.
    Timestamps are clamped to the window and never go backwards; text left with no time (after a
    timestamp clamped to the window's end) joins the piece before it. The first piece starts at 0
    and the last ends at `duration`; a window with no text is one empty piece.
    """
    timestamp_begin = config.no_timestamps_token_id + 1
    prompt = {config.decoder_start_token_id, *(getattr(config, "lang_to_id", None) or {}).values(),
              *(getattr(config, "task_to_id", None) or {}).values(), config.no_timestamps_token_id}
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    first = 0
    while first < len(ids) and ids[first] in prompt:
        first += 1
    pieces: list[tuple[float, float, list[int]]] = []
    positions: list[int] = []
    last, opened = 0.0, 0.0
    for position in range(first, len(ids)):
        token = ids[position]
        if token in eos:
            break
        if token >= timestamp_begin:
            last = min(max(last, (token - timestamp_begin) * TIME_PRECISION), duration)
            if positions:
                pieces.append((opened, last, positions))
                positions = []
        else:
            if not positions:
                opened = last
            positions.append(position)
    if positions:
        pieces.append((opened, duration, positions))
    if not pieces:
        return [(0.0, duration, [])]
    merged = pieces[:1]
    for start, end, kept in pieces[1:]:  # text after timestamps clamped to the window's end joins the piece before
        if start < end:
            merged.append((start, end, kept))
        else:
            merged[-1] = (merged[-1][0], end, merged[-1][2] + kept)
    merged[0] = (0.0, *merged[0][1:])
    merged[-1] = (merged[-1][0], duration, merged[-1][2])
    return merged


def words_of(tokens: list[tuple[int, float, float]], decode) -> list[Word]:
    """(token id, start, end) per text token as words: a token whose text begins with a space begins a
    word; each word's tokens are decoded together, so characters split across byte tokens survive."""
    groups: list[tuple[list[int], float, float]] = []
    for token, start, end in tokens:
        if groups and not decode([token])[:1].isspace():
            groups[-1] = (groups[-1][0] + [token], groups[-1][1], end)
        else:
            groups.append(([token], start, end))
    words = [Word(decode(ids).strip(), start, end) for ids, start, end in groups]
    return [word for word in words if word.word]


@dataclass
class Merged:
    segments: list[dict]  # OpenAI's TranscriptionSegment fields
    words: list[Word] | None
    text: str


def merge_windows(results: list[WindowResult], starts: list[int], rate: int, window: int, total: int,
                  temperature: float) -> Merged:
    """One transcript from overlapping windows: each keeps the segments and words whose midpoint it owns."""
    duration = total / rate
    cuts = [0.0] + [(nxt + start + window) / 2 / rate for start, nxt in zip(starts, starts[1:])] + [duration]
    segments: list[dict] = []
    texts: list[str] = []
    words: list[Word] | None = None if results[0].words is None else []
    for k, (offset, result) in enumerate(zip(starts, results)):
        low, high, shift = cuts[k], cuts[k + 1], offset / rate
        until = math.inf if k == len(results) - 1 else high  # the last window owns what lies at the very end
        owned = [p for p in result.pieces if low <= shift + (p.start + p.end) / 2 < until] or \
            [max(result.pieces, key=lambda p: min(high, shift + p.end) - max(low, shift + p.start))]
        mine: list[dict] = []
        texts.extend(piece.text for piece in owned)
        for i, piece in enumerate(owned):
            start = low if i == 0 else max(shift + piece.start, mine[-1]["end"])
            end = high if i == len(owned) - 1 else min(max(shift + piece.end, start), high)
            mine.append({"id": len(segments) + i, "seek": round(offset * 100 / rate), "start": round(start, 3),
                         "end": round(end, 3), "text": piece.text.strip(), "tokens": piece.tokens,
                         "temperature": temperature, "avg_logprob": piece.avg_logprob,
                         "compression_ratio": piece.compression_ratio,
                         "no_speech_prob": round(result.no_speech_prob, 6)})
        if words is not None and result.words is not None:
            words.extend(_owned_words(result.words, shift, low, until, mine, words[-1].end if words else 0.0))
        segments.extend(mine)
    return Merged(segments, words, "".join(texts).strip())


def _owned_words(window_words: list[Word], shift: float, low: float, high: float, segments: list[dict],
                 previous_end: float) -> list[Word]:
    """The window's words whose midpoint it owns, moved into the segment holding that midpoint and in order."""
    kept = []
    for word in window_words:
        middle = shift + (word.start + word.end) / 2
        if not low <= middle < high:
            continue
        segment = next((s for s in segments if s["start"] <= middle < s["end"]), segments[-1])  # or the last
        start = min(max(shift + word.start, segment["start"], previous_end), segment["end"])
        end = min(max(shift + word.end, start), segment["end"])
        kept.append(Word(word.word, round(start, 3), round(end, 3)))
        previous_end = end
    return kept


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def _cues(segments: list) -> list[tuple[float, float, str]]:
    """(start, end, text) of segments with text, on one line each (a blank line would end a cue)."""
    return [(s.start, s.end, " ".join(s.text.split()).replace("-->", "->")) for s in segments if s.text.strip()]


def to_srt(segments: list) -> str:
    return "".join(f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n\n"
                   for i, (start, end, text) in enumerate(_cues(segments), 1))


def to_vtt(segments: list) -> str:
    return "WEBVTT\n\n" + "".join(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n\n"
                                  for start, end, text in _cues(segments))
