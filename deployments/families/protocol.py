"""What the families' protocols share: the non-blank rule and its schema word, the prompt length every
generation family takes, the seed range, and durations checked against the catalog and said as seed 002 says
them."""

from __future__ import annotations

import secrets

from pydantic import ValidationError

from deployments.errors import InvalidRequest
from registry import ModelEntry

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**53 - 1  # the largest integer every JSON client holds exactly (JavaScript's numbers are doubles)
NONBLANK = r"\S"  # the schema's word for what nonblank_prompt (and the other blank checks) let through


def validation_problems(bad: ValidationError, whole: str) -> str:
    """A pydantic error as one line, `field.path: message; ...` (`whole` names a problem of the whole value)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in bad.errors())


def new_seed() -> int:
    """The seed of a request that named none (returned to the client, who can repeat the result with it);
    below 2**31, so it and seed + a request's index (image i, attempt i) fit every client's ints."""
    return secrets.randbelow(2**31)


def nonblank_prompt(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("prompt must not be empty")
    return value


def format_seconds(seconds: float) -> str:
    """31 -> '31', 31.5 -> '31.5' (as seed 002's message shows durations)."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def check_duration(entry: ModelEntry, duration: float) -> None:
    """Seed 002's limit, from the catalog (so CATALOG__<MODEL>__MAX_DURATION_SECONDS overrides it)."""
    limit = entry.specs.max_duration_seconds
    if limit is not None and duration > limit:
        raise InvalidRequest(f"Duration {format_seconds(duration)}s exceeds model limit of {format_seconds(limit)}s")
