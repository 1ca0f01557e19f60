"""Small exports shaped like real ones, with every row kept for hand-computed figures.

* ``olist``: an English marketplace export shaped like the public Olist orders table
  (UTF-8, naive São Paulo times, a status column, no order type, warehouse, carrier,
  region or amount) and its payments table (several rows per order).
* ``oms``: a Chinese OMS download (GBK, Chinese headers, times as 2026/11/16 08:30:00,
  no promised delivery time, exception types with one value no mapping knows), as a CSV
  or as an XLSX report, either with a title above the header, as back offices write them.

Both cover the six weeks 2026-W42 to 2026-W47 and reach into the Sunday of W47.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

WEEKS = [dt.date(2026, 10, 12) + dt.timedelta(weeks=k) for k in range(6)]  # Mondays W42..W47
PER_WEEK = 50
STEP = dt.timedelta(minutes=200)  # 50 orders x 200 min: Monday 00:00 to Sunday 19:20

OLIST_HEADER = [
    "order_id",
    "customer_id",
    "order_status",
    "order_purchase_timestamp",
    "order_approved_at",
    "order_delivered_carrier_date",
    "order_delivered_customer_date",
    "order_estimated_delivery_date",
]
OMS_HEADER = [
    "订单编号",
    "订单类型",
    "下单时间",
    "付款时间",
    "发货时间",
    "签收时间",
    "仓库",
    "快递公司",
    "收货省份",
    "订单金额",
    "异常类型",
]


@dataclass
class Order:
    """One generated order, in the export's own terms (naive local times)."""

    order_id: str
    week: dt.date  # Monday of its creation week
    index: int  # position within the week
    status: str
    created: dt.datetime
    paid: dt.datetime | None
    shipped: dt.datetime | None
    delivered: dt.datetime | None
    estimated: dt.datetime | None = None
    order_type: str = ""
    warehouse: str = ""
    carrier: str = ""
    region: str = ""
    amount: float = 0.0
    exception: str = ""
    payments: tuple[float, ...] = ()


def _fmt(when: dt.datetime | None, pattern: str) -> str:
    return "" if when is None else when.strftime(pattern)


def olist_orders() -> list[Order]:
    """The Olist-shaped orders. Statuses by position: 0 canceled, 1 unavailable, 2 shipped,
    3 processing, 4 invoiced, 5 created (not approved), others delivered; every 7th handed
    to the carrier 17 h before its approval (a milestone out of order); every 9th delivered
    late (12 days after hand-off, after the estimate of 10 days after purchase)."""
    out = []
    for monday in WEEKS:
        for i in range(PER_WEEK):
            created = dt.datetime.combine(monday, dt.time()) + i * STEP
            kind = i % 20
            status = {0: "canceled", 1: "unavailable", 2: "shipped", 3: "processing"}.get(
                kind, {4: "invoiced", 5: "created"}.get(kind, "delivered")
            )
            paid = None if status in ("canceled", "created") else created + dt.timedelta(hours=1)
            shipped = delivered = None
            if status in ("shipped", "delivered"):
                assert paid is not None
                early = i % 7 == 6 and status == "delivered"
                shipped = paid + dt.timedelta(hours=-17 if early else 20)
            if status == "delivered":
                assert shipped is not None
                late = i % 9 == 8
                delivered = shipped + (dt.timedelta(days=12) if late else dt.timedelta(hours=60))
            estimated = dt.datetime.combine(created.date() + dt.timedelta(days=10), dt.time())
            payments = tuple(10.0 + i % 5 for _ in range(1 + i % 3))
            out.append(
                Order(
                    f"ol{monday:%m%d}{i:03d}",
                    monday,
                    i,
                    status,
                    created,
                    paid,
                    shipped,
                    delivered,
                    estimated,
                    payments=payments,
                )
            )
    return out


def write_olist(folder: Path) -> tuple[Path, Path, list[Order]]:
    """orders.csv and payments.csv of the Olist shape; returns both paths and the orders."""
    folder.mkdir(parents=True, exist_ok=True)
    orders = olist_orders()
    fmt = "%Y-%m-%d %H:%M:%S"
    path = folder / "olist_orders_dataset.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(OLIST_HEADER)
        for o in orders:
            writer.writerow(
                [
                    o.order_id,
                    f"c{o.order_id}",
                    o.status,
                    _fmt(o.created, fmt),
                    _fmt(o.paid, fmt),
                    _fmt(o.shipped, fmt),
                    _fmt(o.delivered, fmt),
                    _fmt(o.estimated, fmt),
                ]
            )
    payments = folder / "olist_order_payments_dataset.csv"
    with payments.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "order_id",
                "payment_sequential",
                "payment_type",
                "payment_installments",
                "payment_value",
            ]
        )
        for o in orders:
            for seq, value in enumerate(o.payments, start=1):
                writer.writerow([o.order_id, seq, "credit_card", 1, f"{value:.2f}"])
    return path, payments, orders


OMS_TYPES = ("普通订单", "普通订单", "普通订单", "特殊订单", "售后订单")
OMS_WAREHOUSES = ("华东仓", "华南仓")
OMS_CARRIERS = ("顺丰", "中通", "圆通")
OMS_REGIONS = ("浙江", "广东", "四川")
# exception by position modulo 25: 缺货 and 地址错误 map onto canonical codes, 无 is none,
# 其他 has no mapping (kept as "unmapped", still an abnormal order).
OMS_EXCEPTIONS = {3: "缺货", 11: "地址错误", 17: "其他", 20: "缺货"}


def oms_orders() -> list[Order]:
    """The Chinese OMS orders: paid 30 min after creation; shipped after 18 h (every 6th
    not shipped yet); delivered 40 h after shipping, 80 h for 圆通 (every 4th shipped not
    delivered yet); amount 100 + 7 x (i mod 10)."""
    out = []
    for monday in WEEKS:
        for i in range(PER_WEEK):
            created = dt.datetime.combine(monday, dt.time()) + i * STEP
            paid = created + dt.timedelta(minutes=30)
            shipped = None if i % 6 == 5 else paid + dt.timedelta(hours=18)
            carrier = OMS_CARRIERS[i % 3]
            delivered = None
            if shipped is not None and i % 4 != 3:
                delivered = shipped + dt.timedelta(hours=80 if carrier == "圆通" else 40)
            out.append(
                Order(
                    f"{monday:%Y%m%d}{i:04d}",
                    monday,
                    i,
                    "",
                    created,
                    paid,
                    shipped,
                    delivered,
                    order_type=OMS_TYPES[i % 5],
                    warehouse=OMS_WAREHOUSES[i % 2],
                    carrier=carrier,
                    region=OMS_REGIONS[i % 3],
                    amount=100.0 + 7 * (i % 10),
                    exception=OMS_EXCEPTIONS.get(i % 25, "无"),
                )
            )
    return out


# The report title an OMS writes above the header of a download or an Excel report.
OMS_TITLE = "订单报表 2026-10-12 至 2026-11-22"


def _oms_row(o: Order) -> list[str]:
    fmt = "%Y/%m/%d %H:%M:%S"
    return [
        o.order_id,
        o.order_type,
        _fmt(o.created, fmt),
        _fmt(o.paid, fmt),
        _fmt(o.shipped, fmt),
        _fmt(o.delivered, fmt),
        o.warehouse,
        o.carrier,
        o.region,
        f"{o.amount:.2f}",
        o.exception,
    ]


def write_oms(folder: Path, title: tuple[str, ...] = ()) -> tuple[Path, list[Order]]:
    """The GBK CSV download with Chinese headers; returns its path and the orders.

    ``title``: lines written above the header (e.g. "导出时间: 2026-11-23 09:00").
    """
    folder.mkdir(parents=True, exist_ok=True)
    orders = oms_orders()
    path = folder / "订单导出.csv"
    with path.open("w", encoding="gbk", newline="") as fh:
        fh.writelines(f"{line}\r\n" for line in title)  # as csv.writer ends its lines
        writer = csv.writer(fh)
        writer.writerow(OMS_HEADER)
        writer.writerows(_oms_row(o) for o in orders)
    return path, orders


def write_oms_xlsx(folder: Path, title: str | None = OMS_TITLE) -> tuple[Path, list[Order]]:
    """The same orders as an Excel report: ``title`` in row 1, merged across the header's
    width, row 2 empty and the header in row 3 (no title: the header in row 1); the
    cells as the CSV writes them. Returns its path and the orders."""
    from openpyxl import Workbook

    folder.mkdir(parents=True, exist_ok=True)
    orders = oms_orders()
    book = Workbook()
    sheet = book.active
    sheet.title = "订单"
    if title is not None:
        sheet.cell(row=1, column=1, value=title)
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(OMS_HEADER))
        sheet.append([])  # row 2, empty
    for row in [OMS_HEADER, *(_oms_row(o) for o in orders)]:
        sheet.append(row)
    path = folder / "订单报表.xlsx"
    book.save(path)
    return path, orders
