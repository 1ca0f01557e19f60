"""Typed, validated parameters loaded from YAML files.

Every load starts from the package's defaults (``meetinglib/defaults/params.yaml``,
nothing of any company in it); the files given are layered on them (a company's
file, then per-week files); later files override earlier ones key by key. Relative
paths are resolved against the folder of the file that sets them, so a run gives the
same result from any working directory. An unknown or missing key is an error naming file and key.
Secrets never live here: a database URL with a password must come from the
environment variable named by ``source.url_env``.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import zoneinfo
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from meetinglib.core.errors import (
    InvalidParamError,
    MissingParamError,
    ParamsError,
    ParamsFileError,
    UnknownParamError,
)
from meetinglib.core.i18n import t
from meetinglib.core.safename import SAFE_NAME
from meetinglib.core.schema import SCHEMAS
from meetinglib.core.secrets import url_secrets
from meetinglib.core.yamlsafe import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusMapping(_Strict):
    """A status column whose values mean cancelled or delivered.

    Sets ``cancelled_at`` (``delivered_at``) where the canonical column is empty and the
    status is one of ``cancelled`` (``delivered``): the time is taken from the source
    column named by ``cancelled_time`` (``delivered_time``) when it has a value, else
    from the documented fallback: cancelled -> created_at; delivered -> shipped_at, else
    created_at.
    """

    column: str = Field(min_length=1)
    cancelled: list[str] = Field(default_factory=list)
    delivered: list[str] = Field(default_factory=list)
    cancelled_time: str | None = None
    delivered_time: str | None = None


class AmountSource(_Strict):
    """The order amount from another file, aggregated per order (e.g. payments summed)."""

    file: str = Field(min_length=1)
    order_id: str = "order_id"  # the order-number column of that file
    value: str = Field(min_length=1)  # the amount column of that file
    aggregate: Literal["sum", "max", "first"] = "sum"
    encoding: str = "utf-8"
    delimiter: str = ","
    header_row: int | None = None  # as in TableSource

    @field_validator("header_row", mode="before")
    @classmethod
    def _header_row(cls, v: object) -> object:
        return _check_header_row(v)


class TableSource(_Strict):
    """Where one canonical table comes from and how its columns map onto ours."""

    file: str | None = None
    table: str | None = None
    sheet: str | int | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    # The row (a CSV's line) holding the column names, counted from 1 as a spreadsheet or
    # an editor shows them: exports often carry a title above the header. None: the first
    # line of a CSV, the first row that is not empty of an XLSX.
    header_row: int | None = None
    timezone: str | None = None
    timestamp_format: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Canonical columns the source lacks, with one value for every row (order_type: normal).
    constants: dict[str, str] = Field(default_factory=dict)
    status: StatusMapping | None = None
    amount_from: AmountSource | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return _check_tz(v) if v is not None else v

    @field_validator("header_row", mode="before")
    @classmethod
    def _header_row(cls, v: object) -> object:
        return _check_header_row(v)


class SourceParams(_Strict):
    kind: Literal["folder", "sql"] = "folder"
    path: Path | None = None
    url: str | None = None
    url_env: str | None = None
    tables: dict[str, TableSource] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _no_password(cls, v: str | None) -> str | None:
        return _url_without_password(v, "source.url_env")

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, v: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = sorted(set(v) - set(SCHEMAS))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; known tables: {sorted(SCHEMAS)}")
        return v

    def database_url(self) -> str:
        if self.url_env:
            url = os.environ.get(self.url_env)
            if not url:
                raise ParamsError(
                    f"environment variable {self.url_env} (named by source.url_env) is not set; "
                    "export it with the database URL."
                )
            return url
        if self.url:
            return self.url
        raise ParamsError("source.kind is 'sql' but neither source.url nor source.url_env is set.")


class SlaParams(_Strict):
    ship_hours: float = Field(48.0, gt=0)
    # Delivery promise where promised_delivery_by is empty: days after delivery_from,
    # per carrier, else per region, else delivery_days; None: no promise from an SLA.
    delivery_days: float | None = Field(None, gt=0)
    delivery_from: Literal["shipped", "paid"] = "shipped"
    delivery_days_by_carrier: dict[str, float] = Field(default_factory=dict)
    delivery_days_by_region: dict[str, float] = Field(default_factory=dict)

    @property
    def has_delivery_promise(self) -> bool:
        """Whether the params promise a delivery time (for orders without one)."""
        return bool(
            self.delivery_days or self.delivery_days_by_carrier or self.delivery_days_by_region
        )


class QualityParams(_Strict):
    max_quarantine_share: float = Field(0.02, ge=0, le=1)
    earliest_date: dt.date = dt.date(2000, 1, 1)  # earlier timestamps are implausible
    max_days_ahead: int = Field(2, ge=0)  # timestamps this many days past today are implausible
    # Latest complete week: its orders reach this share of the median of the weeks before.
    complete_week_share: float = Field(0.5, gt=0, le=1)
    complete_week_history: int = Field(8, ge=1, le=52)


def _per_weekday(v: float | list[float]) -> float | list[float]:
    """One number for every day, or seven numbers Monday to Sunday; none negative."""
    values = v if isinstance(v, list) else [v]
    if isinstance(v, list) and len(v) != 7:
        raise ValueError(f"give one number or seven (Monday to Sunday), not {len(v)}")
    if any(x < 0 for x in values):
        raise ValueError("must not be negative")
    return v


class WarehousePlanParams(_Strict):
    """Pick-and-pack productivity and staff of one warehouse."""

    orders_per_person_hour: float = Field(gt=0)  # orders picked and packed per person-hour
    hours_per_shift: float = Field(8.0, gt=0, le=24)  # productive hours per person and day
    staff: float | list[float]  # people on shift per day: one number or seven (Mon..Sun)

    _check_staff = field_validator("staff")(_per_weekday)


class CustomerServicePlanParams(_Strict):
    """Ticket-handling productivity and agents of customer service."""

    tickets_per_agent_day: float = Field(gt=0)
    agents: float | list[float]  # agents on duty per day: one number or seven (Mon..Sun)

    _check_agents = field_validator("agents")(_per_weekday)


class CarrierPlanParams(_Strict):
    """Daily pick-up capacity of one carrier, in parcels."""

    daily_capacity: float | list[float]  # one number or seven (Mon..Sun); 0 = not available

    _check_capacity = field_validator("daily_capacity")(_per_weekday)


class PlanParams(_Strict):
    """Next week's plan: forecast settings, promotions calendar and resources."""

    profile_weeks: int = Field(8, ge=1, le=52)  # weeks behind the weekday profile
    level_weeks: int = Field(6, ge=1, le=52)  # weeks behind the weekly level
    trend_weight: float = Field(0.5, ge=0, le=1)  # 0 = flat level, 1 = full trend
    interval: float = Field(0.8, gt=0, lt=1)  # nominal coverage of the prediction interval
    backtest_weeks: int = Field(8, ge=1, le=52)
    share_weeks: int = Field(4, ge=1, le=52)  # weeks behind shares, ratios and on-time rates
    min_on_time_delivery: float = Field(0.9, ge=0, le=1)  # carrier flagged below this rate
    # A history day off both its week and its weekday's trend by this many robust SDs
    # (and by min_change) is unusual and left out of the baseline; None: no detection.
    outlier_z: float | None = Field(3.5, gt=0)
    outlier_min_change: float = Field(0.25, ge=0)  # e.g. 0.25: +25 % or -20 % of usual
    promotions: dict[dt.date, float] = Field(default_factory=dict)  # day -> lift factor
    warehouses: dict[str, WarehousePlanParams] = Field(default_factory=dict)
    carriers: dict[str, CarrierPlanParams] = Field(default_factory=dict)
    customer_service: CustomerServicePlanParams | None = None

    @field_validator("promotions")
    @classmethod
    def _positive_lifts(cls, v: dict[dt.date, float]) -> dict[dt.date, float]:
        bad = sorted(str(d) for d, lift in v.items() if not lift > 0)
        if bad:
            raise ValueError(f"lift factors must be positive (1 = no lift); check {bad}")
        return v


class StoreParams(_Strict):
    """Where the meeting store lives: a SQLite file by default, or any SQLAlchemy URL."""

    path: Path | None = None  # SQLite file; None: ../data/meeting.db next to the params file
    url: str | None = None  # a SQLAlchemy URL without password, e.g. postgresql://host/meetings
    url_env: str | None = None  # environment variable holding the URL (with its password)
    # Seconds a write waits for other writers (lock retries with backoff) before it
    # gives up with exit code 5 (environment).
    busy_timeout: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _no_password(cls, v: str | None) -> str | None:
        return _url_without_password(v, "store.url_env")


class EngineParams(_Strict):
    """The query engine under the KPIs: embedded DuckDB by default, Spark (a local session
    or a cluster's master), or the source database itself (``source``: the aggregations
    run where the rows are), all running the same definitions."""

    kind: Literal["duckdb", "spark", "source"] = "duckdb"
    # DuckDB: memory it may use before spilling to disk (e.g. "3GB"); None: 1 GiB per
    # thread, at most half the machine (engine.default_memory_limit), more for a large
    # week (engine.data_memory_limit).
    memory_limit: str | None = None
    threads: int | None = Field(None, ge=1)
    # Spark: the master URL and extra session settings (spark.executor.memory...).
    spark_master: str = "local[2]"
    spark_conf: dict[str, str] = Field(default_factory=dict)

    # kind "source": the sql source whose database runs the expressions (set by Params).
    _database: SourceParams | None = PrivateAttr(default=None)

    def database_url(self) -> str | None:
        """The URL of the database the expressions run in (kind ``source``), else None."""
        return self._database.database_url() if self._database is not None else None


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class PersonParams(_Strict):
    """Someone the notice goes to: the organizer or an attendee."""

    name: str = Field(min_length=1)
    email: str
    department: str | None = None
    optional: bool = False  # invited as optional participant

    @field_validator("name")
    @classmethod
    def _name_one_line(cls, v: str) -> str:
        return _one_line(v) or v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        local, _, domain = v.strip().partition("@")
        if not local or "." not in domain or any(c.isspace() for c in v.strip()):
            raise ValueError(f"{v!r} is not an e-mail address like name@example.com")
        return v.strip()


class MeetingParams(_Strict):
    """The review meeting: who, when, where. Times are in the platform timezone."""

    # One title, or one per language: {en: Weekly review, zh-CN: 每周订单处理例会}; none:
    # the catalogue's in each language (meeting.title).
    title: str | dict[str, str] | None = None
    organizer: PersonParams | None = None
    attendees: list[PersonParams] = Field(default_factory=list)
    # Departments in agenda order; issue files and attendees name one of these.
    departments: list[str] = Field(
        default_factory=lambda: ["operations", "customer_service", "logistics", "finance", "it"]
    )
    week_offset: int = Field(1, ge=0, le=4)  # the meeting about week W is held in W + this
    weekday: str = "monday"
    time: dt.time = dt.time(14, 0)
    duration_minutes: int = Field(90, gt=0, le=480)
    place: str | None = None
    online_link: str | None = None

    @field_validator("title", "place")
    @classmethod
    def _header_texts(cls, v: str | dict[str, str] | None) -> str | dict[str, str] | None:
        # The title goes into mail subjects, the place into the invite: one line each.
        for text in v.values() if isinstance(v, dict) else [v]:
            _one_line(text)
        return v

    @field_validator("online_link")
    @classmethod
    def _link(cls, v: str | None) -> str | None:
        if v is not None and (
            not v.lower().startswith(("https://", "http://")) or any(c.isspace() for c in v)
        ):
            raise ValueError(
                f"{v!r} is not a web address; write it as https://... (the handouts and "
                "the invite link to it, so only http and https are accepted)"
            )
        return v

    def title_in(self, lang: str) -> str:
        """The meeting's title in ``lang``: its own entry, else English, else the first;
        without a title in params, the catalogue's in ``lang``."""
        if self.title is None:
            return t("meeting.title", lang)
        if isinstance(self.title, str):
            return self.title
        return self.title.get(lang) or self.title.get("en") or next(iter(self.title.values()))

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, v: str) -> str:
        day = v.strip().lower()
        match = [d for d in WEEKDAYS if day and d.startswith(day[:3])]
        if len(day) < 3 or not match:
            raise ValueError(f"{v!r} is not a weekday; write e.g. monday")
        return match[0]

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        # YAML 1.1 reads an unquoted 14:00 as the base-60 number 840 (minutes).
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
            return dt.time(v // 60, v % 60)
        return v

    @field_validator("departments")
    @classmethod
    def _departments(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one department")
        bad = [d for d in v if not d or d != d.strip().lower() or not SAFE_NAME.fullmatch(d)]
        if bad or len(set(v)) != len(v):
            raise ValueError(
                "departments must be distinct lower-case codes of letters, digits, '_' or '-' "
                f"(they become file names), got {v}"
            )
        return v

    @model_validator(mode="after")
    def _known_departments(self) -> MeetingParams:
        people = [*self.attendees, *([self.organizer] if self.organizer else [])]
        unknown = sorted({p.department for p in people if p.department} - set(self.departments))
        if unknown:
            raise ValueError(
                f"attendee department(s) {unknown} not in meeting.departments {self.departments}"
            )
        return self


class AgendaParams(_Strict):
    """Time boxes of the agenda, in minutes."""

    opening: int = Field(5, ge=0)
    data_report: int = Field(15, ge=0)
    minutes_per_issue: float = Field(4.0, gt=0)  # a department's time: its issues x this ...
    min_department: int = Field(3, ge=0)  # ... at least this for a department with issues ...
    departments_cap: int = Field(40, ge=0)  # ... all departments together at most this
    solutions: int = Field(15, ge=0)
    next_week_plan: int = Field(10, ge=0)
    summary_feedback: int = Field(5, ge=0)


class SmtpParams(_Strict):
    """The mail server the notice is sent through. The password comes from the environment."""

    host: str
    port: int = Field(587, gt=0, lt=65536)
    user: str | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    sender: str
    starttls: bool = True

    @field_validator("host", "user", "sender")
    @classmethod
    def _header_texts(cls, v: str | None) -> str | None:
        return _one_line(v)

    timeout_seconds: float = Field(30.0, gt=0)

    def password(self) -> str | None:
        """The password from the environment variable named by password_env (None: no login)."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if not value:
            raise ParamsError(
                f"environment variable {self.password_env} (named by smtp.password_env) is "
                "not set; export it with the SMTP password."
            )
        return value


class TargetParams(_Strict):
    """A KPI's target and, optionally, the at-risk threshold on its worse side.

    A value meeting ``target`` is on target; one short of it but not past ``at_risk`` is at
    risk; beyond ``at_risk`` (or short of the target when there is none) it is off target.
    A bare number in the params is the target alone.
    """

    target: float
    at_risk: float | None = None


class RunParams(_Strict):
    """How a run guards itself: the week's lock and the notebooks' cell timeout."""

    lock_wait_seconds: float = Field(600.0, ge=0)  # wait this long for another run's lock
    cell_timeout_seconds: float = Field(1800.0, gt=0)  # a cell running longer fails the run
    # prepare and save the explorer's tables of the week (outputs/<week>/explorer_data),
    # so that the bottleneck explorer starts at once after the run
    explorer_data: bool = True


class FindingsParams(_Strict):
    """Materiality of "Where the time goes" and "What changed" findings."""

    min_orders: int = Field(30, ge=1)  # orders a segment needs this week and in its baseline
    margin: float = Field(0.10, ge=0)  # stage time at least this share above its comparator
    min_hours: float = Field(1.0, ge=0)  # ...and at least this many hours per order above it
    min_z: float = Field(4.0, ge=0)  # added delay at least this many standard errors
    min_share: float = Field(0.01, ge=0, le=1)  # added delay-hours >= share of the stage's hours
    echo_left: float = Field(0.3, ge=0, le=1)  # folded when less than this share is left
    baseline_weeks: int = Field(6, ge=1, le=52)  # previous weeks behind a segment's baseline
    top_new: int = Field(8, ge=1)  # "New this week" entries shown
    top_usual: int = Field(5, ge=0)  # "Usual bottlenecks" entries shown


class Params(_Strict):
    company: str
    timezone: str
    # The language of what has one (the console, the explorer, the minutes mail, issue
    # templates) and of the handouts when `languages` is empty. Set in no params file:
    # the first of `languages` (load_params), else en.
    language: Literal["en", "zh-CN"] = "en"
    # Handouts in several languages from one run; the first one's files keep their names,
    # the others get the language as a suffix (data_report.en.html). Empty: `language`.
    languages: list[Literal["en", "zh-CN"]] = Field(default_factory=list)
    # People's names for codes found in the data, per dimension and language, e.g.
    # channel: {mini_program: {en: Mini program, zh-CN: 小程序}}.
    labels: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    currency: str = "CNY"
    history_weeks: int = Field(12, ge=1, le=104)
    open_order_lookback_days: int = Field(90, ge=0)
    source: SourceParams
    engine: EngineParams = EngineParams()
    sla: SlaParams = SlaParams()
    quality: QualityParams = QualityParams()
    plan: PlanParams = PlanParams()
    targets: dict[str, TargetParams | float] = Field(default_factory=dict)
    store: StoreParams = StoreParams()
    meeting: MeetingParams = MeetingParams()
    agenda: AgendaParams = AgendaParams()
    findings: FindingsParams = FindingsParams()
    smtp: SmtpParams | None = None
    # Report sections allowed to fail without failing the run ("plan").
    optional_sections: list[str] = Field(default_factory=list)
    notebooks: list[str] = Field(default_factory=lambda: ["data_report"])
    # None: the notebooks shipped inside the package (meetinglib/notebooks).
    notebooks_dir: Path | None = None
    output_dir: Path = Path("outputs")
    run: RunParams = RunParams()

    _files: tuple[Path, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _engine_in_source(self) -> Params:
        if self.engine.kind == "source":
            if self.source.kind != "sql":
                raise ValueError(
                    "engine.kind 'source' runs the KPIs inside the source database, so it needs "
                    f"source.kind 'sql' (here '{self.source.kind}'); use engine.kind duckdb for "
                    "files"
                )
            self.engine._database = self.source
        return self

    @field_validator("company")
    @classmethod
    def _company(cls, v: str) -> str:
        return _one_line(v) or v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_tz(v)

    @property
    def files(self) -> tuple[Path, ...]:
        """The params files this was loaded from, in layering order."""
        return self._files

    @property
    def handout_languages(self) -> tuple[str, ...]:
        """The languages of the handouts, primary first (``languages``, else ``language``)."""
        return tuple(dict.fromkeys(self.languages)) or (self.language,)

    def label(self, dimension: str, code: str, lang: str) -> str:
        """A code's name for people from ``labels`` (its language, else English), else the code."""
        names = self.labels.get(dimension, {}).get(str(code), {})
        return names.get(lang) or names.get("en") or str(code)


# Keys holding paths, resolved against the folder of the file that sets them.
_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("source", "path"),
    ("store", "path"),
    ("notebooks_dir",),
    ("output_dir",),
)


def _url_without_password(url: str | None, env_key: str) -> str | None:
    found = url_secrets(url) if url else []
    if found:
        raise ValueError(
            f"the URL holds a password or other credential ({', '.join(found)}); put the "
            f"whole URL in an environment variable and name that variable in '{env_key}' instead"
        )
    return url


def _one_line(text: str | None) -> str | None:
    """The text itself when it has no line break (it goes into mail headers)."""
    if text is not None and ("\r" in text or "\n" in text):
        raise ValueError(
            f"{text!r} holds a line break (CR or LF); this text goes into mail headers, "
            "so write it on one line"
        )
    return text


def _check_header_row(value: object) -> object:
    """A row number as a person counts rows: a whole number from 1 (checked before pydantic
    would turn "3", 3.0 or true into one)."""
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(t("params.header_row", "en", value=repr(value)))
    return value


def _check_tz(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name like Asia/Shanghai"
        ) from None
    return name


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsFileError(f"params file {path} does not exist; pass an existing YAML file.")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsFileError(f"params file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsFileError(f"params file {path} must hold a mapping of keys at the top level.")
    for keys in _PATH_KEYS:
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            p = Path(node[keys[-1]]).expanduser()
            node[keys[-1]] = str(p if p.is_absolute() else (path.parent / p).resolve())
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _has_path(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for k in loc:
        if not isinstance(node, dict) or k not in node:
            return False
        node = node[k]
    return True


# The package's defaults, layered under every params file.
DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "defaults" / "params.yaml"


# The demo's params as shipped; `meeting demo --dir D` copies it to D/params/demo.yaml,
# where its relative paths (../data/sample, ../outputs) point into D.
DEMO_TEMPLATE = Path(__file__).resolve().parent.parent / "defaults" / "demo.yaml"


def demo_params_file() -> Path:
    """The demo's params: params/demo.yaml of the working folder, else of the checkout."""
    here = Path.cwd() / "params" / "demo.yaml"
    checkout = Path(__file__).resolve().parents[2] / "params" / "demo.yaml"
    for candidate in (here, checkout):
        if candidate.is_file():
            return candidate
    raise ParamsError(
        f"no params given and no demo params at {here}; pass --params FILE (see `meeting "
        "init` for a company's export) or create the demo with `meeting demo --dir FOLDER`."
    )


def load_params(*paths: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Params:
    """Load the package defaults, layer the files on them and validate; errors name file and key.

    No file given: the demo's params (``demo_params_file``).
    """
    if not paths:
        paths = (demo_params_file(),)
    # absolute, not resolved: a symlinked params file's relative paths follow the link's
    # folder (params/demo.yaml in the checkout links to the shipped template)
    files = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
    raws = [(f, _read_yaml(f)) for f in files]
    merged: dict[str, Any] = _read_yaml(DEFAULTS_FILE)
    for _, raw in raws:
        merged = _merge(merged, raw)
    if overrides:
        merged = _merge(merged, overrides)
    layers = [raw for _, raw in raws] + [overrides or {}]
    if not any("language" in raw for raw in layers):
        merged["language"] = _first_language(merged.get("languages"), merged.get("language"))
    try:
        params = Params.model_validate(merged)
    except ValidationError as exc:
        raise _translate(exc, raws) from None
    params._files = tuple(files)
    return params


def _first_language(languages: object, default: object) -> object:
    """What ``language`` means when no params file sets it: the first of ``languages`` (the
    handouts' primary language is then that of the console, the explorer, the minutes mail
    and the issue templates too), else the package default. A value that is no language
    is left for ``languages``' own validation to name."""
    known = get_args(Params.model_fields["language"].annotation)
    if isinstance(languages, list) and languages and languages[0] in known:
        return languages[0]
    return default


def _translate(exc: ValidationError, raws: list[tuple[Path, dict[str, Any]]]) -> ParamsError:
    # An unknown key first: a misspelt key is usually why another one is "missing".
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    key = ".".join(str(k) for k in loc)
    owner = next((str(f) for f, raw in reversed(raws) if _has_path(raw, loc)), None)
    names = ", ".join(str(f) for f, _ in raws)
    if err["type"] == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        known = list(parent_model.model_fields) if parent_model else []
        return UnknownParamError(owner or names, key, known)
    if err["type"] == "missing":
        return MissingParamError(names, key)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return InvalidParamError(owner or names, key, msg)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for k in loc:
        field = model.model_fields.get(str(k))
        if field is None:
            # dict-valued fields (e.g. source.tables.<name>) hold models as values
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        nxt = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if nxt is None:
            return None
        model = nxt
    return model
