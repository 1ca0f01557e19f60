"""Whether a process still runs: what tells a dead run's leftovers (staging folders,
kernel folders, Spark's copies of a week's tables) from a live one's."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphans(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove the folders ``<prefix><pid>-...`` in ``parent`` (default: the temporary
    folder) that this user's processes left when they died; returns those removed."""
    removed = []
    for item in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = re.match(rf"{re.escape(prefix)}(\d+)-", item.name)
        try:
            mine = item.stat().st_uid == os.getuid()
        except OSError:  # gone meanwhile
            continue
        if pid and mine and not alive(int(pid.group(1))):
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
    return removed
