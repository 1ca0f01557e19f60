"""Issue intake: the departments' issue lists, from a file, the command line or a form.

A department fills in the template ``meeting issues template --dept D`` writes (XLSX
or CSV) and the analyst imports it with ``meeting issues import FILE --dept D --week
W``. The columns (English or Chinese headers):

=============  ==========================================================================
title          short title of the problem (required)
description    what happened, since when, examples
severity       low | medium | high | critical (also 1-4, 低 | 中 | 高 | 紧急); required
segment        the orders it concerns, ``key=value`` pairs separated by ``;``, e.g.
               ``carrier=EastPost; region=South``; keys: carrier, region, warehouse,
               channel, order_type, exception_code
first_seen     the day it was first noticed (YYYY-MM-DD), not after the week's end
submitter      who reports it
=============  ==========================================================================

A CSV file may be UTF-8 (with or without BOM) or GBK/GB18030, as Excel saves it in
China; the encoding is detected unless given. Every row is checked before anything
is written: the problems are reported with the row number a person sees in the file
(header = row 1), and the import is refused whole. Imports are idempotent: each row
is identified by a hash of its normalised content, department and week, so
importing the same file again (or the same rows saved as XLSX instead of CSV) adds
nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from meetinglib.core.errors import (
    InputDataError,
    ParamsError,
    SourceNotFoundError,
    UnreadableSourceError,
)
from meetinglib.core.i18n import LABELS, t
from meetinglib.core.schema import EXCEPTION_CODES, ORDER_TYPES
from meetinglib.core.weeks import IsoWeek
from meetinglib.meeting.store import ISSUE_STATUSES, SEVERITIES, Store

TEMPLATE_COLUMNS = ("title", "description", "severity", "segment", "first_seen", "submitter")
REQUIRED_COLUMNS = ("title", "severity")
MAX_LENGTH = {"title": 200, "description": 4000, "submitter": 100, "segment": 300}
SEGMENT_KEYS = ("carrier", "region", "warehouse", "channel", "order_type", "exception_code")
FILE_SUFFIXES = (".csv", ".xlsx")
MAX_TEMPLATE_ROWS = 500  # rows of the XLSX template with the severity drop-down
MAX_LISTED_PROBLEMS = 20

# Header texts accepted for each column, normalised (see _header_key).
_HEADER_ALIASES: dict[str, str] = {
    **{c: c for c in TEMPLATE_COLUMNS},
    "issue": "title",
    "标题": "title",
    "问题": "title",
    "问题标题": "title",
    "描述": "description",
    "问题描述": "description",
    "说明": "description",
    "details": "description",
    "严重程度": "severity",
    "严重性": "severity",
    "级别": "severity",
    "priority": "severity",
    "涉及范围": "segment",
    "范围": "segment",
    "细分": "segment",
    "scope": "segment",
    "首次发现": "first_seen",
    "首次发现日期": "first_seen",
    "发现日期": "first_seen",
    "first_seen_on": "first_seen",
    "提交人": "submitter",
    "提出人": "submitter",
    "reported_by": "submitter",
}
_SEVERITY_ALIASES: dict[str, str] = {
    **{s: s for s in SEVERITIES},
    **{str(i + 1): s for i, s in enumerate(SEVERITIES)},
    "med": "medium",
    "低": "low",
    "中": "medium",
    "一般": "medium",
    "高": "high",
    "严重": "high",
    "紧急": "critical",
    "危急": "critical",
}
_SEGMENT_KEY_ALIASES: dict[str, str] = {
    **{k: k for k in SEGMENT_KEYS},
    "exception": "exception_code",
    "承运商": "carrier",
    "快递": "carrier",
    "地区": "region",
    "区域": "region",
    "仓库": "warehouse",
    "渠道": "channel",
    "订单类型": "order_type",
    "异常": "exception_code",
    "异常类型": "exception_code",
}
_SEGMENT_VALUES: dict[str, tuple[str, ...]] = {
    "order_type": ORDER_TYPES,
    "exception_code": EXCEPTION_CODES,
}
_PAIR = re.compile(r"^([^=:]+?)\s*[=:]\s*(\S.*)$")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日", "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class RowProblem:
    """One problem of one row: the row number a person sees, the column, what is wrong."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.message}"


@dataclass(frozen=True)
class IssueFile:
    """An issue file read as text: canonical columns plus "_row" (the file's row number)."""

    path: Path
    frame: pd.DataFrame
    encoding: str | None  # None for XLSX
    ignored_columns: tuple[str, ...]


@dataclass(frozen=True)
class ImportResult:
    """What an import or an added issue did."""

    source: str
    department: str
    week: IsoWeek
    encoding: str | None
    rows: int  # rows with content in the file
    added: tuple[int, ...]  # ids of the issues stored
    skipped: int  # rows already in the store (or repeated in the file)
    ignored_columns: tuple[str, ...] = ()
    # issues stored already that a corrected row changed (same department, week, title
    # and source; Store.add_issues)
    updated: tuple[int, ...] = ()


# --- values -----------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A cell as text: None/NaN empty, whole floats without ".0", stripped."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _norm(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: two spellings of the same text compare equal."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _header_key(text: str) -> str:
    key = _norm(text).strip("*: ").replace(" ", "_").replace("-", "_")
    return _HEADER_ALIASES.get(key, key)


def parse_severity(text: str) -> str:
    """The severity code (low, medium, high, critical) of a cell; ValueError if not one."""
    code = _SEVERITY_ALIASES.get(_norm(text))
    if code is None:
        raise ValueError(
            f"{text!r} is not a severity; use low, medium, high or critical "
            "(or 1-4, 低, 中, 高, 紧急)"
        )
    return code


def _exception_code(value: str) -> str | None:
    """An exception code from its code or its label in either language."""
    wanted = _norm(value)
    for code in EXCEPTION_CODES:
        texts = LABELS.get(f"exception.{code}", ())
        if wanted == code or wanted in {_norm(x) for x in texts}:
            return code
    return None


def parse_segment(text: str) -> dict[str, str]:
    """``carrier=EastPost; region=South`` -> {"carrier": "EastPost", "region": "South"}.

    Pairs are separated by ``;`` ``,`` or their full-width forms; ``=`` or ``:`` joins key
    and value. Keys may be given in Chinese (承运商, 地区, 仓库 ...). Empty text: {}.
    ValueError names what is wrong.
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    segment: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[;,、\n]", text))):
        pair = _PAIR.match(part)
        if pair is None:
            raise ValueError(
                f"{part!r} is not key=value; write e.g. carrier=EastPost; region=South"
            )
        key, value = pair.groups()
        canonical = _SEGMENT_KEY_ALIASES.get(_norm(key).replace(" ", "_"))
        if canonical is None:
            raise ValueError(f"unknown segment key {key!r}; use one of {', '.join(SEGMENT_KEYS)}")
        if canonical in segment:
            raise ValueError(f"segment key {canonical!r} given twice")
        if canonical == "exception_code":
            code = _exception_code(value)
            if code is None:
                raise ValueError(
                    f"unknown exception_code {value!r}; use one of {', '.join(EXCEPTION_CODES)}"
                )
            value = code
        elif canonical in _SEGMENT_VALUES and value not in _SEGMENT_VALUES[canonical]:
            raise ValueError(
                f"unknown {canonical} {value!r}; use one of {', '.join(_SEGMENT_VALUES[canonical])}"
            )
        segment[canonical] = value
    return {k: segment[k] for k in SEGMENT_KEYS if k in segment}


def format_segment(segment: dict[str, str]) -> str:
    """The stored form of a segment: ``key=value`` joined by ``;`` in SEGMENT_KEYS order."""
    return ";".join(f"{k}={segment[k]}" for k in SEGMENT_KEYS if k in segment)


def _parse_date(text: str) -> dt.date:
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-18")


def check_department(department: str, departments: Sequence[str]) -> str:
    """The department code if params know it; ParamsError listing the known ones otherwise."""
    code = _norm(department).replace(" ", "_").replace("-", "_")
    if code not in departments:
        raise ParamsError(
            f"department {department!r} is not in meeting.departments {list(departments)}; "
            "use one of those, or add it to the params."
        )
    return code


# --- reading files ------------------------------------------------------------------------------


def _decode(raw: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise UnreadableSourceError(
                f"{path} cannot be read as {encoding}: {exc}. Give the file's real encoding "
                "with --encoding (utf-8, gbk, gb18030), or leave it out to detect it."
            ) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    for candidate in ("utf-8", "gbk", "gb18030"):
        try:
            return raw.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    raise UnreadableSourceError(
        f"{path} is neither UTF-8 nor GBK/GB18030 text; save it from Excel as "
        "'CSV UTF-8' or as .xlsx, or give its encoding with --encoding."
    )


def _csv_records(text: str) -> list[tuple[int, list[str]]]:
    """(line number where the record starts, cells) of each non-blank record."""
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = []
    line = 1
    for cells in reader:
        if any(c.strip() for c in cells):
            records.append((line, cells))
        line = reader.line_num + 1
    return records


def _xlsx_records(path: Path) -> list[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for a damaged file
        raise UnreadableSourceError(
            f"{path} is not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
            "save it again from Excel as .xlsx."
        ) from None
    try:
        sheet = book.worksheets[0]
        return [
            (number, [_text(v) for v in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
            if any(_text(v) for v in values)
        ]
    finally:
        book.close()


def _cell(cells: list[str], position: int | None) -> str:
    return cells[position].strip() if position is not None and position < len(cells) else ""


def read_issue_file(path: str | Path, encoding: str | None = None) -> IssueFile:
    """Read a CSV or XLSX issue file into text columns named as the template's, plus "_row"."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"issue file {path} does not exist; check the path.")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise UnreadableSourceError(
            f"{path} is neither .csv nor .xlsx; save the issue list in one of those formats "
            "(start from `meeting issues template`)."
        )
    used: str | None = None
    if suffix == ".csv":
        text, used = _decode(path.read_bytes(), path, encoding)
        records = _csv_records(text)
    else:
        records = _xlsx_records(path)
    if not records:
        raise InputDataError(
            f"{path} is empty; it needs a header row ({', '.join(TEMPLATE_COLUMNS)}) and one "
            "row per issue."
        )
    header_row, header = records[0]
    keys = [_header_key(h) for h in header]
    found = [h for h in header if h.strip()]
    missing = [c for c in REQUIRED_COLUMNS if c not in keys]
    if missing:
        raise InputDataError(
            f"{path}: column(s) {missing} missing in the header (row {header_row}); columns "
            f"found: {found}. Start from the template: meeting issues template --dept <dept>."
        )
    repeated = sorted({k for k in keys if k in TEMPLATE_COLUMNS and keys.count(k) > 1})
    if repeated:
        raise InputDataError(
            f"{path}: column(s) {repeated} appear twice in the header (row {header_row}); "
            "keep one of each."
        )
    positions = {k: i for i, k in enumerate(keys) if k in TEMPLATE_COLUMNS}
    ignored = tuple(
        h for h, k in zip(header, keys, strict=True) if h.strip() and k not in positions
    )
    body = records[1:]
    columns: dict[str, Any] = {
        c: [_cell(cells, positions.get(c)) for _, cells in body] for c in TEMPLATE_COLUMNS
    }
    columns["_row"] = [number for number, _ in body]
    frame = pd.DataFrame(columns).astype({c: "str" for c in TEMPLATE_COLUMNS})
    frame["_row"] = frame["_row"].astype("int64")
    return IssueFile(path, frame, used, ignored)


# --- checking ---------------------------------------------------------------------------------


def check_issues(frame: pd.DataFrame, week: IsoWeek) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Validate issue rows; returns them normalised, and every problem found (row by row).

    Normalised: severity as its code, segment in its stored form, first_seen a date or
    None. ``frame`` has the template's columns as text and "_row"; it is not modified.
    """
    out = frame.copy()
    problems: list[RowProblem] = []
    for column, limit in MAX_LENGTH.items():
        long = out[column].str.len() > limit
        problems += [
            RowProblem(int(r), column, f"{n} characters, more than {limit}; shorten it")
            for r, n in zip(out.loc[long, "_row"], out.loc[long, column].str.len(), strict=True)
        ]
    for column in REQUIRED_COLUMNS:
        empty = out[column].str.strip() == ""
        problems += [
            RowProblem(int(r), column, "empty; every issue needs one") for r in out["_row"][empty]
        ]
    last_day = week.monday + dt.timedelta(days=6)
    severities, segments, dates = [], [], []
    for row, severity, segment, first_seen in zip(
        out["_row"], out["severity"], out["segment"], out["first_seen"], strict=True
    ):
        # Issue lists are short (tens of rows): row by row gives each its own message.
        severities.append(_checked(row, "severity", severity, parse_severity, problems))
        parsed = _checked(row, "segment", segment, parse_segment, problems)
        segments.append(format_segment(parsed) if parsed else "")
        day = _checked(row, "first_seen", first_seen, _parse_date, problems)
        if isinstance(day, dt.date) and day > last_day:
            problems.append(
                RowProblem(
                    int(row),
                    "first_seen",
                    f"{day} is after the end of week {week} ({last_day}); check the date",
                )
            )
        dates.append(day if isinstance(day, dt.date) else None)
    out["severity"] = pd.Series(severities, index=out.index, dtype=object)
    out["segment"] = pd.Series(segments, index=out.index, dtype="str")
    out["first_seen"] = pd.Series(dates, index=out.index, dtype=object)
    problems.sort(key=lambda p: (p.row, TEMPLATE_COLUMNS.index(p.column)))
    return out, problems


def _checked(row: int, column: str, text: str, parse: Any, problems: list[RowProblem]) -> Any:
    if not text.strip():
        return None
    try:
        return parse(text)
    except ValueError as exc:
        problems.append(RowProblem(int(row), column, str(exc)))
        return None


def problems_message(source: str, problems: Sequence[RowProblem], rows: int) -> str:
    """The error text of a refused import: counts, then the first problems one per line."""
    bad_rows = len({p.row for p in problems})
    lines = [
        f"{source}: {len(problems)} problem(s) in {bad_rows} of {rows} row(s); nothing was "
        "imported. Fix them in the file and import it again:"
    ]
    lines += [f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


def row_hash(department: str, week: IsoWeek, row: dict[str, Any]) -> str:
    """SHA-256 of the department, week and normalised content: the natural key of an issue."""
    first_seen = row.get("first_seen")
    key = [
        department,
        str(week),
        _norm(row["title"]),
        _norm(row.get("description") or ""),
        row["severity"],
        row.get("segment") or "",
        first_seen.isoformat() if first_seen else "",
        _norm(row.get("submitter") or ""),
    ]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode("utf-8")).hexdigest()


def _store_rows(
    clean: pd.DataFrame, department: str, week: IsoWeek, source: str
) -> list[dict[str, Any]]:
    rows = []
    for record in clean.to_dict("records"):
        rows.append(
            {
                "department": department,
                "week": str(week),
                "title": record["title"].strip(),
                "description": record["description"].strip(),
                "severity": record["severity"],
                "segment": record["segment"],
                "first_seen": record["first_seen"],
                "submitter": record["submitter"].strip(),
                "source": source,
                "source_row": int(record["_row"]),
                "row_hash": row_hash(department, week, record),
            }
        )
    return rows


def _save(
    store: Store,
    clean: pd.DataFrame,
    department: str,
    week: IsoWeek,
    source: str,
    encoding: str | None = None,
    ignored: tuple[str, ...] = (),
) -> ImportResult:
    rows = _store_rows(clean, department, week, source)
    result = store.add_issues(rows)
    return ImportResult(
        source=source,
        department=department,
        week=week,
        encoding=encoding,
        rows=len(rows),
        added=result.added,
        skipped=len(result.skipped),
        ignored_columns=ignored,
        updated=result.updated,
    )


def import_issues(
    store: Store,
    path: str | Path,
    department: str,
    week: IsoWeek | str,
    *,
    departments: Sequence[str],
    encoding: str | None = None,
) -> ImportResult:
    """Check every row of an issue file, then store the new ones in one transaction.

    Any problem: InputDataError listing them by row, nothing written. Rows stored
    already (same department, week and content) are skipped; a row whose content
    changed since the same file was imported (same department, week and title) updates
    its issue instead of adding a second one.
    """
    department = check_department(department, departments)
    week = IsoWeek.parse(week)
    issue_file = read_issue_file(path, encoding)
    clean, problems = check_issues(issue_file.frame, week)
    if problems:
        raise InputDataError(problems_message(str(issue_file.path), problems, len(clean)))
    return _save(
        store,
        clean,
        department,
        week,
        issue_file.path.name,
        issue_file.encoding,
        issue_file.ignored_columns,
    )


def _single(fields: dict[str, Any]) -> pd.DataFrame:
    values = {c: [_text(fields.get(c))] for c in TEMPLATE_COLUMNS}
    frame = pd.DataFrame(values).astype({c: "str" for c in TEMPLATE_COLUMNS})
    frame["_row"] = 1
    return frame


def add_issue(
    store: Store,
    department: str,
    week: IsoWeek | str,
    *,
    departments: Sequence[str],
    title: str,
    severity: str,
    description: str = "",
    segment: str = "",
    first_seen: str | dt.date | None = None,
    submitter: str = "",
    source: str = "cli",
) -> ImportResult:
    """Check and store one issue (from the command line or the form); same rules as a file."""
    department = check_department(department, departments)
    week = IsoWeek.parse(week)
    fields = {
        "title": title,
        "description": description,
        "severity": severity,
        "segment": segment,
        "first_seen": first_seen,
        "submitter": submitter,
    }
    clean, problems = check_issues(_single(fields), week)
    if problems:
        lines = "; ".join(f"{p.column}: {p.message}" for p in problems)
        # On the command line the values are options: exit code 2, as for any bad option.
        error = ParamsError if source == "cli" else InputDataError
        raise error(f"issue not added ({source}): {lines}.")
    return _save(store, clean, department, week, source)


# --- closing and reopening ---------------------------------------------------------------------


@dataclass(frozen=True)
class IssueChange:
    """What closing or reopening did to one issue."""

    id: int
    department: str
    week: str  # the week it was raised for
    title: str
    before: str  # status before
    after: str  # status now
    resolved_week: str | None  # the report week it was settled in (None while open)

    @property
    def changed(self) -> bool:
        return self.before != self.after


def close_issues(
    store: Store,
    issue_ids: Sequence[int],
    status: str = "resolved",
    *,
    week: IsoWeek | str | None = None,
    note: str = "",
) -> list[IssueChange]:
    """Settle issues as resolved (or dropped), so that later weeks' agendas leave them out.

    An open issue comes back on every agenda after its week until it is closed. ``week``:
    the report week whose meeting settled them (default: the latest meeting in the store,
    never before the week the issue was raised for). ``note`` is added to the issue's
    description, marked with the status and week. Unknown ids: InputDataError naming them,
    nothing changed. An issue already in ``status`` is left as it is.
    """
    if status not in ISSUE_STATUSES or status == "open":
        raise ParamsError(f"an issue closes as resolved or dropped, not {status!r}.")
    return _set_issue_status(store, issue_ids, status, week, note)


def reopen_issues(store: Store, issue_ids: Sequence[int], *, note: str = "") -> list[IssueChange]:
    """Open settled issues again: they come back on the agenda of the weeks after theirs."""
    return _set_issue_status(store, issue_ids, "open", None, note)


def _set_issue_status(
    store: Store,
    issue_ids: Sequence[int],
    status: str,
    week: IsoWeek | str | None,
    note: str,
) -> list[IssueChange]:
    ids = list(dict.fromkeys(int(i) for i in issue_ids))
    if not ids:
        raise ParamsError("no issue id given; list the issues with `meeting issues list`.")
    note = (note or "").strip()
    limit = MAX_LENGTH["description"]
    if len(note) > limit:
        raise ParamsError(f"the note has {len(note)} characters, more than {limit}; shorten it.")
    asked = str(IsoWeek.parse(week)) if week is not None else None
    rows = store.change_issue_status(ids, status, asked, note)
    return [
        IssueChange(
            id=int(row["id"]),
            department=row["department"],
            week=row["week"],
            title=row["title"],
            before=row["status"],
            after=status,
            resolved_week=(
                row["resolved_week_after"] if row["status"] != status else row["resolved_week"]
            ),
        )
        for row in rows
    ]


# --- the template -------------------------------------------------------------------------------


def template_headers(lang: str = "en") -> list[str]:
    """The template's header texts: the column names, or their Chinese names."""
    return [t(f"intake.column.{c}", lang) if lang != "en" else c for c in TEMPLATE_COLUMNS]


def template_severities(lang: str = "en") -> list[str]:
    """The severity choices of the XLSX template in ``lang``: the codes in English, the
    catalogue's words otherwise (parse_severity accepts each; tests/test_intake.py)."""
    return [t(f"severity.{s}", lang) if lang != "en" else s for s in SEVERITIES]


def write_template(path: str | Path, department: str, lang: str = "en") -> Path:
    """Write an empty issue list for ``department``: .xlsx (with a help sheet) or .csv."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ParamsError(f"template {path} must end in .xlsx or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    headers = template_headers(lang)
    if suffix == ".csv":
        # With a BOM, Excel opens the file as UTF-8 instead of the local code page.
        with open(path, "w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh).writerow(headers)
        return path
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    # Sheet names and severity choices in the template's language; the import reads the
    # first sheet whatever its name, and each choice is a severity it accepts.
    sheet.title = t("intake.sheet.issues", lang)
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = {"title": 40, "description": 60, "severity": 12, "segment": 36}
    for i, column in enumerate(TEMPLATE_COLUMNS):
        sheet.column_dimensions[chr(ord("A") + i)].width = widths.get(column, 16)
    words = template_severities(lang)
    choices = DataValidation(type="list", formula1=f'"{",".join(words)}"', allow_blank=True)
    sheet.add_data_validation(choices)
    choices.add(f"C2:C{MAX_TEMPLATE_ROWS}")
    sheet.freeze_panes = "A2"
    help_sheet = book.create_sheet(t("intake.sheet.help", lang))
    help_sheet.append([t("intake.help.column", lang), t("intake.help.meaning", lang)])
    for column, header in zip(TEMPLATE_COLUMNS, headers, strict=True):
        help_sheet.append([header, t(f"intake.help.{column}", lang)])
    help_sheet.append([])
    help_sheet.append([t("intake.help.department", lang, department=department)])
    help_sheet.column_dimensions["A"].width = 16
    help_sheet.column_dimensions["B"].width = 100
    book.save(path)
    return path


# --- the form -------------------------------------------------------------------------------------


class IssueForm:
    """An ipywidgets form that adds one issue to the store, with the same checks as a file.

    ``form.widget`` is what a notebook displays; ``submit()`` (the button) validates the
    fields, stores the issue and reports in ``form.message`` (text escaped).
    """

    def __init__(
        self,
        store: Store,
        week: IsoWeek | str,
        departments: Sequence[str],
        lang: str = "en",
        department: str | None = None,
    ):
        import ipywidgets as w

        self.store = store
        self.week = IsoWeek.parse(week)
        self.departments = list(departments)
        self.lang = lang
        self.results: list[ImportResult] = []
        layout = w.Layout(width="36em")
        style = {"description_width": "9em"}

        def label(key: str) -> str:
            return t(f"intake.column.{key}", lang)

        self.department = w.Dropdown(
            options=[(_department_label(d, lang), d) for d in self.departments],
            value=department or self.departments[0],
            description=t("intake.form.department", lang),
            layout=layout,
            style=style,
        )
        self.title = w.Text(description=label("title"), layout=layout, style=style)
        self.description = w.Textarea(description=label("description"), layout=layout, style=style)
        self.severity = w.Dropdown(
            options=[(t(f"severity.{s}", lang), s) for s in SEVERITIES],
            value="medium",
            description=label("severity"),
            layout=layout,
            style=style,
        )
        self.segment = w.Text(
            description=label("segment"),
            placeholder="carrier=EastPost; region=South",
            layout=layout,
            style=style,
        )
        self.first_seen = w.DatePicker(description=label("first_seen"), style=style)
        self.submitter = w.Text(description=label("submitter"), layout=layout, style=style)
        self.button = w.Button(description=t("intake.form.submit", lang), button_style="primary")
        self.message = w.HTML()
        self.button.on_click(lambda _button: self.submit())
        self.widget = w.VBox(
            [
                w.HTML(f"<b>{html.escape(t('intake.form.heading', lang, week=self.week))}</b>"),
                self.department,
                self.title,
                self.description,
                self.severity,
                self.segment,
                self.first_seen,
                self.submitter,
                self.button,
                self.message,
            ]
        )

    def submit(self) -> ImportResult | None:
        """Store the issue the fields describe; None (and a message) when a field is wrong."""
        try:
            result = add_issue(
                self.store,
                self.department.value,
                self.week,
                departments=self.departments,
                title=self.title.value,
                severity=self.severity.value,
                description=self.description.value,
                segment=self.segment.value,
                first_seen=self.first_seen.value,
                submitter=self.submitter.value,
                source="form",
            )
        except InputDataError as exc:
            text = str(exc)
            self.message.value = f'<span class="ml-status-off">{html.escape(text)}</span>'
            return None
        if result.added:
            text = t("intake.form.added", self.lang, id=result.added[0])
            self.title.value = self.description.value = self.segment.value = ""
        elif result.updated:
            text = t("intake.form.updated", self.lang, id=result.updated[0])
            self.title.value = self.description.value = self.segment.value = ""
        else:
            text = t("intake.form.duplicate", self.lang)
        self.message.value = f"<span>{html.escape(text)}</span>"
        self.results.append(result)
        return result


def _department_label(code: str, lang: str) -> str:
    key = f"dept.{code}"
    return t(key, lang) if key in LABELS else code


def department_label(code: str, lang: str = "en") -> str:
    """The department's name in ``lang`` (its code for departments without a label)."""
    return _department_label(code, lang)
