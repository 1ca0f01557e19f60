"""How a week's handout files are named per language, and which language a file holds.

``meeting run`` writes them, ``meeting minutes send`` attaches one, the week's index
lists them: all three name and read them here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

_HTML_LANG = re.compile(rb'<html[^>]*\slang="([^"]+)"', re.IGNORECASE)


def handout_stem(name: str, lang: str, languages: Sequence[str]) -> str:
    """The file stem of a handout: the first language keeps the plain name, the others get
    their language as a suffix (``data_report`` / ``data_report.en``)."""
    return name if not languages or lang == languages[0] else f"{name}.{lang}"


def html_lang(path: Path) -> str | None:
    """The language a handout says it is in (its ``<html lang>``); None when the file
    cannot be read or says none."""
    try:
        with open(path, "rb") as fh:
            found = _HTML_LANG.search(fh.read(4096))
    except OSError:
        return None
    return found.group(1).decode("utf-8", errors="replace") if found else None
