"""Grammar-constrained decoding with llguidance: JSON schemas (structured outputs) and tool-call grammars.

A `Grammar` is checked once per request against the model's tokenizer (a schema llguidance cannot enforce
is refused with its own words, e.g. `Unimplemented keys: ["not"]`); each row then gets a `Matcher` that
masks the logits to the tokens the grammar allows and takes the token picked. llguidance was chosen over
xgrammar for its schema coverage: it enforces what it accepts and names what it cannot, where xgrammar
(faster per token) silently ignored some keywords; the measurements are in bench/README.md.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from deployments.errors import InvalidRequest

# Compact JSON: no free whitespace between tokens, so a model (a random one included) cannot pad forever.
JSON_OPTIONS: Any = {"whitespace_flexible": False}  # llguidance's JsonCompileOptions


class GrammarTokenizer:
    """The model's tokenizer as llguidance reads it; built on first use (about a second for a large
    vocabulary), once per loaded model."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: set[int]):
        self._tokenizer, self._vocab_size, self._eos = tokenizer, vocab_size, sorted(eos_ids)
        self._built: Any = None
        self._lock = threading.Lock()
        self._ids: dict[str, int | None] = {}

    def get(self):
        with self._lock:
            if self._built is None:
                import llguidance.hf

                self._built = llguidance.hf.from_tokenizer(self._tokenizer, n_vocab=self._vocab_size,
                                                           eos_token=self._eos)
            return self._built

    @property
    def eos_ids(self) -> list[int]:
        return self._eos

    def token_id(self, text: str) -> int | None:
        """The id of the one token spelled `text`, if the vocabulary has it (looked up once: a large
        vocabulary's dict takes tens of milliseconds to build)."""
        if text not in self._ids:
            self._ids[text] = self._tokenizer.get_vocab().get(text)
        return self._ids[text]


@dataclass(frozen=True)
class Grammar:
    """A checked llguidance grammar for one request. `calls`: its text is tool calls; `trigger`: the
    token that opens them (tool_choice auto switches the grammar on when the model picks it)."""

    text: str
    tokenizer: GrammarTokenizer
    calls: bool = False
    trigger: int | None = None

    def matcher(self) -> Matcher:
        return Matcher(self)


class Matcher:
    """One row's place in its grammar."""

    def __init__(self, grammar: Grammar):
        from llguidance import LLMatcher

        self._eos = grammar.tokenizer.eos_ids
        self._matcher = LLMatcher(grammar.tokenizer.get(), grammar.text, log_level=0)

    def mask(self, logits) -> None:
        """Set the logits of every token the grammar does not allow next to -inf (in place); when it
        allows none (it failed), only the end of the answer."""
        import numpy as np
        import torch

        bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), np.uint8), bitorder="little")
        allowed = bits[:logits.numel()].astype(bool)
        if not allowed.any():
            allowed[self._eos] = True
        logits.masked_fill_(torch.from_numpy(~allowed), float("-inf"))

    def take(self, token: int) -> None:
        self._matcher.consume_token(token)

    def finished(self) -> bool:
        """The grammar is complete and allows nothing more (or failed): the answer ends here."""
        return self._matcher.is_stopped() or self._matcher.is_error()


def checked(text: str, tokenizer: GrammarTokenizer, what: str, **kind: Any) -> Grammar:
    """`text` as a Grammar, or a 400 naming what llguidance cannot enforce in it."""
    from llguidance import LLMatcher

    problem = LLMatcher.validate_grammar(text, tokenizer.get())
    if problem:
        raise InvalidRequest(f"{what} cannot be enforced while decoding: {problem.strip()}")
    return Grammar(text, tokenizer, **kind)


SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")  # name -> schema
LITERALS = ("enum", "const", "default", "examples", "required")  # values, not schemas


def closed(schema: Any) -> Any:
    """`schema` with every object that lists its `properties` closed to others unless it says otherwise (as
    OpenAI's strict mode requires and xgrammar's strict mode assumes): a model is held to the keys it was
    given, instead of free to add keys (a random one never stops adding)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: closed(sub) for name, sub in value.items()}
        else:
            out[key] = value if key in LITERALS else closed(value)
    if "properties" in schema and "additionalProperties" not in schema and "patternProperties" not in schema:
        out["additionalProperties"] = False
    return out


def json_grammar(schema: dict[str, Any] | None, tokenizer: GrammarTokenizer, what: str) -> Grammar:
    """Answers that are JSON valid against `schema` (None: any JSON object)."""
    from llguidance import LLMatcher

    schema = {"type": "object"} if schema is None else closed(schema)
    try:
        text = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
    except ValueError as bad:
        raise InvalidRequest(f"{what} is not a JSON schema: {bad}") from None
    return checked(text, tokenizer, what)


def lark_json(schema: dict[str, Any]) -> str:
    """A schema (closed) as a Lark grammar's `%json` rule body (compact JSON)."""
    return "%json " + json.dumps({**closed(schema), "x-guidance": JSON_OPTIONS})
