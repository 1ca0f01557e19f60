"""Charts of the handouts, drawn with matplotlib's object API (no pyplot state).

Every chart states its finding in the title, labels its axes with units, uses the
Okabe-Ito colour-blind safe palette and adds hatching so series stay apart when
printed in grey. Text comes in already translated; this module only draws.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import matplotlib
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

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
    return next((name for name in _CJK_FONTS if name in installed), None)


def style(lang: str = "en") -> dict[str, object]:
    """rcParams for the handouts; Chinese needs a CJK font first in the list."""
    fonts = ["DejaVu Sans"]
    if lang.startswith("zh") and cjk_font():
        fonts.insert(0, cjk_font())
    return {
        "font.family": "sans-serif",
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
    buf = io.BytesIO()
    with matplotlib.rc_context(style(lang)):
        fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def title_of(fig: Figure) -> str:
    """The chart's title (or its only text, for a message chart)."""
    for ax in fig.axes:
        title = ax.get_title(loc="left") or ax.get_title()
        if title:
            return title
        if ax.texts:
            return ax.texts[0].get_text()
    return ""


def stacked_bars(
    frame: pd.DataFrame,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    labels: Sequence[str],
    lang: str = "en",
) -> Figure:
    """Stacked bars, one stack per row of ``frame``, one segment per column."""
    with matplotlib.rc_context(style(lang)):
        fig = new_figure(lang)
        ax = fig.add_subplot()
        x = np.arange(len(frame))
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
        ax.set_xticks(x, [str(i) for i in frame.index])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
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
) -> Figure:
    """Horizontal bars comparing this week with last week for each category."""
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
                ax.text(v, yi - h / 2, f" {v:.1f}", va="center", fontsize=8)
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
