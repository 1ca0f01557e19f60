"""The canonical tables, declared once.

Every source is mapped onto these tables; everything downstream (validation,
KPIs, plots, notebooks) reads only canonical names. Timestamps are tz-aware in
the platform timezone; a missing milestone means "not reached yet".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from meetinglib.core.weeks import Window

# Column a CSV source adds to a raw table: True where a line's cell count differs from the
# header's (validation sets such rows aside under "wrong field count").
WRONG_FIELDS_COL = "_wrong_fields"

Kind = Literal["id", "category", "text", "timestamp", "float", "int"]

ORDER_TYPES = ("normal", "special", "after_sales")
EXCEPTION_CODES = (
    "stockout",
    "address_error",
    "payment_failed",
    "customs_hold",
    "lost",
    "damaged",
    "fraud_review",
)
TICKET_CATEGORIES = ("complaint", "inquiry", "delivery", "return_request", "payment", "other")
AFTER_SALES_KINDS = ("return", "refund_only", "exchange")
SETTLEMENT_STATUSES = ("settled", "pending", "disputed", "refunded")
ACTIVITIES = ("created", "paid", "picked", "packed", "shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    allowed: tuple[str, ...] | None = None
    description: str = ""
    # A time promised, not a time something happened: it may lie ahead of today by more
    # than the plausible-date limit (validate.PROMISE_DAYS_AHEAD more).
    promise: bool = False


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    required_table: bool = False
    # (earlier, later) milestone pairs: when both are present, earlier <= later.
    milestone_order: tuple[tuple[str, str], ...] = ()
    # The timestamp that places a row in time, used to select rows by window.
    time_column: str | None = None
    # The time closes the row (a settlement is pending until settled): a row without it,
    # or with it after a window, is still open during the window and belongs to it
    # (selection_of).
    open_until_time: bool = False
    # (status column, status, time column): a row with that status must carry that time;
    # one without it contradicts itself and is kept and flagged (validate, rule "status
    # without time"), since its amount is real and a missing time is an export defect.
    status_times: tuple[tuple[str, str, str], ...] = ()
    description: str = ""
    _by_name: dict[str, Column] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def of_kind(self, *kinds: Kind) -> list[str]:
        return [c.name for c in self.columns if c.kind in kinds]

    def column(self, name: str) -> Column:
        return self._by_name[name]


ORDERS = TableSchema(
    name="orders",
    description="one row per order",
    key=("order_id",),
    required_table=True,
    time_column="created_at",
    columns=(
        Column("order_id", "id", required=True, description="unique order number"),
        Column("order_type", "category", required=True, allowed=ORDER_TYPES),
        Column("created_at", "timestamp", required=True),
        Column("paid_at", "timestamp"),
        Column("shipped_at", "timestamp"),
        Column("delivered_at", "timestamp"),
        Column("cancelled_at", "timestamp"),
        Column("promised_ship_by", "timestamp", promise=True),
        Column("promised_delivery_by", "timestamp", promise=True),
        Column("channel", "category"),
        Column("warehouse", "category"),
        Column("carrier", "category"),
        Column("region", "category"),
        Column("amount", "float", description="order value (GMV), platform currency"),
        Column("exception_code", "category", allowed=EXCEPTION_CODES, description="empty = none"),
    ),
    milestone_order=(
        ("created_at", "paid_at"),
        ("paid_at", "shipped_at"),
        ("created_at", "shipped_at"),
        ("shipped_at", "delivered_at"),
        ("created_at", "cancelled_at"),
    ),
)

TICKETS = TableSchema(
    name="tickets",
    description="customer-service tickets",
    key=("ticket_id",),
    time_column="opened_at",
    columns=(
        Column("ticket_id", "id", required=True),
        Column("order_id", "id"),
        Column("opened_at", "timestamp", required=True),
        Column("first_response_at", "timestamp"),
        Column("resolved_at", "timestamp"),
        Column("category", "category", required=True, allowed=TICKET_CATEGORIES),
        Column("csat", "float", description="1-5, empty when not rated"),
    ),
    milestone_order=(("opened_at", "first_response_at"), ("opened_at", "resolved_at")),
)

AFTER_SALES = TableSchema(
    name="after_sales",
    description="returns, refunds and exchanges",
    key=("case_id",),
    time_column="requested_at",
    columns=(
        Column("case_id", "id", required=True),
        Column("order_id", "id", required=True),
        Column("kind", "category", required=True, allowed=AFTER_SALES_KINDS),
        Column("requested_at", "timestamp", required=True),
        Column("closed_at", "timestamp"),
        Column("refund_amount", "float"),
        Column("reason", "category"),
    ),
    milestone_order=(("requested_at", "closed_at"),),
)

SETTLEMENTS = TableSchema(
    name="settlements",
    description="payment settlement per order",
    key=("order_id",),
    time_column="settled_at",
    open_until_time=True,
    # "settled" says the money arrived, so it has a time: an export whose status column was
    # updated and whose time column was not. A refund of money never settled has no
    # settlement time, so "refunded" needs none.
    status_times=(("status", "settled", "settled_at"),),
    columns=(
        Column("order_id", "id", required=True),
        Column("settled_at", "timestamp"),
        Column("amount", "float", required=True),
        Column("fee", "float"),
        Column("status", "category", required=True, allowed=SETTLEMENT_STATUSES),
    ),
)

ORDER_LINES = TableSchema(
    name="order_lines",
    description="order lines, for fill rate and stockouts",
    key=("order_id", "sku"),
    columns=(
        Column("order_id", "id", required=True),
        Column("sku", "id", required=True),
        Column("qty", "int", required=True),
        Column("qty_shipped", "int"),
    ),
)

EVENTS = TableSchema(
    name="events",
    description="process events, one row per activity of an order",
    key=(),
    time_column="timestamp",
    columns=(
        Column("order_id", "id", required=True),
        Column("activity", "category", required=True),
        Column("timestamp", "timestamp", required=True),
    ),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (ORDERS, TICKETS, AFTER_SALES, SETTLEMENTS, ORDER_LINES, EVENTS)
}
TABLES = tuple(SCHEMAS)

# The end of a window open to the future (pandas' timestamps end in April 2262).
OPEN_END = pd.Timestamp("2262-01-01", tz="UTC")


def selection_of(table: str, window: Window) -> Window:
    """The rows of ``table`` a report over ``window`` reads, as a window on its time
    column: ``window`` itself, or, for a table whose rows stay open until their time
    (``open_until_time``), every row from its start on: a settlement made after the
    window was pending during it. Rows without a time belong to every window then."""
    if SCHEMAS[table].open_until_time:
        return Window(window.start, OPEN_END)
    return window
