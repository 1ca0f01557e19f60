"""Every user-facing text, looked up in one place: the message catalogues.

Texts are keyed by a short dotted name (the gettext msgid, e.g. ``kpi.gmv``); each
language has one catalogue, ``meetinglib/locales/<lang>/LC_MESSAGES/meetinglib.po``.
``t("kpi.gmv", "zh-CN")`` returns the text; ``str.format`` fields are filled from
keyword arguments. English is the reference: every key lives in its catalogue, and a
key missing from another language is a bug caught by ``tests/test_i18n.py``.

A third language is one file: ``pybabel init -i meetinglib/locales/meetinglib.pot
-d meetinglib/locales -D meetinglib -l fr`` (the template carries each key's English
text as a comment), translate, and it is picked up by its folder's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "meetinglib"
REFERENCE = "en"


@cache
def _catalogue(lang: str) -> dict[str, str]:
    path = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=None, domain=DOMAIN)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def _languages() -> tuple[str, ...]:
    found = sorted(p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (REFERENCE, *(lang for lang in found if lang != REFERENCE))


LANGUAGES: tuple[str, ...] = _languages()


class _Labels(Mapping[str, tuple[str, ...]]):
    """Key -> its text in each of LANGUAGES (a read-only view of the catalogues)."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        if key not in _catalogue(REFERENCE):
            raise KeyError(key)
        return tuple(_catalogue(lang).get(key, "") for lang in LANGUAGES)

    def __iter__(self) -> Iterator[str]:
        return iter(_catalogue(REFERENCE))

    def __len__(self) -> int:
        return len(_catalogue(REFERENCE))

    def __contains__(self, key: object) -> bool:
        return key in _catalogue(REFERENCE)


LABELS: Mapping[str, tuple[str, ...]] = _Labels()


def t(key: str, lang: str = "en", /, **fields: object) -> str:
    """The text ``key`` in ``lang`` (one of LANGUAGES), formatted with ``fields``."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} not supported; use one of {LANGUAGES}")
    try:
        text = _catalogue(lang)[key]
    except KeyError:
        where = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        raise KeyError(f"no text {key!r} in {where}; add it to every catalogue") from None
    return text.format(**fields) if fields else text


def label_or(key: str, lang: str, default: str) -> str:
    """The text if one exists (e.g. a known exception code), else ``default`` as is."""
    return t(key, lang) if key in LABELS else default


# People's names for codes found in the data: (dimension, code, lang) -> the name, the
# code itself when none is given; ``Params.label`` is one. The analysis layer takes one
# as an argument and never reads the params for it.
CodeLabel = Callable[[str, str, str], str]


def code_name(label: CodeLabel | None, dimension: str, code: object, lang: str) -> str:
    """``code`` of ``dimension`` for people in ``lang``: its name from ``label``, else as is."""
    return label(dimension, str(code), lang) if label is not None else str(code)
