"""Triage: near-duplicates, evidence and priority on hand-computed fixture data."""

from __future__ import annotations

import csv
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from meetinglib.core.i18n import t
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.sample import write_sample_issues
from meetinglib.meeting.intake import add_issue, import_issues
from meetinglib.meeting.store import Store
from meetinglib.meeting.triage import (
    OrdersData,
    TriageReport,
    evidence,
    excess_share,
    group_issues,
    impact,
    late_orders,
    priority,
    segment_dict,
    segment_figures,
    title_similarity,
    triage,
)

TZ = "Asia/Shanghai"
W47 = IsoWeek(2026, 47)  # Monday 2026-11-16 to Monday 2026-11-23
DEPTS = ["operations", "customer_service", "logistics", "finance", "it"]
A = "carrier=EastPost;region=South"


def ts(text):
    return pd.Timestamp(text, tz=TZ) if text else pd.NaT


# order: created, paid, shipped, delivered, promised ship, promised delivery,
#        carrier, region, exception. Comments: what the order is in week 2026-W47.
ORDERS = {
    1: ("11-16 09:00", "11-16 09:05", "11-17 10:00", "11-20 10:00", "11-18 09:00", "11-19 10:00",
        "EastPost", "South", None),  # delivered late
    2: ("11-16 10:00", "11-16 10:05", "11-17 10:00", "11-18 10:00", "11-18 10:00", "11-19 10:00",
        "EastPost", "South", None),  # fine
    3: ("11-16 11:00", "11-16 11:05", "", "", "11-17 11:00", "11-20 11:00",
        "EastPost", "South", "stockout"),  # overdue at week end, exception
    4: ("11-17 09:00", "11-17 09:05", "11-17 15:00", "11-19 10:00", "11-18 09:00", "11-20 09:00",
        "SwiftExpress", "South", None),  # fine (refund 50)
    5: ("11-17 10:00", "11-17 10:05", "11-19 12:00", "11-20 12:00", "11-18 10:00", "11-21 10:00",
        "SwiftExpress", "North", None),  # shipped late
    6: ("11-18 09:00", "11-18 09:05", "11-19 09:00", "11-20 09:00", "11-20 09:00", "11-21 09:00",
        "SwiftExpress", "North", None),  # fine
    7: ("11-18 10:00", "11-18 10:05", "11-19 09:00", "11-20 09:00", "11-20 09:00", "11-21 09:00",
        "SwiftExpress", "North", "address_error"),  # exception only
    8: ("11-19 09:00", "11-19 09:05", "11-20 09:00", "11-21 10:00", "11-21 09:00", "11-22 10:00",
        "SwiftExpress", "North", None),  # fine
    9: ("11-19 10:00", "11-19 10:05", "11-20 09:00", "11-21 10:00", "11-21 09:00", "11-22 10:00",
        "EastPost", "North", None),  # fine
    10: ("11-19 11:00", "11-19 11:05", "11-20 09:00", "11-22 20:00", "11-21 09:00", "11-22 12:00",
         "EastPost", "North", None),  # delivered late
    # created the week before
    11: ("11-09 09:00", "11-09 09:05", "11-10 09:00", "11-11 09:00", "11-11 09:00", "11-12 09:00",
         "EastPost", "South", None),  # fine in W46
    12: ("11-10 09:00", "11-10 09:05", "11-11 09:00", "11-14 09:00", "11-12 09:00", "11-13 09:00",
         "SwiftExpress", "North", None),  # delivered late in W46 (refund 30 in W46)
    13: ("11-13 09:00", "11-13 09:05", "11-14 09:00", "11-17 09:00", "11-15 09:00", "11-16 09:00",
         "EastPost", "South", None),  # delivered late in W47
}  # fmt: skip


@pytest.fixture(scope="module")
def orders():
    rows = []
    for number, values in ORDERS.items():
        times = [ts(f"2026-{v}") if v else pd.NaT for v in values[:6]]
        rows.append([f"O{number:02d}", *times, *values[6:]])
    columns = ["order_id", "created_at", "paid_at", "shipped_at", "delivered_at"]
    columns += ["promised_ship_by", "promised_delivery_by", "carrier", "region", "exception_code"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["order_id"] = frame["order_id"].astype("str")
    for name in ("carrier", "region", "exception_code"):
        frame[name] = frame[name].astype("category")
    frame["cancelled_at"] = pd.Series(pd.NaT, index=frame.index, dtype=frame["paid_at"].dtype)
    frame["order_type"] = pd.Categorical(["normal"] * len(frame))
    return frame


@pytest.fixture(scope="module")
def after_sales():
    return pd.DataFrame(
        {
            "order_id": pd.array(["O01", "O04", "O12"], dtype="str"),
            "requested_at": [
                ts("2026-11-21 10:00"),
                ts("2026-11-20 10:00"),
                ts("2026-11-15 10:00"),
            ],
            "refund_amount": [100.0, 50.0, 30.0],
        }
    )


def test_late_orders_by_hand(orders):
    late = late_orders(orders, W47.window(TZ), 48.0)
    assert sorted(orders.loc[late, "order_id"]) == ["O01", "O03", "O05", "O10", "O13"]


def test_segment_figures_by_hand(orders, after_sales):
    window = W47.window(TZ)
    seg = segment_figures(orders, after_sales, segment_dict(A), window, 48.0)
    assert seg.to_dict() == {
        "orders": 3.0,  # O01-O03 created this week
        "late_orders": 3.0,  # O01 delivered late, O03 overdue, O13 delivered late
        "exception_orders": 1.0,  # O03
        "problem_orders": 3.0,
        "refund_amount": 100.0,  # O01
    }
    whole = segment_figures(orders, after_sales, {}, window, 48.0)
    assert whole.to_dict() == {
        "orders": 10.0,
        "late_orders": 5.0,
        "exception_orders": 2.0,
        "problem_orders": 6.0,  # the five late and O07
        "refund_amount": 150.0,
    }


def test_evidence_against_the_whole_and_last_week(orders, after_sales):
    ev = evidence(
        orders, after_sales, segment_dict(A), W47.window(TZ), W47.previous().window(TZ), 48.0
    )
    assert ev.loc["orders"].tolist()[:4] == [3.0, 2.0, 10.0, 3.0]
    assert ev.loc["late_orders"].tolist()[:4] == [3.0, 0.0, 5.0, 1.0]
    assert ev.loc["refund_amount"].tolist()[:4] == [100.0, 0.0, 150.0, 30.0]
    assert ev.loc["late_share", "this_week"] == 1.0
    assert ev.loc["exception_share", "this_week"] == pytest.approx(1 / 3)
    assert ev["part_of_all"].loc[["orders", "late_orders", "problem_orders"]].tolist() == [
        0.3,
        0.6,
        0.5,
    ]
    assert ev.loc["refund_amount", "part_of_all"] == pytest.approx(2 / 3)
    assert ev.loc["orders", "part_last_week"] == pytest.approx(2 / 3)
    assert np.isnan(ev.loc["exception_orders", "part_last_week"])  # 0 of 0
    assert np.isnan(ev.loc["late_share", "part_of_all"])


def test_impact_by_hand(orders, after_sales):
    window = W47.window(TZ)
    whole = segment_figures(orders, after_sales, {}, window, 48.0)

    def seg(text):
        return segment_figures(orders, after_sales, segment_dict(text), window, 48.0)

    # A: problems 3 of 3 orders, the other 7 orders 3 problems: excess 3 - 3*3/7 = 12/7.
    assert excess_share(seg(A), whole, "problem_orders") == pytest.approx((12 / 7) / 6)
    # refunds 100, the others 50 over 7 orders: excess 100 - 3*50/7 = 550/7 of 150.
    assert excess_share(seg(A), whole, "refund_amount") == pytest.approx((550 / 7) / 150)
    assert impact(seg(A), whole) == 1.0  # 11/21 / 0.25 > 1
    # address_error: 1 problem order of 1; the other 9 orders have 5: excess 4/9 of 6.
    assert impact(seg("exception_code=address_error"), whole) == pytest.approx((4 / 9) / 6 / 0.25)
    # North has fewer problems than the rest's rate: no excess.
    assert impact(seg("region=North"), whole) == 0.0


def test_priority_formula():
    assert priority("critical", 1.0, 0) == 80.0
    assert priority("high", 1.0, 0) == 66.7
    assert priority("high", None, 2) == 63.3  # severity stands in for the impact
    assert priority("medium", float("nan"), 0) == 26.7
    assert priority("low", 0.0, 9) == 20.0  # recurrence capped at 4 weeks
    assert priority("low", 0.0, 0) == 0.0


def test_similarity_works_for_english_and_chinese():
    assert title_similarity("EastPost late deliveries", "Late deliveries: EastPost!") == 1.0
    # bigrams 9 and 5, four shared (华南 快递 递延 延误): 2 * 4 / 14.
    assert title_similarity("华南地区快递延误严重", "华南快递延误") == pytest.approx(8 / 14)
    assert title_similarity("退款处理时间过长", "客服系统卡顿") == 0.0
    assert title_similarity("", "anything") == 0.0


def test_groups_are_per_department_and_transitive():
    issues = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "department": ["logistics", "logistics", "logistics", "it", "logistics", "it"],
            "week": ["2026-W47", "2026-W46", "2026-W47", "2026-W47", "2026-W47", "2026-W47"],
            "title": [
                "EastPost late deliveries in South",
                "Late deliveries EastPost South region",
                "Customers in the South wait",  # same segment as 2 only
                "EastPost late deliveries in South",  # another department
                "Conveyor belt stops",
                "Printer offline",
            ],
            "segment": ["", "region=South", "region=South", "", "", ""],
        }
    )
    groups = group_issues(issues)
    # 1~2 by title, 2~3 by segment: one group named after 2, raised first (W46).
    assert groups.tolist() == [2, 2, 2, 4, 5, 6]


@pytest.fixture
def fixture_store(tmp_path):
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as s:
        rows = [
            # id, department, week, title, severity, segment, status
            (1, "logistics", "2026-W47", "EastPost deliveries to the South region are late",
             "high", A, "open"),
            (2, "logistics", "2026-W47", "EastPost late deliveries in South region",
             "medium", A, "open"),
            (3, "logistics", "2026-W47", "RapidRoute weekend pick-ups missed", "low", "", "open"),
            (4, "customer_service", "2026-W47", "华南地区客户投诉快递延误", "critical", A, "open"),
            (5, "customer_service", "2026-W47", "地址错误订单增多", "medium",
             "exception_code=address_error", "open"),
            (6, "it", "2026-W45", "Order export job fails on Monday mornings", "high", "", "open"),
            (7, "it", "2026-W46", "Order export job failed again on Monday", "high", "",
             "resolved"),
            (8, "it", "2026-W47", "Label printer times out", "medium", "", "open"),
            (9, "finance", "2026-W46", "Settlement file arrives late", "low", "", "open"),
            (10, "finance", "2026-W47", "Refunds for damaged parcels growing", "medium",
             "carrier=SwiftExpress;region=North", "open"),
            (11, "finance", "2026-W47", "Settlement file arrives late again", "low", "", "open"),
            (12, "finance", "2026-W44", "Bank fees too high", "low", "", "resolved"),
        ]  # fmt: skip
        s.add_issues(
            {
                "department": d,
                "week": w,
                "title": title,
                "severity": sev,
                "segment": seg,
                "status": status,
                "source": f"{d}.csv",
                "source_row": n + 1,
                "row_hash": str(n),
            }
            for n, d, w, title, sev, seg, status in rows
        )
        yield s


def test_ranking_computed_by_hand(fixture_store, orders, after_sales):
    data = OrdersData(orders, after_sales, TZ, 48.0)
    table = triage(fixture_store.issues(through_week="2026-W47"), W47, data)
    got = table[["issue_id", "member_ids", "status", "weeks_open", "recurrence", "priority"]]
    assert got.values.tolist() == [
        [4, "4", "new", 0, 0, 80.0],  # critical, impact 1
        [1, "1, 2", "new", 0, 0, 66.7],  # merged; high (of high, medium), impact 1
        [6, "6", "carried_over", 2, 2, 63.3],  # open since W45; raised W45 and W46
        [8, "8", "new", 0, 0, 26.7],  # medium, no segment
        [5, "5", "new", 0, 0, 25.2],  # medium, impact 8/27
        [10, "10", "new", 0, 0, 13.3],  # medium, impact 0
        [9, "9, 11", "reported_again", 1, 1, 5.0],  # low, raised W46 and again
        [3, "3", "new", 0, 0, 0.0],
    ]
    assert table["rank"].tolist() == list(range(1, 9))
    merged = table.iloc[1]
    assert merged["severity"] == "high" and merged["problem_orders"] == 3.0
    assert merged["sources"] == "2026-W47 logistics.csv row 2; 2026-W47 logistics.csv row 3"
    assert table.loc[table["issue_id"] == 5, "impact"].item() == pytest.approx(8 / 27)
    assert table.loc[table["issue_id"] == 3, "impact"].isna().all()


def test_without_data_severity_stands_in(fixture_store):
    table = triage(fixture_store.issues(through_week="2026-W47"), W47)
    assert table.loc[table["issue_id"] == 4, "priority"].item() == 80.0  # 0.4 + 0.4 x 1
    assert table["problem_orders"].isna().all()
    assert len(table) == 8


def test_no_issues_gives_an_empty_table(fixture_store):
    assert triage(fixture_store.issues(through_week="2026-W40"), IsoWeek(2026, 40)).empty


def test_handout_pieces_escape_user_text(fixture_store, orders, after_sales):
    add_issue(
        fixture_store,
        "it",
        W47,
        departments=DEPTS,
        title="<script>alert('x')</script> export",
        severity="critical",
        segment="warehouse=<b>WH</b>",
    )
    data = OrdersData(orders, after_sales, TZ, 48.0)
    table = triage(fixture_store.issues(through_week="2026-W47"), W47, data)
    report = TriageReport(table, W47, company="<i>Shop</i>", departments=DEPTS, data=data)
    page = report.overview().data + report.title().data
    assert "<script>" not in page and "<b>WH" not in page and "<i>Shop" not in page
    assert "#13 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; export" in page
    zh = TriageReport(table, W47, company="Shop", departments=DEPTS, data=data, lang="zh-CN")
    assert "问题" in zh.overview().data and "紧急" in zh.overview().data


NAMES = {
    "carrier": {"EastPost": {"en": "East Post Co", "zh-CN": "东方邮政"}},
    "region": {"South": {"en": "Southern China", "zh-CN": "华南"}},
}


def _label(dimension, code, lang):
    """As Params.label does with ``labels: NAMES``."""
    names = NAMES.get(dimension, {}).get(code, {})
    return names.get(lang) or names.get("en") or code


@pytest.mark.parametrize(
    ("lang", "carrier", "region"),
    [("en", "East Post Co", "Southern China"), ("zh-CN", "东方邮政", "华南")],
)
def test_segments_are_named_as_the_params_do(
    fixture_store, orders, after_sales, tmp_path, lang, carrier, region
):
    data = OrdersData(orders, after_sales, TZ, 48.0)
    table = triage(fixture_store.issues(through_week="2026-W47"), W47, data)
    report = TriageReport(
        table, W47, company="Shop", departments=DEPTS, data=data, lang=lang, label=_label
    )
    overview = report.overview().data
    said = {k: t(f"triage.segment.{k}", lang) for k in ("carrier", "region")}
    assert f"{said['carrier']} {carrier}, {said['region']} {region}" in overview
    assert f"{said['carrier']} EastPost" not in overview  # the titles keep their own words
    assert f"{said['carrier']} SwiftExpress" in overview, "a code without a name stays as is"
    alt = report.evidence_chart(A).metadata["alt"]
    assert carrier in alt and region in alt and "EastPost" not in alt
    # issues.csv keeps the stored segment text
    report.save(tmp_path)
    saved = pd.read_csv(tmp_path / "issues.csv", keep_default_na=False)
    assert A in set(saved["segment"])
    assert not saved["segment"].str.contains(carrier).any()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_order_types_in_segments_are_named_by_the_catalogue(
    fixture_store, orders, after_sales, lang
):
    fixture_store.add_issues(
        [
            {
                "department": "operations",
                "week": "2026-W47",
                "title": "Gift orders wait for wrapping",
                "severity": "medium",
                "segment": "order_type=special",
                "status": "open",
                "source": "operations.csv",
                "source_row": 1,
                "row_hash": "special",
            }
        ]
    )
    data = OrdersData(orders, after_sales, TZ, 48.0)
    table = triage(fixture_store.issues(through_week="2026-W47"), W47, data)
    report = TriageReport(table, W47, company="Shop", departments=DEPTS, data=data, lang=lang)
    overview = report.overview().data
    said = t("triage.segment.order_type", lang)
    assert f"{said} {t('order_type.special', lang)}" in overview
    assert f"{said} special" not in overview


# --- through the runner ------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in_script = True
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


@pytest.mark.slow
def test_triage_notebook_through_the_runner(tmp_path, sample, capsys):
    from meetinglib.cli import main
    from tests.conftest import SAMPLE_WEEK, write_params

    db = tmp_path / "meeting.db"
    params = write_params(
        tmp_path, sample.folder, notebooks="[issue_triage]", store=f"{{path: '{db}'}}"
    )
    with Store.at(f"sqlite:///{db}") as s:
        for f in write_sample_issues(tmp_path / "issues", SAMPLE_WEEK):
            import_issues(s, f.path, f.department, f.week, departments=DEPTS)
        add_issue(
            s,
            "it",
            SAMPLE_WEEK,
            departments=DEPTS,
            title="<script>alert('pwned')</script> in the label printer",
            severity="low",
        )
    assert main(["run", "--params", str(params), "--week", SAMPLE_WEEK]) == 0, capsys.readouterr()
    week_dir = tmp_path / "outputs" / SAMPLE_WEEK

    with open(week_dir / "issues.csv", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    priorities = [float(r["priority"]) for r in rows]
    assert priorities == sorted(priorities, reverse=True)
    stockout = next(r for r in rows if r["segment"] == "warehouse=WH-South;exception_code=stockout"
                    and r["department"] == "operations")  # fmt: skip
    assert stockout["rank"] == "1" and stockout["reports"] == "2"  # English + Chinese merged
    assert float(stockout["impact"]) == 1.0
    eastpost = next(r for r in rows if r["department"] == "logistics" and "EastPost" in r["title"])
    assert eastpost["reports"] == "2" and int(eastpost["late_orders"]) > 0
    export = next(r for r in rows if r["department"] == "it" and "export" in r["title"].lower())
    assert export["status"] == "reported_again" and export["recurrence"] == "1"
    carried = [r for r in rows if r["status"] == "carried_over"]
    assert [r["title"] for r in carried] == ["Refund requests take too long to close"]

    page = _Page()
    body = (week_dir / "issue_triage.html").read_text(encoding="utf-8")
    page.feed(body)
    assert not any("pwned" in s for s in page.scripts), "user text never becomes a script"
    assert "<script>alert('pwned')</script> in the label printer" in "".join(page.text)
    assert page.images and all(s.startswith("data:image/png;base64,") for s in page.images)
    text = " ".join(page.text)
    for heading in (
        "Issue triage",
        "Issues by priority",
        "Logistics: 2 issues",
        "Priority (0-100)",
    ):
        assert heading in text
    assert "issues.csv" in (week_dir / "index.html").read_text(encoding="utf-8")


def test_open_action_items_of_earlier_meetings_come_back(fixture_store, orders, after_sales):
    import datetime as dt

    from meetinglib.meeting.store import ACTION_ITEMS

    record = fixture_store.record_meeting(
        "2026-W46",
        details={
            "title": "Review",
            "starts_at": dt.datetime(2026, 11, 16, 6),
            "ends_at": dt.datetime(2026, 11, 16, 7),
            "timezone": TZ,
        },
        uid="u@x",
        invite_hash="h",
        people=[],
    )
    with fixture_store.transaction() as conn:
        for text, due, status in [
            ("Call EastPost about <South>", dt.date(2026, 11, 20), "open"),
            ("Book extra pick-ups", dt.date(2026, 11, 30), "open"),
            ("Done already", dt.date(2026, 11, 18), "done"),
        ]:
            conn.execute(
                ACTION_ITEMS.insert().values(
                    meeting_id=record.id,
                    description=text,
                    owner="Chen Jie",
                    department="logistics",
                    due_date=due,
                    status=status,
                    note="",
                    created_at=dt.datetime(2026, 11, 16, 8),
                )
            )
    report = TriageReport(
        triage(fixture_store.issues(through_week="2026-W47"), W47),
        W47,
        company="Shop",
        departments=DEPTS,
        action_items=fixture_store.action_items(status="open"),
    )
    page = report.carried_over_table("logistics").data
    assert "Call EastPost about &lt;South&gt;" in page and "Done already" not in page
    rows = page.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == 2
    assert "overdue" in rows[0] and "overdue" not in rows[1]  # due 11-20 / 11-30, week ends 11-22
    assert report.carried_over_table("it") is None
