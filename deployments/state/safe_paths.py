"""Where a name from a request may lead on disk: nowhere it was not made for.

Every write and delete in the job store, the model cache, S3 copies, url downloads and staging goes
through `inside`, which resolves the path and refuses anything outside its root (a `..`, an absolute
part, a symlink out). Names that a request gives (models, voices, adapters, downloads) are checked
by `check_name` where they enter and again where they become a path. Uploaded files are stored under
names the service makes (`stored_name`); the client's file name is kept only as metadata
(`display_filename`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from deployments.errors import InvalidRequest

# one pattern for every name a request may give: no separators, no dots in front, ASCII only
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(NAME_PATTERN)
# check_name's rule for request schemas, with maxLength NAME_MAX: NAME_PATTERN without '..' (a '.' only
# before another character or at the end)
NAME_SCHEMA_PATTERN = r"^[A-Za-z0-9](\.?[A-Za-z0-9_-])*\.?$"
NAME_MAX = 128
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")


class PathEscape(ValueError):
    """A path that would leave its root: a bug or an attack, never a request the service should serve."""


def check_name(name: str, what: str = "name") -> str:
    """`name` if it is a plain name (letters, digits, '.', '_', '-', at most 128, no '..'), else a 400."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidRequest(f"{what} must match {NAME_PATTERN} (and hold no '..'), got {name!r}")
    return name


def inside(root: Path, *parts: str) -> Path:
    """`root / parts...`, resolved, refused (PathEscape) unless it stays inside `root`."""
    base = Path(root).resolve()
    for part in parts:
        if not part or "\x00" in part or PurePosixPath(part).is_absolute() or "\\" in part:
            raise PathEscape(f"{part!r} is not a relative path under {base}")
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise PathEscape(f"{'/'.join(parts)!r} leads outside {base}")
    return path


def display_filename(name: str | None, default: str = "upload") -> str:
    """The client's file name reduced to a harmless base name, for metadata and Content-Disposition."""
    base = re.sub(r"[^\w.\- ]", "_", PurePosixPath((name or "").replace("\\", "/")).name, flags=re.ASCII)
    return base.strip(" .")[:200] or default


def extension(name: str) -> str:
    """The lower-case extension of a file name ('' when it has none worth keeping)."""
    suffix = PurePosixPath(name).suffix.lower().lstrip(".")
    return suffix if _EXTENSION.fullmatch(suffix) else ""


def stored_name(filename: str) -> str:
    """The name the service stores an upload under: its own, keeping only a plain extension."""
    suffix = extension(filename)
    return f"upload.{suffix}" if suffix else "upload"
