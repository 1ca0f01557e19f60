"""The directly-follows graph drawn with matplotlib alone (no Graphviz to install).

Layout: the activities stand on a main lane, left to right in business order
(created, paid, picked, packed, shipped, delivered, then the after-sales steps and
any unknown activity); ``cancelled`` stands on a lane below, under the steps it is
reached from, so that the cancellations branch off the flow instead of crossing it.

Arrows: width grows with the square root of the cases (a 100:1 range stays visible
at both ends); each label gives the cases and the median hours. An edge to the next
activity of the lane is straight; a forward edge that skips activities arcs above
the lane; a back edge (rework) arcs below it; a self-loop curls above its node.
Everything is drawn in black, greys and white except the highlighted edge, which is
vermillion AND has a bold label, so the chart reads the same printed in grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from meetinglib.analysis.flow import END, START, activity_label, activity_order
from meetinglib.core.i18n import t
from meetinglib.report import charts as plots

# Activities drawn on the lane below the main one.
SIDE_ACTIVITIES = ("cancelled",)

BOX_W = 0.64  # node box, in steps between neighbouring activities
BOX_H = 0.42
SIDE_LANE_Y = -1.5
MIN_WIDTH, MAX_WIDTH = 0.8, 4.5  # arrow line width in points, fewest to most cases
EDGE_COLOUR = "#333333"
HIGHLIGHT_COLOUR = plots.PALETTE[5]


@dataclass(frozen=True)
class Route:
    """How one edge is drawn: its path in data coordinates and where its label goes."""

    kind: str  # "straight" | "over" | "under" | "loop" | "cross"
    path: Path
    label_at: tuple[float, float]


def node_positions(
    activities: Sequence[str], edges: pd.DataFrame | None = None
) -> dict[str, tuple[float, float]]:
    """(x, y) of each activity: main lane y = 0 in business order, side lane below.

    [start] comes first and [end] last on the main lane. A side activity (cancelled)
    stands under the cases-weighted mean x of the main-lane activities leading to it,
    so its incoming arrows stay short; without such edges, under the lane's middle.
    """
    names = [a for a in activity_order([a for a in activities if a not in (START, END)])]
    present = set(activities)
    main = [a for a in names if a in present and a not in SIDE_ACTIVITIES]
    if START in present:
        main.insert(0, START)
    if END in present:
        main.append(END)
    pos = {a: (float(i), 0.0) for i, a in enumerate(main)}
    side = [a for a in SIDE_ACTIVITIES if a in present]
    middle = (len(main) - 1) / 2 if main else 0.0
    for i, act in enumerate(side):
        x = middle
        if edges is not None and len(edges):
            into = edges[(edges["target"] == act) & edges["source"].isin(main)]
            weights = into["cases"].to_numpy(dtype=float)
            if weights.sum() > 0:
                xs = np.array([pos[s][0] for s in into["source"]])
                x = float(np.average(xs, weights=weights))
        pos[act] = (x + i * (BOX_W + 0.2), SIDE_LANE_Y)
    return pos


def edge_route(
    source: tuple[float, float], target: tuple[float, float], same: bool = False
) -> Route:
    """The drawn path of an edge between two node centres (``same``: a self-loop)."""
    (x0, y0), (x1, y1) = source, target
    top, bottom = BOX_H / 2, -BOX_H / 2
    if same:
        verts = [
            (x0 - 0.14, y0 + top),
            (x0 - 0.34, y0 + top + 0.75),
            (x0 + 0.34, y0 + top + 0.75),
            (x0 + 0.14, y0 + top),
        ]
        codes = [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4]
        # a cubic curve with these control points peaks at 3/4 of their height
        return Route("loop", Path(verts, codes), (x0, y0 + top + 0.56 + 0.14))
    if y0 == y1:
        span = x1 - x0
        if 0 < span <= 1.0 + 1e-9:
            verts = [(x0 + BOX_W / 2, y0), (x1 - BOX_W / 2, y1)]
            # the label stands over the gap, above the boxes' top line
            return Route("straight", Path(verts), ((x0 + x1) / 2, y0 + top + 0.17))
        if span > 0:  # forward, skipping activities: arc above the labels of the lane
            rise = min(0.62 + 0.12 * (span - 2), 1.0)
            start, end = (x0 + 0.1, y0 + top), (x1 - 0.1, y1 + top)
            kind, apex_y = "over", y0 + top + rise
        else:  # back edge (rework): arc below, deeper for longer spans
            rise = min(0.3 + 0.08 * (-span - 1), 0.55)
            start, end = (x0 - 0.1, y0 + bottom), (x1 + 0.1, y1 + bottom)
            kind, apex_y = "under", y0 + bottom - rise
        # a quadratic curve reaches half way to its control point at its middle
        control = ((start[0] + end[0]) / 2, 2 * apex_y - (start[1] + end[1]) / 2)
        path = Path([start, control, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
        return Route(kind, path, ((start[0] + end[0]) / 2, apex_y))
    # between lanes: leave through the facing side, land spread over the target's side
    down = y1 < y0
    start = (x0, y0 + (bottom if down else top))
    spread = float(np.clip((x0 - x1) * 0.1, -BOX_W / 2 + 0.08, BOX_W / 2 - 0.08))
    end = (x1 + spread, y1 + (top if down else bottom))
    dx, dy = end[0] - start[0], end[1] - start[1]
    bend = 0.12
    control = ((start[0] + end[0]) / 2 - dy * bend, (start[1] + end[1]) / 2 + dx * bend)
    path = Path([start, control, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
    # labels sit nearer the source: arrows converge at the target
    return Route("cross", path, _quadratic_point(start, control, end, 0.4))


def _quadratic_point(p0, c, p2, s: float) -> tuple[float, float]:
    a, b, d = (1 - s) ** 2, 2 * (1 - s) * s, s**2
    return (a * p0[0] + b * c[0] + d * p2[0], a * p0[1] + b * c[1] + d * p2[1])


def edge_widths(cases: pd.Series | np.ndarray) -> np.ndarray:
    """Line width in points per edge: MIN_WIDTH + range x sqrt(cases / most cases)."""
    values = np.asarray(cases, dtype=float)
    if values.size == 0:
        return values
    top = values.max()
    share = np.sqrt(values / top) if top > 0 else np.zeros_like(values)
    return MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * share


def hours_text(hours: float) -> str:
    """Hours for a label: one decimal below 10 h, whole hours above, '–' when unknown."""
    if hours is None or not math.isfinite(hours):
        return "–"
    return f"{hours:.1f}" if abs(hours) < 10 else f"{hours:,.0f}"


def heaviest_edge(edges: pd.DataFrame) -> tuple[str, str] | None:
    """(source, target) of the edge holding the most order-hours (count x mean hours).

    Where the time goes is where many orders wait long; the highest median alone
    would often be a rare transition of two or three orders. Edges to and from
    [start]/[end] have no duration and never qualify.
    """
    total = edges["count"] * edges["mean_h"]
    real = total[total.notna() & (total > 0)]
    if real.empty:
        return None
    row = edges.loc[real.idxmax()]
    return str(row["source"]), str(row["target"])


def hours_share(edges: pd.DataFrame, edge: tuple[str, str]) -> float:
    """The edge's share of all order-hours between steps (count x mean over all edges)."""
    total = (edges["count"] * edges["mean_h"]).fillna(0.0)
    mine = total[(edges["source"] == edge[0]) & (edges["target"] == edge[1])].sum()
    return float(mine / total.sum()) if total.sum() > 0 else float("nan")


def draw_dfg(
    edges: pd.DataFrame,
    *,
    lang: str = "en",
    title: str = "",
    min_cases: int = 1,
    highlight: tuple[str, str] | Literal["most_time"] | None = "most_time",
    note: str | None = None,
) -> Figure:
    """The directly-follows graph of ``edges`` (flow_engine.directly_follows) as a Figure.

    Edges with fewer than ``min_cases`` cases are left out (the caller says so in
    ``note``, printed under the graph with the legend). ``highlight`` is the edge drawn
    in vermillion with a bold label: "most_time" = heaviest_edge of the drawn edges,
    None = none. Node names are translated with flow.activity_label. Edges into
    [end] (directly_follows with start_end) are not drawn as arrows, which would all
    converge on one node: each activity says under its box how many cases end there.
    """
    shown = edges[edges["cases"] >= min_cases].reset_index(drop=True)
    ends = shown[shown["target"] == END].set_index("source")["cases"]
    shown = shown[shown["target"] != END].reset_index(drop=True)
    activities = list(dict.fromkeys([*shown["source"], *shown["target"], *ends.index]))
    pos = node_positions(activities, shown)
    if highlight == "most_time":
        highlight = heaviest_edge(shown)
    routes = [
        edge_route(pos[a], pos[b], same=a == b)
        for a, b in zip(shown["source"], shown["target"], strict=True)
    ]
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    top = max([r.label_at[1] + 0.15 for r in routes] + [max(ys) + BOX_H / 2 + 0.45])
    bottom = min([r.label_at[1] - 0.15 for r in routes] + [min(ys) - BOX_H / 2 - 0.3])
    # about an inch per activity (handouts print about 9 inches wide), as much a unit up
    width = float(np.clip(1.05 * (max(xs) - min(xs) + 1) + 0.6, 6.5, 10.5))
    height = 1.0 * (top - bottom) + 0.9
    with matplotlib.rc_context(plots.style(lang)):
        fig = plots.new_figure(lang, size=(width, height))
        ax = fig.add_subplot()
        ax.set_axis_off()
        widths = edge_widths(shown["cases"])
        for row, lw, route in zip(shown.itertuples(index=False), widths, routes, strict=True):
            hot = highlight is not None and (row.source, row.target) == tuple(highlight)
            arrow = FancyArrowPatch(
                path=route.path,
                arrowstyle="-|>",
                mutation_scale=6 + 1.6 * lw,
                linewidth=lw,
                color=HIGHLIGHT_COLOUR if hot else EDGE_COLOUR,
                zorder=3 if hot else 2,
            )
            arrow.set_gid(f"{row.source}->{row.target}")
            ax.add_patch(arrow)
            ax.text(
                *route.label_at,
                edge_label(int(row.cases), row.median_h, lang),
                ha="center",
                va="center",
                fontsize=7.5,
                linespacing=1.0,
                fontweight="bold" if hot else "normal",
                color="#000000" if hot else "#222222",
                zorder=5,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
                gid=f"label:{row.source}->{row.target}",
            )
        for act, (x, y) in pos.items():
            _draw_node(ax, act, x, y, lang)
            if act in ends.index:
                ax.text(
                    x,
                    y - BOX_H / 2 - 0.05,
                    t("flow_section.graph.ends", lang, cases=int(ends[act])),
                    ha="center",
                    va="top",
                    fontsize=7,
                    color=plots.GREY,
                    zorder=6,
                    gid=f"ends:{act}",
                )
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.set_ylim(bottom, top)
        ax.set_title(title, loc="left")
        legend = t("flow_section.graph.legend", lang)
        ax.text(
            0.0,
            0.0,
            f"{legend} {note}" if note else legend,
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color=plots.GREY,
        )
    return fig


def edge_label(cases: int, median_h: float, lang: str = "en") -> str:
    """An edge's label: cases and median hours (cases alone for edges from [start])."""
    if median_h is None or not math.isfinite(median_h):
        return t("flow_section.graph.edge_cases", lang, cases=cases)
    return t("flow_section.graph.edge", lang, cases=cases, median=hours_text(median_h))


def _draw_node(ax, act: str, x: float, y: float, lang: str) -> None:
    artificial = act in (START, END)
    ax.add_patch(
        FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle="round,pad=0.0,rounding_size=0.06",
            facecolor="#f2f2f2" if artificial else "white",
            edgecolor=plots.GREY if artificial else "#000000",
            linestyle="--" if artificial else "-",
            linewidth=1.2,
            zorder=4,
            gid=f"node:{act}",
        )
    )
    ax.text(
        x,
        y,
        _wrapped(activity_label(act, lang)),
        ha="center",
        va="center",
        fontsize=8.5,
        linespacing=1.0,
        zorder=6,
        gid=f"node-label:{act}",
    )


def _wrapped(label: str, width: int = 9) -> str:
    """A node label on two lines when long and made of words (CJK labels are short)."""
    if len(label) <= width or " " not in label:
        return label
    words = label.split(" ")
    best = min(
        range(1, len(words)),
        key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))),
    )
    return " ".join(words[:best]) + "\n" + " ".join(words[best:])
