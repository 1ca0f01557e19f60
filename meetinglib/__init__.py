"""meetinglib: the toolkit behind the weekly order-processing review meeting.

The public entry points; everything else lives in the subpackages (see README,
"Architecture"): ``core`` → ``data`` → ``analysis`` → ``report`` → ``meeting``, with the
runner and the command line on top.

The entry points resolve on first use (PEP 562): importing any module of the package
runs this file first, and it must not pull the whole stack into ``meetinglib.core.errors``
or into every `meeting` command.
"""

from importlib import import_module
from typing import Any

from meetinglib._version import __version__

_PUBLIC = {
    "MeetingError": "meetinglib.core.errors",
    "Params": "meetinglib.core.params",
    "load_params": "meetinglib.core.params",
    "generate_sample": "meetinglib.data.sample",
    "run_week": "meetinglib.runner",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'meetinglib' has no attribute {name!r}")
