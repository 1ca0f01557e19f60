"""Identifiers that become file or folder names, and writes kept inside their folder.

A department code, a week or any name taken from user text ends up in a path; it
must be a plain name, never a path of its own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from meetinglib.core.errors import UnsafeNameError

# Letters (any script), digits, '_' and '-', with '.' allowed inside; 1 to 64 characters.
SAFE_NAME = re.compile(r"^[^\W_][\w\-]*(?:\.[\w\-]+)*$")
MAX_NAME = 64
RULE = "1 to 64 letters, digits, '_', '-' or inner '.', starting with a letter or digit"

_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


def check_name(value: object, what: str) -> str:
    """The value itself when it is a safe file-name component; else UnsafeNameError."""
    if not isinstance(value, str):
        raise UnsafeNameError(what, value, "it is not text")
    if not value or len(value) > MAX_NAME or not SAFE_NAME.fullmatch(value):
        raise UnsafeNameError(what, value, f"it must be {RULE}")
    if value.split(".")[0].lower() in _RESERVED:
        raise UnsafeNameError(what, value, "it is a reserved device name on Windows")
    return value


def inside(folder: str | os.PathLike[str], *parts: str) -> Path:
    """``folder/parts...``, refused (UnsafeNameError) if it would resolve outside folder."""
    base = Path(folder).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UnsafeNameError("path", "/".join(parts), f"it leads outside {base}")
    return target
