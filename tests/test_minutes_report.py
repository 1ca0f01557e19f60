"""The minutes handout's pieces, on a store in a temporary folder."""

from __future__ import annotations

import pytest

from meetinglib.core.i18n import t
from meetinglib.core.params import load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.intake import department_label
from meetinglib.meeting.minutes import record_minutes
from meetinglib.meeting.minutes_report import MinutesReport
from meetinglib.meeting.store import Store, set_segment_time
from tests.test_minutes import GOOD, minutes_params

WEEK = "2026-W47"
SEGMENTS = ["opening", "data_report", "solutions", "next_week_plan", "summary_feedback"]


def _titles(report: MinutesReport) -> dict[str, str]:
    frame = report.time_frame()
    return dict(zip(frame["segment"], frame["title"], strict=True))


@pytest.mark.parametrize("languages", [["en", "zh-CN"], ["zh-CN", "en"]])
def test_time_control_names_the_segments_in_the_handouts_language(tmp_path, languages):
    # The first language lays the agenda out and its titles are stored; each handout
    # names the segments in its own language all the same.
    path = minutes_params(tmp_path, f"languages: [{', '.join(languages)}]\n")
    params = load_params(path)
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        record_minutes(params, store, GOOD, WEEK)
        set_segment_time(store, WEEK, "retired_segment", 3)  # a key no agenda knows
        for lang in ("en", "zh-CN"):
            report = MinutesReport(params, store, IsoWeek.parse(WEEK), None, lang)
            titles = _titles(report)
            for key in SEGMENTS:
                assert titles[key] == t(f"agenda.{key}", lang)
            logistics = department_label("logistics", lang)
            assert titles["logistics"] == t(
                "agenda.department.one", lang, department=logistics, issues=1
            )
            assert titles["retired_segment"] == "retired_segment"  # as stored
            assert titles["total"] == t("minutes.time.total", lang)
            page = report.time_control().data
            assert t("agenda.opening", lang) in page
            other = "zh-CN" if lang == "en" else "en"
            assert t("agenda.opening", other) not in page
    assert titles["logistics"] == "物流部：1 个问题"


def test_a_departments_title_keeps_the_issue_count_the_agenda_had(tmp_path):
    # An issue carried into the meeting from the week before is resolved afterwards:
    # the minutes still name the segment as the agenda did, with its two issues.
    params = load_params(minutes_params(tmp_path, "languages: [en, zh-CN]\n"))
    with Store.at(f"sqlite:///{tmp_path / 'meeting.db'}") as store:
        (carried,) = store.add_issues(
            [{"department": "logistics", "week": "2026-W46", "title": "Stock count off",
              "severity": "low", "source": "x", "row_hash": "2"}]
        ).added  # fmt: skip
        record_minutes(params, store, GOOD, WEEK)
        store.set_issue_status([carried], "resolved", WEEK)
        report = MinutesReport(params, store, IsoWeek.parse(WEEK), None, "zh-CN")
        assert _titles(report)["logistics"] == "物流部：2 个问题"
