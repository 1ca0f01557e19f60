"""HTML from Jinja2 templates with autoescaping: the one way the toolkit writes markup.

Templates live in ``meetinglib/templates/`` (``common/`` for the page frame, the shared
stylesheet and the macros; ``pages/`` for whole files such as the index, the agenda and
the notice; ``sections/`` for pieces of a handout). Anything passed in as a plain ``str``
is escaped by the template engine; only ``Markup`` made by another template passes as is,
so user-typed and data-derived text can never become markup.

``table`` is the one table helper: text columns left, number columns right, an optional
caption, and a ``wide`` flag that lets print set the widest tables in smaller type so no
column is lost at the page edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from meetinglib.core.csp import POLICY

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# A handout is a file read offline: nothing may run, nothing may be fetched. Inline
# styles and embedded (data:) images are all a handout needs; one policy for every page.
CSP = POLICY
# A table with more columns than this is set in smaller type on paper.
WIDE_COLUMNS = 7

Cell = str | Markup | int | float | None


class Trusted:
    """Markup made by a template, kept as an object inside a DataFrame.

    pandas stores text in a string dtype, which would turn a ``Markup`` back into a plain
    (and then escaped) ``str``; this wrapper survives, and Jinja2 honours ``__html__``.
    """

    __slots__ = ("markup",)

    def __init__(self, markup: Markup):
        self.markup = markup

    def __html__(self) -> str:
        return str(self.markup)

    def __str__(self) -> str:
        return str(self.markup.striptags())


@cache
def environment() -> Environment:
    """The Jinja2 environment: autoescape on for every template, unknown names an error."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["CSP"] = CSP
    return env


def render(name: str, /, **context: Any) -> Markup:
    """The template ``name`` (a path under ``meetinglib/templates``) filled with ``context``."""
    return Markup(environment().get_template(name).render(**context))


def macro(name: str, /, *args: Any, **kwargs: Any) -> Markup:
    """One macro of ``common/macros.html.j2`` called with the arguments (a trusted piece)."""
    module = environment().get_template("common/macros.html.j2").module
    return Markup(getattr(module, name)(*args, **kwargs))


def table(
    header: Sequence[Cell],
    rows: Iterable[Sequence[Cell]],
    *,
    numeric: Iterable[int] = (),
    caption: str | None = None,
    wide: bool | None = None,
    css: str = "",
) -> Markup:
    """An HTML table: ``numeric`` columns right-aligned, the rest left; cells escaped
    unless they are ``Markup``; ``wide`` (default: more than WIDE_COLUMNS columns) sets
    it in smaller type on paper."""
    body = [["" if c is None else c for c in row] for row in rows]
    numbers = set(numeric)
    if wide is None:
        wide = len(header) > WIDE_COLUMNS
    return render(
        "common/table.html.j2",
        header=list(header),
        rows=body,
        numeric=numbers,
        caption=caption,
        wide=wide,
        css=css,
    )


# A cell reads as a figure when it starts with a number (after a sign, a comparison or a
# currency code) and little text follows: "1,234", "-2.0 pp", "≥ 95.0%", "CNY 12", "3 / 5".
_FIGURE = re.compile(r"^[-+−±≥≤~]?\s*(?:[A-Z]{3}\s)?\d[\d,.]*(?:\s*/\s*[\d,.]+)?")


def looks_numeric(values: Iterable[object]) -> bool:
    """True when every non-empty value is a figure (see ``_FIGURE``) and one at least is."""
    seen = False
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seen = True
            continue
        if isinstance(value, Trusted):
            value = value.markup
        text = (value.striptags() if isinstance(value, Markup) else str(value)).strip()
        if text in ("", "–", "-", "nan", "None"):
            continue
        match = _FIGURE.match(text)
        if not match or len(text) - match.end() > 14:
            return False
        seen = True
    return seen


def frame_table(
    frame: pd.DataFrame,
    *,
    index: bool = False,
    numeric: Iterable[str] | None = None,
    formats: Mapping[str, Any] | None = None,
    caption: str | None = None,
    wide: bool | None = None,
) -> Markup:
    """A DataFrame as ``table``: one header row (a named index becomes the first column),
    number columns right-aligned (by dtype unless ``numeric`` names them), "–" for gaps."""
    if index:
        # A named index becomes the first column, under its name: one header row.
        frame = frame.reset_index(names=[n or "" for n in frame.index.names])
    columns = [str(c) for c in frame.columns]
    if numeric is None:
        numbers = {
            i
            for i, c in enumerate(frame.columns)
            if pd.api.types.is_numeric_dtype(frame[c]) or looks_numeric(frame.iloc[:, i])
        }
    else:
        wanted = {str(n) for n in numeric}
        numbers = {i for i, c in enumerate(columns) if c in wanted}
    formats = formats or {}
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells: list[Cell] = []
        for column, value in zip(columns, values, strict=True):
            if value is None or (isinstance(value, float) and pd.isna(value)):
                cells.append("–")
            elif column in formats:
                cells.append(formats[column](value))
            elif isinstance(value, Markup | Trusted):
                cells.append(Markup(value.__html__()))
            elif isinstance(value, float):
                cells.append(f"{value:,.1f}")
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        rows.append(cells)
    return table(columns, rows, numeric=numbers, caption=caption, wide=wide)


def page(template: str, /, *, lang: str, title: str, **context: Any) -> str:
    """A whole HTML file from ``pages/<template>``: language, title and the CSP set."""
    return str(render(f"pages/{template}", lang=lang, title=title, **context))
