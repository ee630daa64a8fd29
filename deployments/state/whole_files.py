"""Files that appear under their real name only once written whole: the cache and downloads write
through this, so a crash or a cancel never leaves a partial file where a reader looks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def whole_file(target: Path) -> Iterator[BinaryIO]:
    """Writes go to a hidden `*.incomplete` file beside `target`, renamed to it when the block ends
    cleanly and removed when it raises (one a crash leaves, the manager's start-up sweep removes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".incomplete")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
