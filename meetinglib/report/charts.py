"""Charts of the handouts, drawn with matplotlib's object API (no pyplot state).

Every chart states its finding in the title, labels its axes with units, uses the
Okabe-Ito colour-blind safe palette and adds hatching so series stay apart when
printed in grey. Text comes in already translated; this module only draws.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, PercentFormatter

matplotlib.use("Agg", force=False)

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
GREY = "#777777"

_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)


@cache
def cjk_font() -> str | None:
    """The first installed font that can draw Simplified Chinese, if any."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in _CJK_FONTS if name in installed), None)
    if found is None:
        # Matplotlib's font cache predates a font installed since (e.g. by make system-deps).
        for path in font_manager.findSystemFonts():
            if "cjk" in Path(path).name.lower():
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
        found = next((name for name in _CJK_FONTS if name in installed), None)
    return found


def style(lang: str = "en") -> dict[Any, Any]:  # rcParams keys (matplotlib types them as literals)
    """rcParams for the handouts: a CJK font in every language (first for Chinese, else as
    the fallback after DejaVu Sans), since Chinese names (carriers, regions) appear in
    English handouts too."""
    fonts = ["DejaVu Sans"]
    cjk = cjk_font()
    if cjk:
        fonts.insert(0 if lang.startswith("zh") else 1, cjk)
    return {
        # The fonts themselves as the family: matplotlib then falls back glyph by glyph.
        "font.family": fonts,
        "font.sans-serif": fonts,
        "font.size": 10,
        "axes.titlesize": 12,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.unicode_minus": False,
        "figure.dpi": 100,
        "savefig.dpi": 110,
        "hatch.color": "#333333",
        "hatch.linewidth": 0.6,
    }


def new_figure(lang: str = "en", size: tuple[float, float] = (9.0, 3.8)) -> Figure:
    with matplotlib.rc_context(style(lang)):
        fig = Figure(figsize=size, layout="constrained")
    fig._meetinglib_lang = lang  # type: ignore[attr-defined]
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (embedded in the handout as a data URI by nbconvert)."""
    lang = getattr(fig, "_meetinglib_lang", "en")
    if not lang.startswith("zh") and _has_cjk(fig):
        # Fonts are looked up when drawing: a figure made outside new_figure, or holding a
        # Chinese name from the data, needs the CJK font first while it is saved.
        lang = "zh-CN"
    buf = io.BytesIO()
    with matplotlib.rc_context(style(lang)):
        fit_titles(fig)
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _has_cjk(fig: Figure) -> bool:
    """True when any text of the figure holds a CJK ideograph."""
    return any(
        any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in t.get_text())
        for t in fig.findobj(Text)
    )


def fit_titles(fig: Figure) -> None:
    """Wrap titles that would run past the figure's right edge (they state findings,
    so they can be long, and a clipped finding is worse than a two-line title)."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # constrained layout places the axes first
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg, made above
    right = fig.bbox.x1 - 4
    for ax in fig.axes:
        for loc in ("left", "center"):
            text = ax.get_title(loc=loc)
            if not text or "\n" in text:
                continue
            # matplotlib keeps the left title as a private attribute only
            artist = ax._left_title if loc == "left" else ax.title  # type: ignore[attr-defined]
            width = max(len(text), 1)
            while artist.get_window_extent(renderer).x1 > right and width > 20:
                width = int(width * 0.85)
                # Chinese runs have no spaces to break at, so long "words" may break.
                artist.set_text(textwrap.fill(text, width, break_long_words=True))


def title_of(fig: Figure) -> str:
    """The chart's title (or its only text, for a message chart)."""
    for ax in fig.axes:
        title = ax.get_title(loc="left") or ax.get_title()
        if title:
            return title
        if ax.texts:
            return ax.texts[0].get_text()
    return ""


def stack_bars(ax: Any, x: np.ndarray, frame: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    """One stacked bar per row of ``frame``, a segment per column (palette and hatching,
    so the stack reads in grey); returns the stacks' totals."""
    bottom = np.zeros(len(frame))
    for i, (col, label) in enumerate(zip(frame.columns, labels, strict=True)):
        values = frame[col].to_numpy(dtype=float)
        ax.bar(
            x,
            values,
            bottom=bottom,
            label=label,
            color=PALETTE[i % len(PALETTE)],
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="white",
            linewidth=0.5,
        )
        bottom += values
    return bottom


def stacked_bars(
    frame: pd.DataFrame,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    labels: Sequence[str],
    lang: str = "en",
    legend_below: bool = False,
) -> Figure:
    """Stacked bars, one stack per row of ``frame``, one segment per column.

    ``legend_below`` puts the legend under the chart, for many series or tall bars.
    """
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang)
        ax = fig.add_subplot()
        x = np.arange(len(frame))
        bottom = stack_bars(ax, x, frame, labels)
        ax.set_xticks(x, [str(i) for i in frame.index])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if legend_below:
            fig.legend(frameon=False, loc="outside lower center", ncols=min(4, len(labels)))
            ax.set_ylim(0, max(bottom.max() * 1.05, 1))
        else:
            ax.legend(frameon=False, ncols=min(4, len(labels)), loc="upper right")
            ax.set_ylim(0, max(bottom.max() * 1.18, 1))
    return fig


def paired_hbars(
    this: pd.Series,
    last: pd.Series,
    *,
    title: str,
    xlabel: str,
    labels: tuple[str, str],
    lang: str = "en",
    value_format: str = "{:.1f}",
) -> Figure:
    """Horizontal bars comparing this week with last week for each category.

    This week's bars carry their value, written with ``value_format``.
    """
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang, size=(9.0, 0.6 + 0.65 * len(this)))
        ax = fig.add_subplot()
        y = np.arange(len(this))
        h = 0.38
        ax.barh(y - h / 2, this.to_numpy(float), h, label=labels[0], color=PALETTE[0])
        ax.barh(
            y + h / 2,
            last.reindex(this.index).to_numpy(float),
            h,
            label=labels[1],
            color=PALETTE[4],
            hatch=HATCHES[1],
            edgecolor="white",
            linewidth=0.5,
        )
        for yi, v in zip(y, this.to_numpy(float), strict=True):
            if np.isfinite(v):
                ax.text(v, yi - h / 2, " " + value_format.format(v), va="center", fontsize=8)
        ax.set_yticks(y, list(this.index))
        ax.invert_yaxis()
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        both = np.r_[this.to_numpy(float), last.to_numpy(float), 0.0]
        ax.set_xlim(0, max(np.nanmax(both) * 1.15, 1))
        fig.legend(frameon=False, loc="outside lower center", ncols=2)
    return fig


def pareto(
    counts: pd.Series,
    *,
    title: str,
    ylabel: str,
    cumulative_label: str,
    lang: str = "en",
) -> Figure:
    """Pareto chart: bars sorted descending, cumulative share line on a second axis."""
    counts = counts.sort_values(ascending=False)
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang)
        ax = fig.add_subplot()
        x = np.arange(len(counts))
        ax.bar(x, counts.to_numpy(float), color=PALETTE[0], edgecolor="white")
        ax.set_xticks(x, list(counts.index), rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        if len(counts):
            ax2 = ax.twinx()
            cum = counts.cumsum() / counts.sum()
            ax2.plot(x, cum.to_numpy(), color=PALETTE[5], marker="o", linestyle="--")
            ax2.set_ylim(0, 1.05)
            ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax2.set_ylabel(cumulative_label)
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
    return fig


def message(text: str, *, lang: str = "en") -> Figure:
    """A small placeholder chart carrying a sentence (e.g. nothing to show this week)."""
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang, size=(9.0, 1.2))
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.0, 0.5, text, va="center", fontsize=11, color=GREY)
    return fig


def heatmap(
    values: pd.DataFrame,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    counts: pd.DataFrame | None = None,
    highlight: tuple[object, object] | None = None,
    lang: str = "en",
) -> Figure:
    """A share-valued heat map (0-100 %), each cell annotated; empty cells left blank.

    cividis is perceptually uniform and reads in grey as a monotone ramp; the annotation
    carries the number for anyone who cannot tell the shades apart.
    """
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang, size=(9.0, 0.9 + 0.5 * len(values)))
        ax = fig.add_subplot()
        data = values.to_numpy(dtype=float)
        image = ax.imshow(
            np.ma.masked_invalid(data), cmap="cividis_r", vmin=0, vmax=1, aspect="auto"
        )
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                text = f"{v:.0%}"
                if counts is not None:
                    text += f"\n(n={int(counts.iat[i, j])})"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > 0.55 else "black",
                )
        if (
            highlight is not None
            and highlight[0] in values.index
            and highlight[1] in values.columns
        ):
            i, j = values.index.get_loc(highlight[0]), values.columns.get_loc(highlight[1])
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=PALETTE[5], linewidth=2.5
                )
            )
        ax.set_xticks(np.arange(values.shape[1]), [str(c) for c in values.columns])
        ax.set_yticks(np.arange(values.shape[0]), [str(r) for r in values.index])
        ax.grid(False)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def bars(
    values: pd.Series,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    value_format: str = "{:,.0f}",
    highlight: Sequence[bool] | None = None,
    lang: str = "en",
) -> Figure:
    """Vertical bars, one per category, each labelled with its value.

    ``highlight`` marks bars drawn in the second palette colour and hatched, so the
    emphasis survives grey print.
    """
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang, size=(9.0, 3.4))
        ax = fig.add_subplot()
        x = np.arange(len(values))
        marked = list(highlight) if highlight is not None else [False] * len(values)
        heights = values.to_numpy(dtype=float)
        for xi, v, m in zip(x, heights, marked, strict=True):
            ax.bar(
                xi,
                v,
                color=PALETTE[5] if m else PALETTE[0],
                hatch=HATCHES[1] if m else HATCHES[0],
                edgecolor="white",
                linewidth=0.5,
            )
            if np.isfinite(v):
                ax.text(float(xi), v, value_format.format(v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [str(i) for i in values.index])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        top = np.nanmax(heights) if len(heights) and np.isfinite(heights).any() else 0.0
        ax.set_ylim(0, max(top * 1.18, 1))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    return fig


def sparkline(
    values: Sequence[float],
    *,
    target: float | None = None,
    lang: str = "en",
    size: tuple[float, float] = (1.5, 0.38),
) -> Figure:
    """A word-sized trend line: weeks left to right, the last point (this week) as a dot.

    A dashed grey line marks the target when one is given; gaps are weeks without a value.
    Black on white, so it prints the same in grey.
    """
    y = np.asarray(values, dtype=float)
    with matplotlib.rc_context(style(lang)):
        fig = Figure(figsize=size)
        fig._meetinglib_lang = lang  # type: ignore[attr-defined]
        ax = fig.add_axes((0.03, 0.12, 0.94, 0.76))
        ax.axis("off")
        x = np.arange(len(y))
        finite = np.isfinite(y)
        if target is not None and finite.any():
            ax.axhline(target, color=GREY, linewidth=0.8, linestyle=(0, (2, 2)))
        ax.plot(x, y, color="#000000", linewidth=1.1)
        if len(y) and finite[-1]:
            ax.plot(x[-1], y[-1], "o", color="#000000", markersize=3.2)
        if finite.any():
            low, high = np.nanmin(y), np.nanmax(y)
            if target is not None:
                low, high = min(low, target), max(high, target)
            pad = (high - low) * 0.12 or abs(high) * 0.05 or 1.0
            ax.set_ylim(low - pad, high + pad)
        ax.set_xlim(-0.5, max(len(y) - 0.5, 0.5))
    return fig


def sparkline_png(fig: Figure) -> bytes:
    """A sparkline as PNG bytes, without the tight bounding box that would crop it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, transparent=True)
    return buf.getvalue()
