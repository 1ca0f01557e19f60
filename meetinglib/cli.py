"""The ``meeting`` command line.

Exit codes: 0 success, 2 bad parameters or options, 3 bad input data, 4 a notebook
failed, 5 the environment (read-only or full disk, locked store, missing driver), 6
another run of the week holds its lock, 1 anything unexpected. Errors print one clear
message, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import unicodedata
import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, overload

import pandas as pd

from meetinglib._version import __version__
from meetinglib.analysis.kpi_table import kpi_table, root_changes, with_roots, write_kpis_csv
from meetinglib.analysis.kpis import CATALOGUE, missing_columns
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_UNEXPECTED,
    DiskFullError,
    EnvironmentProblem,
    MeetingError,
    OutputExistsError,
    ParamsError,
    environment_error,
)
from meetinglib.core.i18n import LANGUAGES, label_or, t
from meetinglib.core.params import DEMO_TEMPLATE, load_params
from meetinglib.core.safename import inside
from meetinglib.core.secrets import redact
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import load_week, resolve_week
from meetinglib.data.propose import propose, render
from meetinglib.data.sample import generate_sample, write_sample_issues, write_sample_minutes
from meetinglib.data.validate import rule_label
from meetinglib.lab import KERNEL_DISPLAY, install_notebooks
from meetinglib.meeting.actions import (
    action_list,
    add_action,
    close_action,
    parse_due,
    update_action,
)
from meetinglib.meeting.agenda import prepare_meeting, write_agenda_files
from meetinglib.meeting.intake import (
    TEMPLATE_COLUMNS,
    IssueChange,
    add_issue,
    check_department,
    close_issues,
    department_label,
    import_issues,
    reopen_issues,
    template_headers,
    write_template,
)
from meetinglib.meeting.minutes import record_minutes
from meetinglib.meeting.notify import (
    notice_message,
    send,
    write_eml,
    write_notice_bodies,
    write_other_languages,
)
from meetinglib.meeting.review import send_minutes
from meetinglib.meeting.store import open_store
from meetinglib.runner import check_sections, default_params_file, run_week

if TYPE_CHECKING:  # imported lazily at run time, so that `meeting --help` starts fast
    from meetinglib.core.params import Params

DEFAULT_SAMPLE = Path("data/sample")


class _Progress:
    """Timestamped progress lines on stderr, so stdout carries only the results."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(
                f"[{time.perf_counter() - self.start:6.1f}s] {redact(message)}",
                file=sys.stderr,
                flush=True,
            )


@overload
def _out(path: None, *, folder: bool, example: str = ...) -> None: ...
@overload
def _out(path: str | Path, *, folder: bool, example: str = ...) -> Path: ...
def _out(path: str | Path | None, *, folder: bool, example: str = "file.csv") -> Path | None:
    """--out checked before any work is done: a folder (``folder``) or a file, in a place
    this user can write to. A file where a folder is meant, or the reverse, is a bad option
    (exit 2); a place that cannot be written is the environment (exit 5). Folders made to
    try are removed again, so the check leaves nothing behind."""
    if path is None:
        return None
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ParamsError(
            f"--out {path} is a file, not a folder: the command writes its files into a "
            "folder. Give a folder's path (it is created when missing)."
        )
    if not folder and path.is_dir():
        raise ParamsError(
            f"--out {path} is a folder: the command writes one file. Give a file's path, "
            f"e.g. {path / example}."
        )
    where = path if folder else path.parent
    made = [p for p in (where, *where.parents) if not p.exists()]
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        full = environment_error(exc, where)
        if isinstance(full, DiskFullError):
            raise full from None
        raise EnvironmentProblem(
            path,
            f"cannot write to --out ({exc.strerror or type(exc).__name__}"
            + (f": {exc.filename}" if exc.filename else "")
            + ")",
            "Give --out a place this user can write to: a folder that exists or can be "
            "created, on a writable disk.",
        ) from None
    finally:
        for made_folder in made:  # deepest first
            with contextlib.suppress(OSError):
                made_folder.rmdir()
    return path


# The language of the lines a command prints: its --lang when it has one, else the first
# language of the params' handouts (the team's), else English (a command without params:
# sample-data, notebooks). Ids, weeks, paths, params keys and command lines stay as
# typed inside the sentences.
def _lang(args: argparse.Namespace, params: Params | None = None) -> str:
    chosen: str | None = getattr(args, "lang", None)
    if chosen:
        return chosen
    return params.handout_languages[0] if params is not None else "en"


def _params_files(args: argparse.Namespace) -> list[Path]:
    if args.params:
        return [Path(p) for p in args.params]

    return [default_params_file()]


def cmd_sample_data(args: argparse.Namespace) -> int:
    progress = _Progress(args.quiet)
    lang = _lang(args)  # no params: English, or the demo's language when it runs this
    summary = generate_sample(
        _out(args.out, folder=True),
        weeks=args.weeks,
        orders_per_week=args.orders_per_week,
        seed=args.seed,
        end_week=args.end_week,
        tz=args.timezone,
        incidents=not args.no_incidents,
        fmt=args.format,
        progress=progress,
        lang=lang,
    )
    print(
        t(
            "cli.sample.written",
            lang,
            weeks=args.weeks,
            week=summary.end_week,
            folder=summary.folder,
        )
    )
    for table, rows in summary.rows.items():
        print("  " + t("cli.sample.rows", lang, table=f"{table:<12}", rows=f"{rows:>12,}"))
    for incident in summary.incidents:
        print("  " + t("cli.sample.incident", lang, text=incident.text(lang)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    progress = _Progress(args.quiet)
    result = run_week(
        _params_files(args),
        args.week,
        notebooks=args.notebook or None,
        lang=args.lang,
        progress=progress,
    )
    for nb in result.notebooks:
        print(f"  {nb.name:<16} {nb.html}")
    # in the handouts' language, as the warnings' texts are
    lang = args.lang or (result.notebooks[0].lang if result.notebooks else "en")
    for section, reason in result.left_out.items():
        print("  " + t("run.section_left_out", lang, section=section, reason=reason))
    for warning in result.warnings:  # on stderr, as the progress, but even with --quiet
        print(t("cli.warning", lang, text=warning), file=sys.stderr)
    print(t("cli.handouts_at", lang, week=result.week, path=result.index))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.dir is not None:
        args.params, args.data = (
            _demo_folder(args, Path(args.dir)),
            str(Path(args.dir) / "data" / "sample"),
        )
    sample = Path(args.data)
    if args.fresh or not (sample / "orders.parquet").exists():
        ns = argparse.Namespace(
            out=sample,
            weeks=12,
            orders_per_week=args.orders_per_week,
            seed=7,
            end_week=None,
            timezone="Asia/Shanghai",
            no_incidents=False,
            format="parquet",
            quiet=args.quiet,
            # the sample's lines in the demo's language, as the rest of the demo
            lang=_lang(args, load_params(*_params_files(args))),
        )
        cmd_sample_data(ns)
    _demo_issues(args, sample)
    _demo_minutes(args, sample)
    # Agenda and notice first: the run keeps them in the week's folder and links them
    # from index.html, and the last line printed is where the handouts are.
    _demo_meeting(args)
    return cmd_run(args)


def _demo_folder(args: argparse.Namespace, folder: Path) -> list[str]:
    """A folder holding the whole demo: params/demo.yaml (copied from the package unless
    present), and beside it the sample data, the store and the handouts."""
    params = folder / "params" / "demo.yaml"
    if not params.is_file():
        params.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_TEMPLATE, params)
        print(t("cli.demo.params_written", _lang(args, load_params(params)), path=params))
    return [str(params)]


def _demo_issues(args: argparse.Namespace, sample: Path) -> None:
    """The departments' sample issue lists for the demo week, imported into the store."""

    params = load_params(*_params_files(args))
    week = resolve_week(params, args.week)
    files = write_sample_issues(sample / "issues", week)
    added = 0
    with open_store(params) as store:
        for f in files:
            result = import_issues(
                store,
                f.path,
                f.department,
                f.week,
                departments=params.meeting.departments,
            )
            added += len(result.added)
        print(
            t(
                "cli.demo.issues",
                _lang(args, params),
                files=len(files),
                folder=sample / "issues",
                added=added,
                url=store.url,
            )
        )


def _demo_minutes(args: argparse.Namespace, sample: Path) -> None:
    """The recorded minutes of the meetings about the week before the demo week and the
    demo week, so that the review loop has earlier items to show."""

    params = load_params(*_params_files(args))
    week = resolve_week(params, args.week)
    files = write_sample_minutes(sample / "minutes", week)
    with open_store(params) as store:
        for path, when in zip(files, (week.previous(), week), strict=True):
            record_minutes(params, store, path, when)
    print(
        t(
            "cli.demo.minutes",
            _lang(args, params),
            before=week.previous(),
            week=week,
            folder=files[0].parent,
        )
    )


def _demo_meeting(args: argparse.Namespace) -> None:
    """The agenda, invitation and notice of the demo week (written, not sent)."""
    ns = argparse.Namespace(**{**vars(args), "out": None, "send": False})
    cmd_agenda(ns)
    cmd_notice(ns)


def cmd_init(args: argparse.Namespace) -> int:
    """Propose a standalone params file for an export; print which KPIs it supports."""
    given = _out(args.out, folder=False, example="company.yaml")  # before the export is read
    if args.timezone is not None:
        try:
            zoneinfo.ZoneInfo(args.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            # written into the file, it would only fail at `meeting validate`
            raise ParamsError(
                f"--timezone: unknown timezone {args.timezone!r}; use an IANA name like "
                "Asia/Shanghai (China has one zone, Asia/Shanghai)"
            ) from None
    proposal = propose(args.source, args.table)
    stem = Path(args.source).stem if "://" not in args.source else args.table
    out = given or Path("params") / f"{stem}.yaml"
    if out.exists() and not args.force:
        raise OutputExistsError(
            f"{out} exists; pass --force to overwrite it, or --out to write another file."
        )
    timezone = args.timezone or ("Asia/Shanghai" if proposal.chinese else "UTC")
    provided = set(proposal.canonical)
    support = {
        key: missing_columns(
            key, lambda table: table == "orders", lambda _table, column: column in provided
        )
        for key in CATALOGUE
    }
    missing = {k: v for k, v in support.items() if v}
    # the export's name: a database's, not its table's ("orders" is no company)
    company = args.company or proposal.name
    text = render(proposal, out, company=company, timezone=timezone, missing=missing)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"params for {company} written to {out} ({proposal.rows_sampled:,} rows sampled)")
    if proposal.url_env:
        # The file names the variable, not the URL: without it set, validate cannot connect.
        print(
            f"  CHECK: the URL holds a password or other credential, so the file names the "
            f"environment variable {proposal.url_env} (source.url_env) instead; export "
            f"{proposal.url_env}='{proposal.shown_source}' with the credential in place of "
            "*** before `meeting validate`"
        )
    if proposal.header_row:
        # the rows above are skipped from now on: a person should see that they hold no data
        key = "source.tables.orders.header_row"
        print("  " + t("cli.init_header_row", "en", row=proposal.header_row, key=key))
    print(f"  columns mapped: {', '.join(f'{k} -> {v}' for k, v in proposal.columns.items())}")
    if proposal.status_column:
        print(
            f"  status column {proposal.status_column}: cancelled = {proposal.status_cancelled}, "
            f"delivered = {proposal.status_delivered}"
        )
    for note in proposal.date_notes:
        print(f"  CHECK: {note}")
    for column, value in proposal.constants.items():
        # every KPI per order type then rests on this one value: said here, not only in
        # the file's comments
        print(
            f"  CHECK: no {column} column in the export: every order is taken as "
            f"{column} = {value!r} (constants in the file)"
        )
    supported = [k for k, v in support.items() if not v]
    print(f"KPIs supported ({len(supported)}): {', '.join(supported)}")
    print("KPIs not available and what each needs:")
    for key, needs in missing.items():
        print(f"  {key}: {', '.join(needs)}")
    # A KPI "needing tickets" may well have them: the other tables are not looked at here.
    print(
        "init maps the orders only: tickets, after_sales, settlements, order_lines and "
        "events are read when they lie beside the orders under those names (files, or "
        "tables of the database), or when mapped under source.tables in the params "
        "(README, Bring your own data)"
    )
    print(f"next: check the lines marked CHECK, then `meeting validate --params {out}`")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    params = load_params(*_params_files(args))
    # Every line in one language, the progress of the load included: a table name, a
    # column or a params key stays as typed, the sentence around it is the language's.
    # Without --lang, the language a run of these params would load the week in.
    lang = args.lang or params.handout_languages[0]
    data = load_week(params, args.week, progress=_Progress(args.quiet), lang=lang)
    # The same checks as a run: a section that cannot be computed fails here too.
    for section, reason in check_sections(data, params.notebooks).items():
        print(t("cli.validate.section_left_out", lang, section=section, reason=reason))
    for table, aside, rows in data.quality.week_warnings:
        print(
            t(
                "cli.validate.week_warning",
                lang,
                set_aside=aside,
                rows=rows,
                table=table,
                week=data.week,
                limit=f"{params.quality.max_quarantine_share:.1%}",
            )
        )
    # Per table: the rows of the report week and of the history before it that its
    # figures read (one sum over every table and week told nothing).
    q = data.quality
    read = q.used or q.kept  # validated inside its database: what was kept
    said = "cli.validate.rows_used" if q.used else "cli.validate.rows_kept"
    separator = t("load.separator", lang)
    kept = separator.join(f"{table} {rows:,}" for table, rows in read.items())
    print(t(said, lang, week=data.week, tables=kept))
    if left_out := {table: n for table, n in q.no_order.items() if n}:
        # set aside, created before the weeks read, or missing from the orders
        listed = separator.join(f"{table} {n:,}" for table, n in left_out.items())
        print(t("load.no_order", lang, tables=listed))
    frame = data.quality.to_frame(lang)
    if not len(frame):
        print(t("cli.validate.nothing_set_aside", lang))
        return 0
    # The examples go below the table, wrapped: as a column they widened every line to
    # the longest of them (hundreds of characters).
    examples = t("quality.examples", lang)
    _print_table(frame.drop(columns=[examples]))
    for entry in data.quality.entries:
        if entry.examples:
            head = t(
                "cli.validate.examples_of",
                lang,
                table=entry.table,
                column=entry.column,
                rule=rule_label(entry.rule, lang),
            )
            text = t("quality.separator", lang).join(entry.example_texts(lang))
            print(_fill(text, 100, "  " + head, "    "))
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    """The package's notebooks in a folder of the user's, with their kernel registered."""
    folder = Path(args.dir).resolve()
    written = install_notebooks(folder, force=args.force)
    lang = _lang(args)  # no params, no --lang: English
    print(
        t("cli.notebooks.written", lang, count=len(written), folder=folder, kernel=KERNEL_DISPLAY)
    )
    print(t("cli.notebooks.open", lang, folder=folder))
    print(t("cli.notebooks.params", lang))
    return 0


def cmd_kpis(args: argparse.Namespace) -> int:
    """kpis.csv of a week, computed without the notebooks (the same table the report shows)."""
    params = load_params(*_params_files(args))
    given = _out(args.out, folder=True)  # before the week is loaded
    # the language `meeting run` writes kpis.csv in: the handouts' first
    lang = _lang(args, params)
    data = load_week(params, args.week, progress=_Progress(args.quiet), lang=lang)
    result = kpi_table(data, lang)
    out = given or Path(params.output_dir) / str(data.week)
    path = write_kpis_csv(with_roots(result.table, root_changes(data, result, lang), lang), out)
    rows, adverse = len(result.table), len(result.changes)
    print(t("cli.kpis.summary", lang, week=data.week, rows=rows, adverse=adverse))
    # absolute, as `meeting run` prints its handouts
    print(t("cli.kpis.written", lang, path=path.resolve()))
    return 0


def _load(args: argparse.Namespace) -> Params:
    return load_params(*_params_files(args))


def _dept_filter(args: argparse.Namespace, params: Params) -> str | None:
    """The --dept of a list as a known department code (as import and add take it); a
    misspelt one is refused, instead of matching nothing."""
    if args.dept is None:
        return None
    return check_department(args.dept, params.meeting.departments)


def cmd_issues_template(args: argparse.Namespace) -> int:
    params = _load(args)
    # The template's language (its headers, sheets and severities), and so its lines':
    # they name its columns.
    lang = args.lang or params.language
    department = check_department(args.dept, params.meeting.departments)
    # Without --out the file goes in the working folder, never beside or above it.
    name = f"issues-{department.replace('_', '-')}.{args.format}"
    out = _out(args.out, folder=False, example=name) or inside(Path.cwd(), name)
    path = write_template(out, department, lang)
    headers = dict(zip(TEMPLATE_COLUMNS, template_headers(lang), strict=True))
    print(t("cli.issues.template_written", lang, department=department, path=path))
    hint = t("cli.issues.template_hint", lang, title=headers["title"], severity=headers["severity"])
    print("  " + hint)
    print("  " + t("cli.issues.template_command", lang, path=path, department=department))
    return 0


def cmd_issues_import(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        result = import_issues(
            store,
            args.file,
            args.dept,
            args.week,
            departments=params.meeting.departments,
            encoding=args.encoding,
        )
    lang = _lang(args, params)
    updated, encoding = "", ""
    if result.updated:
        updated = t("cli.issues.imported_updated", lang, count=len(result.updated))
    if result.encoding:
        encoding = t("cli.issues.imported_encoding", lang, encoding=result.encoding)
    print(
        t(
            "cli.issues.imported",
            lang,
            file=args.file,
            added=len(result.added),
            department=result.department,
            week=result.week,
            updated=updated,
            skipped=result.skipped,
            encoding=encoding,
        )
    )
    for issue_id in result.updated:
        print("  " + t("cli.issues.row_changed", lang, id=issue_id))
    if result.ignored_columns:
        print("  " + t("cli.issues.columns_ignored", lang, columns=list(result.ignored_columns)))
    return 0


def cmd_issues_add(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        result = add_issue(
            store,
            args.dept,
            args.week,
            departments=params.meeting.departments,
            title=args.title,
            severity=args.severity,
            description=args.description,
            segment=args.segment,
            first_seen=args.first_seen,
            submitter=args.submitter,
        )
    lang = _lang(args, params)
    where = {"department": result.department, "week": result.week}
    if result.added:
        print(t("cli.issues.added", lang, id=result.added[0], **where))
    elif result.updated:
        print(t("cli.issues.updated", lang, id=result.updated[0], **where))
    else:
        print(t("cli.issues.duplicate", lang))
    return 0


def _columns(text: str) -> int:
    """Terminal columns of ``text``: two for a wide (Chinese) character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _fill(text: str, width: int, initial_indent: str, subsequent_indent: str) -> str:
    """``textwrap.fill`` counting terminal columns, not characters: textwrap takes a Chinese
    character for one column, and Chinese lines came out half again as wide as the rest.
    Breaks at spaces; a word wider than a line is cut."""
    lines: list[str] = []
    line = initial_indent
    bare = True  # nothing but the indent on the line yet
    for word in text.split():
        if not bare and _columns(line) + 1 + _columns(word) > width:
            lines.append(line)
            line, bare = subsequent_indent, True
        if not bare:
            line += " "
        for char in word:
            if not bare and _columns(line) + _columns(char) > width:
                lines.append(line)
                line = subsequent_indent
            line += char
            bare = False
    lines.append(line)
    return "\n".join(lines)


def _print_table(frame: pd.DataFrame) -> None:
    """A table on the terminal, its columns aligned also when cells hold Chinese text
    (two columns wide each on a terminal; pandas counts one unless asked)."""
    with pd.option_context("display.unicode.east_asian_width", True):
        print(frame.to_string(index=False))


def _for_people(frame: pd.DataFrame, codes: dict[str, str], lang: str) -> pd.DataFrame:
    """A terminal table of ``issues list`` or ``actions list`` in ``lang``: its headers
    (``cli.table.<column>``), departments by name, the values of each column of ``codes``
    by the catalogue key prefix it names (``severity`` -> ``severity.high``), escalation
    as a word. English shows the store's own column names and codes, as before, and
    ``--format csv`` keeps them always."""
    if lang == "en":
        return frame
    shown = frame.copy()
    if "department" in shown:
        shown["department"] = [department_label(str(d), lang) for d in shown["department"]]
    for column, prefix in codes.items():
        shown[column] = [label_or(f"{prefix}.{v}", lang, str(v)) for v in shown[column]]
    if "escalate" in shown:
        word = t("actions.escalate", lang)
        shown["escalate"] = [word if bool(v) else "" for v in shown["escalate"]]
    return shown.rename(columns={c: t(f"cli.table.{c}", lang) for c in shown.columns})


def cmd_issues_list(args: argparse.Namespace) -> int:
    params = _load(args)
    department = _dept_filter(args, params)
    with open_store(params) as store:
        issues = store.issues(
            week=args.week,
            department=department,
            status=None if args.status == "all" else args.status,
        )
    columns = ["id", "week", "department", "severity", "status", "title", "segment", "source"]
    if args.format == "csv":
        write_csv(issues, sys.stdout, columns=columns + ["description", "submitter"])
    elif issues.empty:
        print(t("cli.issues.none_match", _lang(args, params)))
    else:
        codes = {"severity": "severity", "status": "cli.issues.status"}
        _print_table(_for_people(issues.loc[:, columns], codes, _lang(args, params)))
    return 0


def cmd_issues_close(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        changes = close_issues(store, args.id, args.status, week=args.week, note=args.note or "")
    _print_issue_changes(changes, _lang(args, params))
    return 0


def cmd_issues_reopen(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        changes = reopen_issues(store, args.id, note=args.note or "")
    _print_issue_changes(changes, _lang(args, params))
    return 0


def _print_issue_changes(changes: Sequence[IssueChange], lang: str) -> None:
    for c in changes:
        head = t(
            "cli.issues.head", lang, id=c.id, department=c.department, week=c.week, title=c.title
        )
        before, after = (t(f"cli.issues.status.{s}", lang) for s in (c.before, c.after))
        if not c.changed and c.resolved_week:
            print(t("cli.issues.already_in", lang, head=head, status=after, week=c.resolved_week))
        elif not c.changed:
            print(t("cli.issues.already", lang, head=head, status=after))
        elif c.after == "open":
            print(
                t("cli.issues.reopened", lang, head=head, before=before, after=after, week=c.week)
            )
        else:  # settled: always in a week
            print(
                t(
                    "cli.issues.closed",
                    lang,
                    head=head,
                    before=before,
                    after=after,
                    week=c.resolved_week,
                )
            )


def cmd_store_export(args: argparse.Namespace) -> int:
    params = _load(args)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    out = _out(args.out, folder=True) or Path(params.output_dir) / f"store-export-{stamp}"
    with open_store(params) as store:
        files = store.export(out, args.format)
        lang = _lang(args, params)
        print(t("cli.store.exported", lang, url=store.url, version=store.version, out=out))
    for path in files:
        print(f"  {path.name}")
    return 0


def _meeting_week(args: argparse.Namespace, params: Params) -> IsoWeek:
    return resolve_week(params, args.week)


def cmd_agenda(args: argparse.Namespace) -> int:
    params = _load(args)
    given = _out(args.out, folder=True)  # before the week is looked up in the data
    week = _meeting_week(args, params)
    out = given or Path(params.output_dir) / str(week)
    with open_store(params) as store:
        pack = prepare_meeting(params, store, week, args.lang)
    files = {**write_agenda_files(pack, out), **write_notice_bodies(pack, out)}
    if not args.lang:  # and in every further language the params list
        files.update(write_other_languages(pack, params, out))
    a = pack.agenda
    print(
        t(
            "cli.agenda.written",
            _lang(args, params),
            week=week,
            when=f"{a.start:%Y-%m-%d %H:%M}–{a.end:%H:%M}",
            tz=a.tz,
            issues=a.issues,
            departments=len(pack.load),
            planned=a.planned_minutes,
            total=int((a.end - a.start).total_seconds() // 60),
        )
    )
    for name, path in files.items():
        print(f"  {name:<12} {path}")
    return 0


def cmd_notice(args: argparse.Namespace) -> int:
    params = _load(args)
    given = _out(args.out, folder=True)  # before the week is looked up in the data
    week = _meeting_week(args, params)
    if args.send and params.smtp is None:
        raise ParamsError(
            "--send needs an 'smtp' block in the params (host, port, user, sender, "
            "password_env); without --send the notice is written as an .eml file."
        )
    out = given or Path(params.output_dir) / str(week)
    with open_store(params) as store:
        pack = prepare_meeting(params, store, week, args.lang)
    # The agenda is written again with the notice (its invite and bodies show the store
    # as it is now, in the notice's language): the files are listed, not replaced unseen.
    files = {**write_agenda_files(pack, out), **write_notice_bodies(pack, out)}
    organizer = pack.agenda.organizer
    sender = params.smtp.sender if params.smtp else (organizer.email if organizer else "")
    if not sender:
        raise ParamsError("no sender: set smtp.sender or meeting.organizer in the params.")
    message = notice_message(pack, sender)
    eml = write_eml(message, out / "notice.eml")
    lang = _lang(args, params)
    if not args.send or params.smtp is None:  # --send without smtp was refused above
        print(t("cli.notice.written", lang, week=week, eml=eml))
    else:
        smtp = params.smtp
        accepted = send(message, smtp)
        print(
            t(
                "cli.notice.sent",
                lang,
                week=week,
                count=len(accepted),
                host=smtp.host,
                port=smtp.port,
                eml=eml,
            )
        )
    print(t("cli.notice.written_again", lang, lang=pack.agenda.lang))
    for name, path in files.items():
        print(f"  {name:<12} {path}")
    return 0


def cmd_minutes_record(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        r = record_minutes(params, store, args.file, args.week)
    lang = _lang(args, params)
    if r.unchanged:
        print(t("cli.minutes.unchanged", lang, file=args.file, week=r.week))
        return 0
    print(
        t(
            "cli.minutes.recorded",
            lang,
            file=args.file,
            week=r.week,
            decisions=r.decisions_added,
            added=r.actions_added,
            updated=r.actions_updated,
            earlier=r.earlier_updated,
        )
    )
    return 0


def cmd_minutes_send(args: argparse.Namespace) -> int:
    params = _load(args)
    if params.smtp is None:
        raise ParamsError("sending the minutes needs an 'smtp' block in the params.")
    result = send_minutes(params, args.week, lang=args.lang)
    lang = _lang(args, params)
    print(
        t(
            "cli.minutes.sent",
            lang,
            week=result.week,
            count=result.recipients,
            when=f"{result.sent_at:%Y-%m-%d %H:%M}",
            eml=result.eml,
        )
    )
    if not result.in_time:
        print(t("cli.minutes.late", lang, hours=f"{result.hours_after:.1f}"), file=sys.stderr)
    return 0


def cmd_actions_add(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        item = add_action(
            params,
            store,
            args.week,
            description=args.description,
            owner=args.owner,
            department=check_department(args.dept, params.meeting.departments),
            due=parse_due(args.due),
            issue_id=args.issue,
            note=args.note,
        )
    print(t("cli.actions.added", _lang(args, params), id=item, week=args.week))
    return 0


def cmd_actions_update(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        update_action(
            store,
            args.id,
            departments=params.meeting.departments,
            description=args.description,
            owner=args.owner,
            department=_dept_filter(args, params),
            due_date=parse_due(args.due) if args.due else None,
            status=args.status,
            note=args.note,
            issue_id=args.issue,
        )
    print(t("cli.actions.updated", _lang(args, params), id=args.id))
    return 0


def cmd_actions_done(args: argparse.Namespace) -> int:
    params = _load(args)
    with open_store(params) as store:
        for item in args.id:
            close_action(store, item, args.note)
    lang = _lang(args, params)
    ids = t("cli.separator", lang).join(f"#{i}" for i in args.id)
    print(t("cli.actions.done", lang, ids=ids))
    return 0


def cmd_actions_list(args: argparse.Namespace) -> int:
    params = _load(args)
    department = _dept_filter(args, params)  # before the week is looked up in the data
    week = _meeting_week(args, params)
    with open_store(params) as store:
        items = action_list(
            params,
            store,
            week,
            owner=args.owner,
            department=department,
            overdue=args.overdue,
            include_closed=args.all,
        )
    columns = [
        "id", "meeting_week", "department", "owner", "due_date", "status", "due_status",
        "age_weeks", "carried", "escalate", "description",
    ]  # fmt: skip
    if args.format == "csv":
        write_csv(items, sys.stdout, columns=columns)
    elif items.empty:
        print(t("cli.actions.none_match", _lang(args, params)))
    else:
        codes = {"status": "cli.actions.status", "due_status": "actions.status"}
        _print_table(_for_people(items.loc[:, columns], codes, _lang(args, params)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meeting",
        description="Prepare and follow up the weekly order-processing review meeting.",
    )
    parser.add_argument("--version", action="version", version=f"meetinglib {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--week", help="ISO week, e.g. 2026-W47 (default: latest complete week)")
        p.add_argument(
            "--params",
            action="append",
            metavar="FILE",
            help="params YAML; repeat to layer files (default: the demo's params/demo.yaml)",
        )
        p.add_argument(
            "--notebook",
            action="append",
            metavar="NAME",
            help="run only this notebook (repeatable; default: 'notebooks' in params)",
        )
        p.add_argument("--lang", choices=list(LANGUAGES), help="handout language")

    p = sub.add_parser("sample-data", help="generate the deterministic sample data")
    p.add_argument("--out", type=Path, default=DEFAULT_SAMPLE, help="folder to write")
    p.add_argument("--weeks", type=int, default=12)
    p.add_argument("--orders-per-week", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--end-week", help="last week of the sample (default: last complete week)")
    p.add_argument("--timezone", default="Asia/Shanghai")
    p.add_argument("--no-incidents", action="store_true", help="no injected incidents")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("run", help="execute the week's notebooks and publish the handouts")
    with_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="sample data (if missing) and the latest week's handouts")
    with_run_options(p)
    p.add_argument("--data", default=str(DEFAULT_SAMPLE), help="sample data folder")
    p.add_argument(
        "--dir",
        help="a folder for the whole demo (params, sample data, store, handouts); "
        "default: the working folder with params/demo.yaml",
    )
    p.add_argument("--orders-per-week", type=int, default=20_000)
    p.add_argument("--fresh", action="store_true", help="regenerate the sample data")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "notebooks",
        help="copy the notebooks (console, explorer, triage form...) to a folder for "
        "JupyterLab and register their kernel",
    )
    p.add_argument("--dir", default="notebooks", help="folder to write (default: notebooks)")
    p.add_argument("--force", action="store_true", help="replace notebooks already there")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("init", help="propose a params file for a company's own export")
    p.add_argument("source", help="the exported file (CSV, XLSX, Parquet) or a database URL")
    p.add_argument("--table", default="orders", help="database table to read (default: orders)")
    p.add_argument("--out", type=Path, help="params file to write (default: params/<name>.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--company", help="company name (default: the file's or the database's name)")
    p.add_argument("--timezone", help="zone of the export's times (default: guessed; check it)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("validate", help="load and validate a week; print what was set aside")
    with_run_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("kpis", help="write the week's kpis.csv without running the notebooks")
    with_run_options(p)
    p.add_argument("--out", help="folder for kpis.csv (default: outputs/<week>/)")
    p.set_defaults(func=cmd_kpis)

    def with_params(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--params",
            action="append",
            metavar="FILE",
            help="params YAML; repeat to layer files (default: the demo's params/demo.yaml)",
        )

    issues = sub.add_parser("issues", help="the departments' issue lists").add_subparsers(
        dest="issues_command", required=True, metavar="ACTION"
    )
    p = issues.add_parser("template", help="write an empty issue list for a department")
    with_params(p)
    p.add_argument("--dept", required=True, help="department code, e.g. logistics")
    p.add_argument("--out", type=Path, help="file to write (default: issues-<dept>.<format>)")
    p.add_argument("--format", choices=["xlsx", "csv"], default="xlsx")
    p.add_argument("--lang", choices=["en", "zh-CN"], help="header language")
    p.set_defaults(func=cmd_issues_template)

    p = issues.add_parser("import", help="check and import a department's issue file")
    with_params(p)
    p.add_argument("file", type=Path, help="CSV (UTF-8 or GBK) or XLSX issue list")
    p.add_argument("--dept", required=True, help="department code, e.g. logistics")
    p.add_argument("--week", required=True, help="ISO week the issues are raised for")
    p.add_argument("--encoding", help="CSV encoding (default: detect UTF-8 / GBK)")
    p.set_defaults(func=cmd_issues_import)

    p = issues.add_parser("add", help="add one issue")
    with_params(p)
    p.add_argument("--dept", required=True, help="department code, e.g. logistics")
    p.add_argument("--week", required=True, help="ISO week the issue is raised for")
    p.add_argument("--title", required=True)
    p.add_argument("--severity", required=True, help="low, medium, high or critical")
    p.add_argument("--description", default="")
    p.add_argument("--segment", default="", help="e.g. 'carrier=EastPost; region=South'")
    p.add_argument("--first-seen", help="YYYY-MM-DD")
    p.add_argument("--submitter", default="")
    p.set_defaults(func=cmd_issues_add)

    p = issues.add_parser("list", help="list the stored issues")
    with_params(p)
    p.add_argument("--week", help="only this ISO week")
    p.add_argument("--dept", help="only this department")
    p.add_argument("--status", choices=["open", "resolved", "dropped", "all"], default="all")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=cmd_issues_list)

    p = issues.add_parser("close", help="settle issues, so that later agendas leave them out")
    with_params(p)
    p.add_argument("id", type=int, nargs="+", help="issue id (see `meeting issues list`)")
    p.add_argument("--status", choices=["resolved", "dropped"], default="resolved")
    p.add_argument(
        "--week",
        help="ISO report week whose meeting settled them (default: the latest meeting stored)",
    )
    p.add_argument("--note", help="why; added to the issue's description")
    p.set_defaults(func=cmd_issues_close)

    p = issues.add_parser("reopen", help="open settled issues again")
    with_params(p)
    p.add_argument("id", type=int, nargs="+")
    p.add_argument("--note", help="why; added to the issue's description")
    p.set_defaults(func=cmd_issues_reopen)

    store = sub.add_parser("store", help="the meeting store").add_subparsers(
        dest="store_command", required=True, metavar="ACTION"
    )
    p = store.add_parser("export", help="dump every table to CSV files or one JSON file")
    with_params(p)
    p.add_argument("--out", type=Path, help="folder (default: outputs/store-export-<time>)")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.set_defaults(func=cmd_store_export)

    minutes = sub.add_parser("minutes", help="the meeting's minutes").add_subparsers(
        dest="minutes_command", required=True, metavar="ACTION"
    )
    p = minutes.add_parser("record", help="check and record a minutes YAML file")
    with_params(p)
    p.add_argument("file", type=Path, help="minutes YAML file (format: meetinglib.meeting.minutes)")
    p.add_argument("--week", required=True, help="ISO report week the meeting was about")
    p.set_defaults(func=cmd_minutes_record)
    p = minutes.add_parser("send", help="e-mail the minutes handout to the attendees")
    with_params(p)
    p.add_argument("--week", required=True, help="ISO report week the meeting was about")
    p.add_argument("--lang", choices=["en", "zh-CN"], help="language of the e-mail")
    p.set_defaults(func=cmd_minutes_send)

    actions = sub.add_parser("actions", help="action items").add_subparsers(
        dest="actions_command", required=True, metavar="ACTION"
    )
    p = actions.add_parser("add", help="add an action item to a week's meeting")
    with_params(p)
    p.add_argument("--week", required=True, help="ISO report week of the meeting")
    p.add_argument("--description", required=True)
    p.add_argument("--owner", required=True)
    p.add_argument("--dept", required=True, help="department code, e.g. logistics")
    p.add_argument("--due", required=True, help="due date YYYY-MM-DD")
    p.add_argument("--issue", type=int, help="id of the linked issue")
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_actions_add)
    p = actions.add_parser("update", help="change an action item")
    with_params(p)
    p.add_argument("id", type=int)
    p.add_argument("--description")
    p.add_argument("--owner")
    p.add_argument("--dept")
    p.add_argument("--due", help="YYYY-MM-DD")
    p.add_argument("--status", choices=["open", "done", "dropped"])
    p.add_argument("--issue", type=int)
    p.add_argument("--note")
    p.set_defaults(func=cmd_actions_update)
    p = actions.add_parser("done", help="mark action items done")
    with_params(p)
    p.add_argument("id", type=int, nargs="+")
    p.add_argument("--note")
    p.set_defaults(func=cmd_actions_done)
    p = actions.add_parser("list", help="open action items with due status and escalation")
    with_params(p)
    p.add_argument("--week", help="judge as of the meeting about this week (default: latest)")
    p.add_argument("--overdue", action="store_true", help="only overdue items")
    p.add_argument("--owner")
    p.add_argument("--dept")
    p.add_argument("--all", action="store_true", help="closed items too")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.set_defaults(func=cmd_actions_list)

    for name, func, text in (
        ("agenda", cmd_agenda, "agenda with time boxes, meeting.ics invite and notice texts"),
        ("notice", cmd_notice, "the meeting notice as .eml; --send mails it by SMTP"),
    ):
        p = sub.add_parser(name, help=text)
        with_params(p)
        p.add_argument("--week", help="ISO report week (default: latest complete week)")
        p.add_argument("--out", type=Path, help="folder (default: outputs/<week>)")
        p.add_argument("--lang", choices=["en", "zh-CN"], help="language of agenda and notice")
        if name == "notice":
            p.add_argument("--send", action="store_true", help="send through params smtp")
        p.set_defaults(func=func)
    return parser


# Modules no command needs whose import costs seconds: imported, they resolve to nothing.
# rfc3987_syntax (installed beside jsonschema by jupyter-events' format extra) builds a
# Lark grammar when jsonschema is imported: about 2 s of CPU in every command reading a
# notebook (nbformat validates with jsonschema), on the run's critical path. It only
# checks the "iri" string format, which no notebook schema uses; jsonschema does without
# it when it cannot be imported (python-jsonschema/jsonschema#1428).
UNNEEDED_MODULES = ("rfc3987_syntax",)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            # Output to a pipe is buffered: a reader gone shows here, not in the
            # interpreter's last flush (which would report it as an ignored exception).
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        # The reader of the output stopped early (`| head`): stop quietly. Standard output
        # points at nothing from here on, so the interpreter's last flush fails no more
        # (an output without a file descriptor, as a caller's capture, is left as it is).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    for name in UNNEEDED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "week", None) is not None:
            # A mistyped week is refused at once, not after the data has been loaded.
            IsoWeek.parse(args.week)
        return int(args.func(args) or 0)
    except MeetingError as exc:
        if args.debug:
            raise
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # not a bug: main stops quietly
    except Exception as exc:  # a bug: say so plainly, keep the traceback one flag away
        if args.debug:
            raise
        # Read-only folders and full disks are the machine's state, not a bug.
        env = environment_error(exc) if isinstance(exc, OSError) else None
        if env is not None:
            print(f"error: {env}", file=sys.stderr)
            return env.exit_code
        print(
            f"unexpected error: {type(exc).__name__}: {redact(str(exc))}\n"
            "This is a bug in meetinglib; rerun with --debug for the traceback.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
