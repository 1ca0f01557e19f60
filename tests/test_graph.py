"""Tests of meetinglib.report.flow_graph: layout, routes and the drawn figure, checked by hand."""

from __future__ import annotations

import math

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest

from meetinglib.analysis import flow, flow_engine
from meetinglib.report import charts as plots
from meetinglib.report import flow_graph as graph


def edges(rows: list[tuple]) -> pd.DataFrame:
    """An edges frame from (source, target, cases, median_h[, mean_h]) rows; count = cases."""
    out = []
    for row in rows:
        source, target, cases, median = row[:4]
        mean = row[4] if len(row) > 4 else median
        out.append((source, target, cases, cases, mean, median, median))
    frame = pd.DataFrame(out, columns=flow_engine.DFG_COLUMNS)
    return frame.astype({"source": "str", "target": "str"})


ORDER_FLOW = edges(
    [
        ("created", "paid", 1000, 0.5),
        ("paid", "picked", 980, 6.0),
        ("picked", "packed", 975, 5.0),
        ("packed", "shipped", 970, 4.0),
        ("shipped", "delivered", 900, 39.0, 41.0),
        ("created", "cancelled", 15, 0.5),
        ("paid", "cancelled", 5, 20.0),
        ("packed", "picked", 40, 2.5),  # rework: back edge
        ("paid", "shipped", 30, 12.0),  # skips picking and packing
        ("picked", "picked", 4, 1.0),  # self-loop
        ("delivered", "return_requested", 60, 48.0),
    ]
)


def test_nodes_left_to_right_in_business_order_and_cancelled_below():
    # given in a scrambled order, with an unknown activity
    acts = ["shipped", "cancelled", "return_requested", "created", "zz_audit", "paid", "delivered"]
    lanes = edges([("created", "cancelled", 30, 1.0), ("paid", "cancelled", 10, 1.0)])
    pos = graph.node_positions(acts, lanes)
    main = sorted((a for a in pos if pos[a][1] == 0), key=lambda a: pos[a][0])
    assert main == ["created", "paid", "shipped", "delivered", "return_requested", "zz_audit"]
    assert [pos[a][0] for a in main] == [0, 1, 2, 3, 4, 5]
    # under the cases-weighted mean of created (x 0, 30 cases) and paid (x 1, 10 cases)
    assert pos["cancelled"] == (pytest.approx(0.25), graph.SIDE_LANE_Y)


def test_start_first_and_end_last_on_the_main_lane():
    pos = graph.node_positions([flow.END, "paid", flow.START, "created"])
    assert pos[flow.START] == (0.0, 0.0)
    assert pos["created"] == (1.0, 0.0)
    assert pos["paid"] == (2.0, 0.0)
    assert pos[flow.END] == (3.0, 0.0)


def test_cancelled_without_incoming_edges_stands_under_the_middle():
    pos = graph.node_positions(["created", "paid", "shipped", "cancelled"])
    assert pos["cancelled"] == (1.0, graph.SIDE_LANE_Y)


def test_routes_by_kind():
    top, bottom = graph.BOX_H / 2, -graph.BOX_H / 2
    straight = graph.edge_route((0.0, 0.0), (1.0, 0.0))
    assert straight.kind == "straight"
    # from the right side of one box to the left side of the next
    assert straight.path.vertices.tolist() == [[graph.BOX_W / 2, 0.0], [1 - graph.BOX_W / 2, 0.0]]

    over = graph.edge_route((1.0, 0.0), (4.0, 0.0))
    assert over.kind == "over"
    assert over.label_at[1] > top + 0.5, "above the labels of neighbouring edges"
    assert over.path.vertices[:, 1].min() >= top

    under = graph.edge_route((3.0, 0.0), (2.0, 0.0))
    assert under.kind == "under"
    assert under.label_at[1] < bottom and under.path.vertices[:, 1].max() <= bottom

    loop = graph.edge_route((2.0, 0.0), (2.0, 0.0), same=True)
    assert loop.kind == "loop" and loop.label_at[1] > top

    cross = graph.edge_route((3.0, 0.0), (0.5, graph.SIDE_LANE_Y))
    assert cross.kind == "cross"
    start, end = cross.path.vertices[0], cross.path.vertices[-1]
    assert start.tolist() == [3.0, bottom], "leaves through the bottom of the source"
    assert end[1] == pytest.approx(graph.SIDE_LANE_Y + top), "lands on the top of the target"


def test_edge_widths_grow_with_the_square_root_of_cases():
    widths = graph.edge_widths(np.array([100, 25, 1]))
    span = graph.MAX_WIDTH - graph.MIN_WIDTH
    assert widths.tolist() == pytest.approx(
        [graph.MAX_WIDTH, graph.MIN_WIDTH + span * 0.5, graph.MIN_WIDTH + span * 0.1]
    )
    assert graph.edge_widths(np.array([])).size == 0


def test_heaviest_edge_is_most_order_hours_not_highest_median():
    # shipped -> delivered: 900 x 41 h = 36,900 order-hours; return step: 60 x 48 = 2,880
    assert graph.heaviest_edge(ORDER_FLOW) == ("shipped", "delivered")
    total = (ORDER_FLOW["count"] * ORDER_FLOW["mean_h"]).sum()
    assert graph.hours_share(ORDER_FLOW, ("shipped", "delivered")) == pytest.approx(36900 / total)
    ends_only = edges([(flow.START, "created", 10, math.nan)])
    assert graph.heaviest_edge(ends_only) is None


@pytest.mark.parametrize(
    ("hours", "text"), [(0.04, "0.0"), (9.94, "9.9"), (39.4, "39"), (1234.0, "1,234")]
)
def test_hours_text(hours, text):
    assert graph.hours_text(hours) == text
    assert graph.hours_text(math.nan) == "–"


def _by_gid(fig, prefix: str) -> dict:
    ax = fig.axes[0]
    found = {}
    for artist in [*ax.patches, *ax.texts]:
        gid = artist.get_gid() or ""
        if gid.startswith(prefix):
            found[gid[len(prefix) :]] = artist
    return found


def _is_grey(colour) -> bool:
    r, g, b, _ = matplotlib.colors.to_rgba(colour)
    return r == g == b


def test_draw_dfg_labels_widths_and_highlight():
    fig = graph.draw_dfg(ORDER_FLOW, lang="en", title="Order flow", min_cases=5)
    assert plots.title_of(fig) == "Order flow"
    arrows = {k: v for k, v in _by_gid(fig, "").items() if "->" in k and ":" not in k}
    # picked -> picked has 4 cases, under min_cases
    assert set(arrows) == {
        f"{s}->{t}" for s, t in zip(ORDER_FLOW["source"], ORDER_FLOW["target"], strict=True)
    } - {"picked->picked"}
    assert arrows["created->paid"].get_linewidth() == pytest.approx(graph.MAX_WIDTH)
    assert arrows["created->cancelled"].get_linewidth() < arrows["paid->shipped"].get_linewidth()
    labels = {k: v.get_text() for k, v in _by_gid(fig, "label:").items()}
    assert labels["shipped->delivered"] == "900\n39 h"
    assert labels["created->paid"] == "1,000\n0.5 h"
    # the heaviest edge: vermillion AND a bold label, so grey print still shows it
    hot = arrows["shipped->delivered"]
    assert matplotlib.colors.to_hex(hot.get_edgecolor()) == graph.HIGHLIGHT_COLOUR.lower()
    assert _by_gid(fig, "label:")["shipped->delivered"].get_fontweight() == "bold"
    others = [a for k, a in arrows.items() if k != "shipped->delivered"]
    assert all(_is_grey(a.get_edgecolor()) for a in others)
    nodes = _by_gid(fig, "node:")
    assert all(_is_grey(n.get_edgecolor()) and _is_grey(n.get_facecolor()) for n in nodes.values())
    names = {k: v.get_text() for k, v in _by_gid(fig, "node-label:").items()}
    assert names["return_requested"] == "Return\nrequested"
    assert names["cancelled"] == "Cancelled"


def test_draw_dfg_in_chinese_and_without_highlight():
    fig = graph.draw_dfg(ORDER_FLOW, lang="zh-CN", title="订单流转", highlight=None)
    names = {k: v.get_text() for k, v in _by_gid(fig, "node-label:").items()}
    assert names["shipped"] == "发货" and names["cancelled"] == "取消"
    labels = {k: v.get_text() for k, v in _by_gid(fig, "label:").items()}
    assert labels["shipped->delivered"] == "900 单\n39 小时"
    arrows = [a for k, a in _by_gid(fig, "").items() if "->" in k and ":" not in k]
    assert all(_is_grey(a.get_edgecolor()) for a in arrows)


def test_end_edges_become_counts_under_the_nodes():
    log = pd.DataFrame(
        {
            "case_id": pd.Series(["a", "a", "b", "b", "b"], dtype="str"),
            "activity": ["created", "cancelled", "created", "paid", "shipped"],
            "timestamp": pd.to_datetime(
                [
                    "2026-01-05 09:00",
                    "2026-01-05 10:00",
                    "2026-01-05 09:00",
                    "2026-01-05 09:30",
                    "2026-01-05 12:00",
                ]
            ).tz_localize("Asia/Shanghai"),
        }
    )
    dfg = flow_engine.directly_follows(log, start_end=True)
    fig = graph.draw_dfg(dfg, lang="en")
    ends = {k: v.get_text() for k, v in _by_gid(fig, "ends:").items()}
    assert ends == {"cancelled": "1 end here", "shipped": "1 end here"}
    arrows = [k for k in _by_gid(fig, "") if "->" in k and ":" not in k]
    assert f"{flow.START}->created" in arrows
    assert not [k for k in arrows if k.endswith(f"->{flow.END}")]
    assert _by_gid(fig, "label:")[f"{flow.START}->created"].get_text() == "2"


def test_note_is_printed_with_the_legend():
    fig = graph.draw_dfg(ORDER_FLOW, lang="en", note="Not drawn: 1 rare transition.")
    footer = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("Arrow width")]
    assert footer and footer[0].endswith("Not drawn: 1 rare transition.")


def test_inputs_not_mutated():
    before = ORDER_FLOW.copy()
    graph.draw_dfg(ORDER_FLOW, lang="en", min_cases=10)
    pd.testing.assert_frame_equal(ORDER_FLOW, before)
