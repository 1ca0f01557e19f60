import os
import warnings

import pandas as pd
import pytest
from PIL import Image as PILImage

from meetinglib.report import charts as plots


def _png_size(data: bytes) -> tuple[int, int]:
    import io

    return PILImage.open(io.BytesIO(data)).size


def test_stacked_bars_png():
    frame = pd.DataFrame({"normal": [5, 7], "special": [1, 0]}, index=["Mon", "Tue"])
    fig = plots.stacked_bars(frame, title="t", xlabel="x", ylabel="y", labels=["A", "B"])
    data = plots.png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = _png_size(data)
    assert w > 500 and h > 200


def test_palette_is_distinct_and_hatched_for_grey_print():
    # Grey levels (ITU-R BT.601 luma) of the first three series differ enough to tell
    # apart in print; hatching carries the rest.
    def luma(hex_colour):
        r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        return 0.299 * r + 0.587 * g + 0.114 * b

    lumas = sorted(luma(c) for c in plots.PALETTE[:3])
    assert min(b - a for a, b in zip(lumas, lumas[1:], strict=False)) > 15
    assert len(set(plots.HATCHES)) == len(plots.HATCHES)


@pytest.mark.skipif(
    plots.cjk_font() is None and not os.environ.get("CI"),
    reason="no CJK font installed (make system-deps); required in CI",
)
def test_chinese_text_draws_without_missing_glyphs():
    frame = pd.DataFrame({"normal": [5, 7]}, index=["周一", "周二"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        fig = plots.stacked_bars(
            frame,
            title="最忙的一天是周二",
            xlabel="日期",
            ylabel="订单数",
            labels=["普通订单"],
            lang="zh-CN",
        )
        plots.png_bytes(fig)


def test_empty_pareto_and_message_do_not_fail():
    plots.png_bytes(
        plots.pareto(pd.Series(dtype=float), title="t", ylabel="y", cumulative_label="c")
    )
    plots.png_bytes(plots.message("nothing this week"))


def test_long_titles_are_wrapped_inside_the_figure():
    frame = pd.DataFrame({"normal": [5, 7]}, index=["Mon", "Tue"])
    title = "Largest avoidable delay: shipped to delivered in region West, " * 3
    fig = plots.stacked_bars(frame, title=title, xlabel="x", ylabel="y", labels=["A"])
    plots.png_bytes(fig)
    artist = fig.axes[0]._left_title
    assert "\n" in artist.get_text()
    assert artist.get_window_extent(fig.canvas.get_renderer()).x1 <= fig.bbox.x1


@pytest.mark.skipif(
    plots.cjk_font() is None and not os.environ.get("CI"),
    reason="no CJK font installed (make system-deps); required in CI",
)
def test_chinese_names_draw_in_english_handouts_too():
    # A Chinese export's carriers and regions appear in the English handout's charts.
    frame = pd.DataFrame({"normal": [5, 7]}, index=["顺丰", "中通"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        fig = plots.stacked_bars(
            frame, title="Busiest carrier: 中通", xlabel="Carrier", ylabel="Orders",
            labels=["Normal"], lang="en",
        )  # fmt: skip
        plots.png_bytes(fig)
    assert plots.style("en")["font.sans-serif"][0] == "DejaVu Sans"
