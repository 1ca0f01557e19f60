"""Every user-facing text of the handouts and the command line, in one place.

Labels are keyed by a short dotted name; each has an English and a Simplified
Chinese text. ``t("kpi.gmv", "zh-CN")`` returns the text; ``str.format`` fields
are filled from keyword arguments. A missing key or language is a bug, caught by
``tests/test_i18n.py``.
"""

from __future__ import annotations

LANGUAGES = ("en", "zh-CN")

# key: (English, Simplified Chinese)
LABELS: dict[str, tuple[str, str]] = {
    # --- order types and common words -------------------------------------------
    "order_type.normal": ("Normal", "普通订单"),
    "order_type.special": ("Special", "特殊订单"),
    "order_type.after_sales": ("After-sales", "售后订单"),
    "order_type.all": ("All orders", "全部订单"),
    "word.all": ("All", "全部"),
    "word.this_week": ("This week", "本周"),
    "word.last_week": ("Last week", "上周"),
    "word.change": ("Change", "变化"),
    "word.unit": ("Unit", "单位"),
    "word.kpi": ("Indicator", "指标"),
    "word.day": ("Day", "日期"),
    "word.orders": ("Orders", "订单数"),
    "word.hours": ("Hours", "小时"),
    "word.share": ("Share", "占比"),
    "word.cumulative_share": ("Cumulative share", "累计占比"),
    "word.count": ("Count", "数量"),
    "word.rate": ("Rate", "比率"),
    "word.median": ("Median", "中位数"),
    "word.p90": ("P90", "P90"),
    "word.none": ("none", "无"),
    "unit.orders": ("orders", "单"),
    "unit.hours": ("hours", "小时"),
    "unit.percent": ("%", "%"),
    "unit.currency": ("{currency}", "{currency}"),
    "weekday.0": ("Mon", "周一"),
    "weekday.1": ("Tue", "周二"),
    "weekday.2": ("Wed", "周三"),
    "weekday.3": ("Thu", "周四"),
    "weekday.4": ("Fri", "周五"),
    "weekday.5": ("Sat", "周六"),
    "weekday.6": ("Sun", "周日"),
    # --- exception codes ----------------------------------------------------------
    "exception.stockout": ("Stockout", "缺货"),
    "exception.address_error": ("Address error", "地址错误"),
    "exception.payment_failed": ("Payment failed", "支付失败"),
    "exception.customs_hold": ("Customs hold", "海关扣留"),
    "exception.lost": ("Lost in transit", "运输丢失"),
    "exception.damaged": ("Damaged", "货损"),
    "exception.fraud_review": ("Fraud review", "风控审核"),
    # --- KPIs ---------------------------------------------------------------------
    "kpi.orders_created": ("Orders created", "下单量"),
    "kpi.gmv": ("GMV", "成交总额"),
    "kpi.cancellation_rate": ("Cancellation rate", "取消率"),
    "kpi.stage.created_paid": ("Created → paid", "下单→支付"),
    "kpi.stage.paid_shipped": ("Paid → shipped (handling)", "支付→发货（处理）"),
    "kpi.stage.shipped_delivered": ("Shipped → delivered (transit)", "发货→签收（运输）"),
    "kpi.stage.created_delivered": ("Created → delivered (cycle time)", "下单→签收（订单周期）"),
    "kpi.on_time_ship_rate": ("On-time ship rate", "准时发货率"),
    "kpi.backlog": ("Backlog at week end", "周末积压订单"),
    "kpi.overdue_backlog": ("Overdue backlog at week end", "周末超时积压订单"),
    "kpi.abnormal_orders": ("Abnormal orders", "异常订单"),
    "kpi.abnormal_rate": ("Abnormal-order rate", "异常订单率"),
    "kpi.cycle_time_p90_h": ("Order cycle time P90 (created → delivered)", "订单周期 P90（下单→签收）"),
    "kpi.handling_median_h": ("Handling time median (paid → shipped)", "处理时长中位数（支付→发货）"),
    # --- data report ----------------------------------------------------------------
    "report.title": ("Weekly order-processing report", "订单处理周报"),
    "report.subtitle": ("{company} · week {week} ({start} – {end}, {tz})", "{company} · 第 {week} 周（{start} – {end}，{tz}）"),
    "report.headline": ("Headline", "核心指标"),
    "report.volume": ("Order volume", "订单量"),
    "report.efficiency": ("Processing efficiency", "处理效率"),
    "report.abnormal": ("Abnormal orders", "异常订单"),
    "report.quality": ("Data quality", "数据质量"),
    "chart.volume.title": ("{total:,} orders created; busiest day {day} ({count:,})", "共下单 {total:,} 单；最忙的一天是{day}（{count:,} 单）"),
    "chart.stages.title": ("Slowest stage at P90: {stage} ({hours:.1f} h)", "P90 最慢环节：{stage}（{hours:.1f} 小时）"),
    "chart.pareto.title": ("{top} accounts for {share:.0%} of abnormal orders", "{top}占异常订单的 {share:.0%}"),
    "chart.pareto.empty": ("No abnormal orders this week", "本周无异常订单"),
    "quality.clean": ("All {rows:,} rows loaded passed validation; nothing was set aside.", "载入的 {rows:,} 行数据全部通过校验，没有隔离任何数据。"),
    "quality.summary": ("{rows:,} rows loaded; {quarantined:,} set aside in quarantine, listed below.", "共载入 {rows:,} 行；{quarantined:,} 行被隔离，明细如下。"),
    "quality.table": ("Table", "数据表"),
    "quality.source": ("Source", "来源"),
    "quality.column": ("Column", "字段"),
    "quality.rule": ("Rule", "规则"),
    "quality.rows": ("Rows", "行数"),
    "quality.loaded": ("Rows loaded", "载入行数"),
    "quality.kept": ("Rows kept", "保留行数"),
    "quality.quarantined": ("Quarantined", "隔离行数"),
    # --- command line and index page ----------------------------------------------
    "cli.handouts_at": ("Handouts for {week}: {path}", "{week} 的会议材料：{path}"),
    "index.title": ("Meeting handouts · {week}", "会议材料 · {week}"),
    "index.generated": ("Generated {when} from {params}", "生成于 {when}，参数文件 {params}"),
    "notebook.data_report": ("Data report", "数据报告"),
}


def t(key: str, lang: str = "en", /, **fields: object) -> str:
    """The label ``key`` in ``lang`` ('en' or 'zh-CN'), formatted with ``fields``."""
    try:
        texts = LABELS[key]
    except KeyError:
        raise KeyError(f"no label {key!r}; add it to meetinglib/i18n.py LABELS") from None
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} not supported; use one of {LANGUAGES}")
    text = texts[LANGUAGES.index(lang)]
    return text.format(**fields) if fields else text


def label_or(key: str, lang: str, default: str) -> str:
    """The label if one exists (e.g. a known exception code), else ``default`` as is."""
    return t(key, lang) if key in LABELS else default
