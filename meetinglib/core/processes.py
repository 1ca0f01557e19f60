"""Whether a process still runs: what tells a dead run's leftovers (staging folders,
kernel folders, Spark's copies of a week's tables) from a live one's."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
