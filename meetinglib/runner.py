"""Run the week's notebooks with papermill and publish them as HTML handouts.

One run: load and validate the week's data once (bad input fails here, before any
notebook starts), snapshot it for the notebooks, execute each configured notebook
with papermill, export it with nbconvert (code hidden, images embedded, nothing
loaded from outside), write ``index.html`` and ``manifest.json``, then publish the
week folder in one step. Everything is built in a staging folder next to the week
folder; a failure leaves the published handouts of that week untouched and keeps
the failed notebook in ``<week>.failed-<time>/`` for debugging.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import errno
import fcntl
import functools
import gc
import hashlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meetinglib._version import __version__

if TYPE_CHECKING:
    import nbformat
from meetinglib.analysis.kpis import resolve_targets
from meetinglib.core.csp import with_csp
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INPUT,
    EXIT_PARAMS,
    EXIT_SECTION,
    MeetingError,
    NotebookError,
    NotebookExecutionError,
    NotebookNotFoundError,
    NotebookStoppedError,
    RunLockedError,
    SectionError,
    environment_error,
    error_class,
)
from meetinglib.core.handouts import handout_stem, html_lang
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, demo_params_file, load_params
from meetinglib.core.processes import alive, remove_orphans
from meetinglib.core.safename import check_name
from meetinglib.core.secrets import redact_tree
from meetinglib.core.weeks import IsoWeek
from meetinglib.data import engine
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.data.validate import quarantine_file
from meetinglib.meeting.minutes import has_minutes
from meetinglib.report.charts import cjk_font
from meetinglib.report.data_report import REPORT_WARNINGS
from meetinglib.report.explorer import (
    PREPARED_FOLDER,
    REPORT_FINDINGS,
    background_engine,
    finish_week,
    in_full,
    prepare_week,
    save_week,
)
from meetinglib.report.plan_section import LEFT_OUT_FILE as SECTIONS_LEFT_OUT
from meetinglib.report.plan_section import SECTION as PLAN_SECTION
from meetinglib.report.plan_section import plan_problem
from meetinglib.report.render import page

TEMPLATES = Path(__file__).parent / "templates"
SNAPSHOT_DIR = "_snapshot"
KERNEL_NAME = "python3"

Progress = Callable[[str], None]


@dataclass
class NotebookResult:
    name: str
    notebook: Path
    html: Path
    seconds: float
    lang: str = "en"


@dataclass
class RunResult:
    week: IsoWeek
    folder: Path
    index: Path
    manifest: Path
    notebooks: list[NotebookResult] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # optional sections left out, why
    # the week's data-quality warnings, as page one of the data report shows them
    warnings: list[str] = field(default_factory=list)


def _quiet(_: str) -> None:
    pass


def run_week(
    params_files: Sequence[str | os.PathLike[str]],
    week: IsoWeek | str | None = None,
    *,
    notebooks: Sequence[str] | None = None,
    lang: str | None = None,
    progress: Progress | None = None,
    extra_parameters: dict[str, Any] | None = None,
) -> RunResult:
    """Execute and publish the week's handouts; returns where they are."""
    # What the run starts beside itself (the first notebook's kernel) ends with it, however
    # it ends.
    with contextlib.ExitStack() as cleanup:
        return _run_week(
            cleanup,
            params_files,
            week,
            notebooks=notebooks,
            lang=lang,
            progress=progress,
            extra_parameters=extra_parameters,
        )


def _run_week(
    cleanup: contextlib.ExitStack,
    params_files: Sequence[str | os.PathLike[str]],
    week: IsoWeek | str | None = None,
    *,
    notebooks: Sequence[str] | None = None,
    lang: str | None = None,
    progress: Progress | None = None,
    extra_parameters: dict[str, Any] | None = None,
) -> RunResult:
    say = progress or _quiet
    started = time.perf_counter()
    timings: dict[str, float] = {}
    params = load_params(*params_files)
    # Judged before any data is read: a wrong at_risk side is a params error (exit 2).
    resolve_targets(params.targets, ", ".join(str(f) for f in params.files))
    names = list(notebooks or params.notebooks)
    # --lang asks for one language; otherwise every language the params list, first one
    # primary (its files keep their plain names).
    languages = [lang] if lang else list(params.handout_languages)
    lang = languages[0]
    sources = [_notebook_path(params, name) for name in names]

    # The first notebook's kernel starts and imports while the week loads.
    warm = _WarmKernel(sources[0]) if sources else None
    if warm is not None:
        cleanup.callback(warm.close)
    t0 = time.perf_counter()
    # The load step speaks the run's first language, as `meeting validate` does.
    say(t("load.progress.start", lang))
    data = load_week(params, week, progress=lambda msg: say(f"  {msg}"), lang=lang)
    timings["load"] = time.perf_counter() - t0
    # The minutes handout exists only once a meeting has been recorded for the week.
    if notebooks is None and "minutes" not in names and has_minutes(params, data.week):
        names.append("minutes")
        sources.append(_notebook_path(params, "minutes"))

    out_root = Path(params.output_dir).resolve()  # the kernels run in another folder
    with _environment(out_root):
        out_root.mkdir(parents=True, exist_ok=True)
    with (
        _week_lock(out_root, str(data.week), params.run.lock_wait_seconds, say, lang),
        _terminate_as_exit(),
    ):
        _remove_stale(out_root, str(data.week))
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        staging = out_root / f".{data.week}.staging-{stamp}-{os.getpid()}"
        with _environment(staging):
            staging.mkdir()
        try:
            with _environment(staging):
                t0 = time.perf_counter()
                snapshot = staging / SNAPSHOT_DIR
                data.save(snapshot)
                _write_quarantine(data, staging, lang)
            # The notebooks read the snapshot; holding the tables here too would double
            # the peak memory of a large week while the kernels run: from here on the
            # week is the snapshot, its tables read only if asked for.
            data = WeekData.load(snapshot, params)
            gc.collect()
            timings["snapshot"] = time.perf_counter() - t0

            # The explorer's tables need no notebook but for the findings: prepared in
            # the background meanwhile (on an engine of their own, the kernel being
            # another process), finished once the data report wrote the findings.
            with _explorer_tables(params, data, staging, names) as explorer:
                results = []
                jobs = [(n, s, g) for n, s in zip(names, sources, strict=True) for g in languages]
                for i, (name, source, language) in enumerate(jobs, start=1):
                    stem = handout_stem(name, language, languages)
                    say(t("run.progress.executing", lang, step=i, steps=len(jobs), notebook=stem))
                    result = _execute(
                        name,
                        source,
                        staging,
                        out_root,
                        stamp,
                        parameters={
                            "week": str(data.week),
                            "params_files": [str(p) for p in params.files],
                            "snapshot": str(snapshot),
                            "lang": language,
                            # Machine-readable files (kpis.csv, ...) go beside the handouts,
                            # written by the notebook from the same computation as its
                            # figures; once, by the first language's run.
                            "out_dir": str(staging) if language == lang else None,
                            **(extra_parameters or {}),
                        },
                        say=say,
                        stem=stem,
                        lang=language,
                        progress_lang=lang,
                        timeout=params.run.cell_timeout_seconds,
                        warm=warm if i == 1 else None,
                        # the explorer's tables are finished as soon as the findings are out
                        on_cell=explorer.cell_executed
                        if explorer is not None and name == "data_report" and language == lang
                        else None,
                        # the last notebook ran: the explorer's part goes on beside its export
                        on_executed=explorer.hurry
                        if explorer is not None and i == len(jobs)
                        else None,
                    )
                    results.append(result)
                    timings[stem] = result.seconds
                explorer_data = None
                if explorer is not None:
                    # from the snapshot, so that Explorer.open after the run starts at
                    # once; the findings are those the data report just wrote beside it
                    t0 = time.perf_counter()
                    say(t("run.progress.explorer", lang))
                    with _environment(staging):
                        explorer_data = explorer.finish(staging / PREPARED_FOLDER).name
                    timings["explorer_data"] = time.perf_counter() - t0
                    # its part done beside the notebooks (off the run's critical path)
                    timings["explorer_data_background"] = explorer.seconds
            shutil.rmtree(snapshot)
            warnings = _report_warnings(staging)
            # Sections the data and params cannot support stop the data report at its start
            # (PlanSection.check; the run exits with SectionError's code), unless params
            # mark them optional: the handout then shows why, and the run lists them.
            left_out = _sections_left_out(staging)
            for section, reason in left_out.items():
                say(t("run.section_left_out", lang, section=section, reason=reason))

            timings["total"] = time.perf_counter() - started
            final = out_root / str(data.week)
            with _environment(staging):
                _carry_over(final, staging, {r.name for r in results})
                manifest = _write_manifest(
                    staging,
                    data,
                    params,
                    results,
                    timings,
                    languages,
                    left_out=left_out,
                    explorer_data=explorer_data,
                    report_warnings=warnings,
                )
                index = _write_index(staging, data.week, params, results, languages)
            _publish(staging, final)
        except BaseException:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
            raise
    moved = [
        NotebookResult(r.name, final / r.notebook.name, final / r.html.name, r.seconds, r.lang)
        for r in results
    ]
    return RunResult(
        data.week, final, final / index.name, final / manifest.name, moved, left_out, warnings
    )


def _taken_out(path: Path) -> Any:
    """The JSON a notebook wrote for the run at ``path``, the file removed from the
    handouts' folder (the manifest and the terminal carry what it says); None without it."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path.unlink()
    return found


def _report_warnings(staging: Path) -> list[str]:
    """The data-quality warnings the data report wrote (``DataReport.export``)."""
    found = _taken_out(staging / REPORT_WARNINGS)
    return [str(w) for w in found] if isinstance(found, list) else []


def _sections_left_out(staging: Path) -> dict[str, str]:
    """The optional sections the data report left out, with why (``PlanSection.check``)."""
    found = _taken_out(staging / SECTIONS_LEFT_OUT)
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


# How much nicer than the run the explorer's background thread is (see _ExplorerTables).
BACKGROUND_NICE = 10
# The nice value of the run's session while the notebooks run beside the background
# thread (see _SessionPriority).
BACKGROUND_SESSION_NICE = 19
_AUTOGROUP = Path("/proc/self/autogroup")
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


class _SessionPriority:
    """The run's session made nicer than the kernels' while the background thread works
    beside them, and made as it was again by ``restore``.

    Linux with autogroups (the default of most distributions) shares the CPU between
    sessions first and between the threads of a session by their nice only then; every
    kernel runs in a session of its own (jupyter_client starts it so), so the background
    thread's nice alone left it half of the machine against the kernel's engine: at 1M
    orders a week the data report ran 67.0 s, against 58.9 s with the run's session at
    nice 19. Nothing is changed without autogroups (there the thread's nice suffices),
    when the session's nice is below zero (going back would need privileges), or when it
    is at 19 already (another run of the session set it and puts it back). The session
    is the terminal's: its other programs yield too meanwhile.

    ``path``: another process's session instead (/proc/<pid>/autogroup): the warm
    kernel's, made to yield to the run's while the run loads the week.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.was: int | None = None
        self.path = path
        was = _session_nice(path)
        # At BACKGROUND_SESSION_NICE already: another run of the session yields, and
        # puts the session back when it is over; this one leaves it alone.
        yields = was is not None and 0 <= was < BACKGROUND_SESSION_NICE
        if yields and _set_session_nice(BACKGROUND_SESSION_NICE, path):
            self.was = was

    def restore(self) -> None:
        if self.was is not None:
            _set_session_nice(self.was, self.path)
            self.was = None


def _session_nice(path: Path | None = None) -> int | None:
    """The nice value of the autogroup at ``path`` (/proc/<pid>/autogroup; default this
    process's), or None when autogroups are off or it cannot be read."""
    path = path or _AUTOGROUP
    try:
        if _AUTOGROUP_ENABLED.read_text().strip() != "1":
            return None
        found = re.search(r"\bnice\s+(-?\d+)", path.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found is not None else None


def _set_session_nice(nice: int, path: Path | None = None) -> bool:
    """Set the nice value of the autogroup at ``path`` (default: this process's); whether
    it was set."""
    path = path or _AUTOGROUP
    for _ in range(20):
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(str(nice))
            return True
        except BlockingIOError:  # an unprivileged change: once per 100 ms at most
            time.sleep(0.1)
        except OSError:
            return False
    return False


class _ExplorerTables:
    """The explorer's tables saved in a thread of their own, on an engine of their own
    (explorer.background_engine), while the notebooks run.

    explorer.prepare_week first: it needs no findings. Then, once the data report has
    written its findings (``cell_executed`` sees the file after a cell ends, so it is
    complete) or the notebooks are over, explorer.finish_week into a folder beside the
    staging folder; ``finish`` moves it in after the notebooks.
    """

    def __init__(self, params: Params, data: WeekData, staging: Path) -> None:
        self.report = staging  # where the data report writes its files
        # beside the staging folder, named as it is: a dead run's copies go with it
        self.temp = staging.with_name(f"{staging.name}-explorer")
        self.done = staging.with_name(f"{staging.name}-explorer.done")
        self._bytes = data.snapshot_bytes()
        self.con = background_engine(params, self._bytes)
        self.temp.mkdir()
        self.seconds = 0.0  # how long the background part took
        self._params, self._data = params, data
        # set when the findings are written, or when the notebooks are over
        self._findings = threading.Event()
        self._over = self._stopped = False
        self._used: bytes | None = None  # the findings file finish_week read
        self._error: BaseException | None = None
        self._nice = os.getpriority(os.PRIO_PROCESS, 0)
        self._tid: int | None = None
        self._thread = threading.Thread(target=self._save, name="explorer-tables", daemon=True)
        self._session = _SessionPriority()
        self._thread.start()

    def cell_executed(self) -> None:
        """Called after each cell of the data report: its findings are complete once
        their file is there, the cell that wrote them having ended."""
        if not self._findings.is_set() and (self.report / REPORT_FINDINGS).is_file():
            self._findings.set()

    def _save(self) -> None:
        t0 = time.perf_counter()
        self._tid = threading.get_native_id()
        # The kernel comes first: this thread (and the engine's, started from it, one
        # thread while the notebooks run) takes only the time the kernel leaves idle.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self._tid, self._nice + BACKGROUND_NICE)
        try:
            prepared = prepare_week(self._params, self._data, self.temp, self.con)
            self._findings.wait()
            if self._stopped:
                return
            if self._over:  # nothing else computes now: all threads and memory
                in_full(self.con, self._params, self._bytes)
            self._used = _bytes_of(self.report / REPORT_FINDINGS)
            finish_week(prepared, self.done, self.report)
        except BaseException as exc:  # raised again by finish, in the run's own thread
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - t0

    def hurry(self) -> None:
        """The notebooks are over: the rest of the background part at full speed.

        Called once the last notebook has run, so that what remains of the part goes on
        beside the handout's export instead of after it; ``finish`` calls it too.
        """
        if self._over:
            return
        self._over = True
        self._findings.set()
        self._session.restore()
        if self._thread.is_alive():
            # The run now waits for it: its priority back (allowed to privileged users),
            # and its engine's threads and memory, taken up by a query already running
            # (the findings' part, begun on one thread while the notebooks ran).
            if self._tid is not None:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, self._tid, self._nice)
            # Only a speed-up: an engine that refuses it lets the part finish as it runs.
            with contextlib.suppress(Exception):
                in_full(self.con, self._params, self._bytes)

    def finish(self, folder: Path) -> Path:
        """After the notebooks: the saved tables moved to ``folder``; an error of the
        background part is raised here as save_week would have raised it."""
        self.hurry()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if _bytes_of(self.report / REPORT_FINDINGS) != self._used:
            # a notebook wrote the findings again after they were read: saved anew
            shutil.rmtree(self.done, ignore_errors=True)
            saved = save_week(self._params, self._data, folder, report=self.report)
            assert saved is not None  # DuckDB, as for the background part
            return saved
        self.done.rename(folder)
        return folder

    def stop(self) -> None:
        """End the background part (a failed run does not wait for its queries: the
        engine is interrupted until the thread ends), close its engine, remove its
        folders."""
        self._stopped = True
        self._findings.set()
        self._session.restore()
        duck = getattr(self.con, "con", None)
        while self._thread.is_alive():
            with contextlib.suppress(Exception):
                duck.interrupt()  # type: ignore[union-attr]
            self._thread.join(0.05)
        with contextlib.suppress(Exception):
            self.con.disconnect()
        shutil.rmtree(self.temp, ignore_errors=True)
        shutil.rmtree(self.done, ignore_errors=True)


def _bytes_of(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _explorer_tables(
    params: Params, data: WeekData, staging: Path, names: Sequence[str]
) -> Iterator[_ExplorerTables | None]:
    """The explorer's tables saved in the background during the block (None when the
    run saves none: run.explorer_data off, no data report, or engine source, whose week
    stays in its database); stopped and cleaned up when the block ends, however it ends."""
    if not (params.run.explorer_data and "data_report" in names):
        yield None
        return
    if params.engine.kind == "source":  # the week stays in the database (explorer_engine)
        yield None
        return
    with _environment(staging):
        tables = _ExplorerTables(params, data, staging)
    try:
        yield tables
    finally:
        tables.stop()


PACKAGE_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def run_warnings() -> list[str]:
    """What the run's outputs may lack because of the machine (recorded in the manifest)."""
    out = []
    if cjk_font() is None:
        out.append(
            "no CJK font installed: Chinese names in charts are drawn as empty boxes; install "
            "one (Debian: fonts-noto-cjk, or `make system-deps`)"
        )
    return out


def check_sections(data: WeekData, notebooks: Sequence[str] = ("data_report",)) -> dict[str, str]:
    """Optional sections that cannot be computed, with why; raises SectionError for the others."""
    if "data_report" not in notebooks:
        return {}
    problem = plan_problem(data)
    if problem is None:
        return {}
    if PLAN_SECTION not in data.params.optional_sections:
        raise SectionError(PLAN_SECTION, problem)
    return {PLAN_SECTION: problem}


def _notebook_path(params: Params, name: str) -> Path:
    folder = Path(params.notebooks_dir) if params.notebooks_dir else PACKAGE_NOTEBOOKS
    # The name becomes the handout's file name too: a plain name, never a path.
    path = folder / f"{check_name(name, 'notebook')}.ipynb"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.ipynb"))
        raise NotebookNotFoundError(
            f"notebook '{name}' not found at {path}; notebooks available: {available}. "
            "Fix 'notebooks' in the params file or pass --notebook with one of those."
        )
    return path


def _execute(
    name: str,
    source: Path,
    staging: Path,
    out_root: Path,
    stamp: str,
    parameters: dict[str, Any],
    say: Progress,
    stem: str | None = None,
    lang: str = "en",
    timeout: float | None = None,
    warm: _WarmKernel | None = None,
    progress_lang: str | None = None,
    on_cell: Callable[[], None] | None = None,
    on_executed: Callable[[], None] | None = None,
) -> NotebookResult:
    # The notebook machinery (papermill, nbclient, nbformat and its jsonschema) is loaded
    # by the commands that execute notebooks, not by every `meeting` command.
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    stem = stem or name
    executed = staging / f"{stem}.ipynb"
    t0 = time.perf_counter()
    # A kernel started while the week loaded, when there is one (``_WarmKernel``).
    km = warm.take() if warm is not None else None
    engine_options = {} if km is None else {"km": km}
    # Private (0700) and named after this process, so a later run can tell it is stale.
    sockets = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-"))
    # The handout's exporter is made while the notebook runs (``_Exporter``).
    exporter = _Exporter(lang)
    executed_ok = False
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            engine_name=_papermill_engine(),
            progress_bar=sys.stderr.isatty(),
            cwd=str(source.parent),
            log_output=False,
            kernel_manager_class=_local_kernel_manager(sockets),
            execution_timeout=timeout,
            **engine_options,
            # after each cell's reply: nbclient's hook, through papermill's engine
            on_cell_executed=(lambda **_: on_cell()) if on_cell is not None else None,
        )
        executed_ok = True
    except PapermillExecutionError as exc:
        env = _environment_in_cell(exc.ename, exc.evalue, staging)
        if env is not None:
            raise env from None
        kept = _keep_failed(staging, out_root, stamp)
        relayed = error_class(exc.ename)
        if relayed is not None and relayed.exit_code in _RELAYED_EXIT_CODES:
            # The params, the data or the machine, found by the library in the kernel
            # (the source changed under the run, no minutes recorded, a section that
            # cannot be computed): their exit code, not a notebook bug.
            raise NotebookStoppedError(
                name, exc.ename, exc.evalue, relayed.exit_code, str(kept / executed.name)
            ) from None
        cell = f"cell [{exc.exec_count}]" if exc.exec_count else f"cell #{exc.cell_index}"
        first_line = (exc.source or "").strip().splitlines()[:1]
        where = f"{cell} ({first_line[0][:80]!r})" if first_line else cell
        raise NotebookExecutionError(
            name, where, f"{exc.ename}: {exc.evalue}", str(kept / executed.name)
        ) from None
    except CellTimeoutError:
        kept = _keep_failed(staging, out_root, stamp)
        raise NotebookExecutionError(
            name,
            "a cell",
            f"no result after {timeout:g} s (run.cell_timeout_seconds in the params); "
            "the cell was stopped",
            str(kept / executed.name),
        ) from None
    except OSError as exc:  # writing the executed notebook: read-only or full disk
        env = environment_error(exc, staging)
        if env is None:
            raise
        raise env from None
    except Exception as exc:  # kernel died, bad notebook JSON
        kept = _keep_failed(staging, out_root, stamp)
        raise NotebookExecutionError(
            name, "start-up", f"{type(exc).__name__}: {exc}", str(kept / executed.name)
        ) from None
    finally:
        if warm is not None and not executed_ok:
            # a kernel handed over is not shut down by papermill: as it would have done
            warm.close(now=False)
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - t0
    # in the run's language, as its other progress lines, whatever the handout's
    said = t("run.progress.exporting", progress_lang or lang, notebook=stem, seconds=seconds)
    say("  " + said)
    if on_executed is not None:
        on_executed()
    if warm is not None:
        warm.close_soon()
    handout = export_html(executed, lang, exporter.get())
    seconds = time.perf_counter() - t0
    return NotebookResult(name, executed, handout, seconds, lang)


class _Exporter:
    """A handout's HTML exporter, made in a thread of its own while the notebook runs.

    nbconvert's import and its first export (templates compiled, Markdown and highlighting
    set up) took about 2.5 s after the notebook, on the run's critical path; the thread is
    as nice as the explorer's, so it takes the time the kernel leaves idle.
    """

    def __init__(self, lang: str) -> None:
        self._lang = lang
        self._made: Any = None
        self._thread = threading.Thread(target=self._make, name="handout-exporter", daemon=True)
        self._thread.start()

    def _make(self) -> None:
        with contextlib.suppress(OSError):
            nice = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice + BACKGROUND_NICE)
        # Any failure here is set aside: the export then makes its exporter itself and
        # reports a problem the usual way.
        with contextlib.suppress(Exception):
            import nbformat

            exporter = handout_exporter(self._lang)
            warm = nbformat.v4.new_notebook()
            warm.cells.append(nbformat.v4.new_code_cell("", outputs=[]))
            exporter.from_notebook_node(warm)
            self._made = exporter

    def get(self) -> Any:
        """The exporter made, or None."""
        self._thread.join()
        return self._made


def _local_kernel_manager(sockets: Path) -> type:
    """A kernel manager talking to the kernel over Unix sockets in ``sockets``.

    The default opens TCP ports on localhost and the kernel warns on stderr that the
    traffic is unencrypted; local sockets need no port and live in a private temporary folder.
    """

    from jupyter_client.manager import AsyncKernelManager

    class LocalSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(sockets / "kernel")
            # The connection file holds the kernel's signing key: keep it in the private
            # folder removed after the notebook, not in Jupyter's shared runtime folder.
            self.connection_file = str(sockets / "kernel.json")

        # (typed after KernelManager's blocking start_kernel, which the async class replaces)
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            # A Spark in the kernel writes the week's tables into this private folder,
            # removed after the notebook: its own clean-up at exit does not run once
            # papermill ends the kernel (engine.SPILL_ENV).
            env = dict(kw.pop("env", None) or os.environ)
            env[engine.SPILL_ENV] = str(sockets)
            await super().start_kernel(env=env, **kw)

    return LocalSocketKernelManager


# While cells run, the executed notebook is written at most this often (papermill writes
# it before and after every cell): each write serialises the whole notebook, charts and
# all, between two cells, while the kernel waits. At a million orders a week the data
# report's 78 writes took 1.4 s of the run. The end state is written in full as before.
NOTEBOOK_SAVE_SECONDS = 10.0


@functools.cache
def _papermill_engine() -> str:
    """The name of papermill's engine the runner executes with: nbclient's, writing the
    executed notebook while cells run only every NOTEBOOK_SAVE_SECONDS. Registered with
    papermill on first use (papermill is imported by the commands that run notebooks).

    The notebook is still written when the execution ends, whatever the outcome
    (papermill's notebook_complete): a failed or timed-out notebook is kept whole.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class SparseSaves(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            every = nb_man.save
            last = time.monotonic()

            def sparse(**kw: Any) -> None:
                nonlocal last
                if time.monotonic() - last >= NOTEBOOK_SAVE_SECONDS:
                    every(**kw)
                    last = time.monotonic()

            nb_man.save = sparse
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                # papermill's own end (notebook_complete) writes the final state
                nb_man.save = every

    papermill_engines.register(_PAPERMILL_ENGINE, SparseSaves)
    return _PAPERMILL_ENGINE


_PAPERMILL_ENGINE = "meetinglib"


# How long the warm kernel may take to start and import before the run gives up on it.
_WARM_SECONDS = 120.0


def _notebook_modules(source: Path) -> list[str]:
    """The modules the notebook's code cells import (``import x``, ``from x import y``)."""
    import nbformat

    modules: list[str] = []
    try:
        notebook = nbformat.read(source, as_version=4)
    except (OSError, ValueError):
        return modules
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: the notebook reports them itself
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.append(node.module)
    return list(dict.fromkeys(modules))


class _WarmKernel:
    """The first notebook's kernel, started while the runner loads the week.

    Starting a kernel and importing what the notebook imports (pandas, Ibis, matplotlib,
    the library) takes a few seconds that would otherwise follow the loading; here they
    overlap it, in another process. The imports are done silently, by module, so the
    notebook's namespace is untouched: its own cells then find the modules loaded. Any
    failure here is set aside: the notebook then starts its own kernel as it would have,
    and reports a problem the usual way.
    """

    def __init__(self, source: Path) -> None:
        from jupyter_core.utils import run_sync

        self.sockets = Path(tempfile.mkdtemp(prefix=f"{KERNEL_DIR_PREFIX}{os.getpid()}-"))
        self.km: Any = None
        self._session: _SessionPriority | None = None
        self._closing: threading.Thread | None = None
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            km = _local_kernel_manager(self.sockets)(kernel_name=KERNEL_NAME)
            run_sync(km.start_kernel)(cwd=str(source.parent))
        except Exception:
            self.close()
            return
        self.km = km
        # The kernel runs in a session of its own, to which Linux's autogroups give as much
        # of the machine as to the run's while it loads the week: its imports took one of
        # two cores from the load's engine. Until the notebook takes it, it yields.
        pid = getattr(km.provisioner, "pid", None)
        self._session = _SessionPriority(Path(f"/proc/{pid}/autogroup")) if pid else None
        # The notebook is read in the thread too: reading it imports nbformat, which the
        # load need not wait for.
        self._thread = threading.Thread(target=self._import, args=(km, source), daemon=True)
        self._thread.start()

    def _import(self, km: Any, source: Path) -> None:
        # Short waits in a loop, so that ``close`` ends this thread within a second.
        deadline = time.monotonic() + _WARM_SECONDS
        client = km.blocking_client()
        try:
            modules = _notebook_modules(source)
            client.start_channels()
            while True:
                try:
                    client.wait_for_ready(timeout=1)
                    break
                except RuntimeError:
                    if self._stop.is_set() or time.monotonic() > deadline:
                        return
            code = "".join(f"__import__({m!r})\n" for m in modules)
            sent = client.execute(code, silent=True, store_history=False)
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    reply = client.get_shell_msg(timeout=0.5)
                except queue.Empty:
                    continue
                if reply["parent_header"].get("msg_id") == sent:
                    self._ready = reply["content"].get("status") == "ok"
                    return
        except Exception:
            self._ready = False
        finally:
            client.stop_channels()

    def take(self) -> Any:
        """The kernel manager of the ready kernel, or None (the kernel is then shut down)."""
        from jupyter_core.utils import run_sync

        if self.km is None or self._thread is None:
            return None
        if self._session is not None:
            self._session.restore()  # the notebook's: the run's first place again
        self._thread.join(_WARM_SECONDS)
        if self._thread.is_alive() or not self._ready or not run_sync(self.km.is_alive)():
            self.close()
            return None
        return self.km

    def close_soon(self) -> None:
        """Begin shutting the kernel down as the notebook's kernel would be, in a thread:
        a kernel that held a large week takes a second or more to end (about 1 s at a
        million orders a week), which the run need not wait for before its last steps.
        ``close`` waits for it."""
        if self._closing is None:
            self._closing = threading.Thread(target=self.close, kwargs={"now": False}, daemon=True)
            self._closing.start()

    def close(self, now: bool = True) -> None:
        """Shut the kernel down (``now``: at once; else as the notebook's kernel would be)
        and remove its private folder; after ``close_soon``, wait for that instead."""
        from jupyter_core.utils import run_sync

        closing = self._closing
        if closing is not None and closing is not threading.current_thread():
            closing.join()
            return
        self._stop.set()
        km, self.km = self.km, None
        if km is not None:
            with contextlib.suppress(Exception):
                run_sync(km.shutdown_kernel)(now=now)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        shutil.rmtree(self.sockets, ignore_errors=True)


def _keep_failed(staging: Path, out_root: Path, stamp: str) -> Path:
    week = staging.name.split(".staging-")[0].lstrip(".")
    kept = out_root / f"{week}.failed-{stamp}"
    shutil.rmtree(staging / SNAPSHOT_DIR, ignore_errors=True)
    staging.rename(kept)
    return kept


def handout_exporter(lang: str) -> Any:
    """nbconvert's HTML exporter of a handout in ``lang``: code hidden, images embedded."""
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="handout",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        # Markdown cells are notes for notebook readers; handout text comes from the
        # library's outputs, which are translated.
        exclude_markdown=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        # nbconvert accepts ISO 639-1 codes only ("zh"); the page says zh-CN below.
        language_code=lang.split("-")[0],
    )


def export_html(notebook: Path, lang: str | None = None, exporter: Any = None) -> Path:
    """Export an executed notebook as a self-contained handout next to it.

    ``exporter``: a ``handout_exporter`` of the handout's language, made beforehand (None:
    made here)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    lang = lang or _notebook_language(nb)
    # The browser tab and the printed header say what this is, in the handout's language.
    week = nb.metadata.get("papermill", {}).get("parameters", {}).get("week")
    name = _title(notebook.stem.split(".")[0], lang)
    nb.metadata["title"] = f"{name} · {week}" if week else name
    for cell in nb.cells:
        # Warnings on stderr help when debugging the .ipynb, not in the meeting.
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
    if exporter is None or exporter.language_code != lang.split("-")[0]:
        exporter = handout_exporter(lang)
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace(f'<html lang="{lang.split("-")[0]}">', f'<html lang="{lang}">', 1)
    page = notebook.with_suffix(".html")
    page.write_text(with_csp(body), encoding="utf-8")
    return page


def _notebook_language(nb: nbformat.NotebookNode) -> str:
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    return params.get("lang") or "en"


def _write_quarantine(data: WeekData, folder: Path, lang: str = "en") -> None:
    """``quarantine/<table>.csv``: the rows set aside, each rule named in ``lang`` (the run's
    first language: one file per table serves every language of the run, as kpis.csv)."""
    frames = {k: v for k, v in data.quality.quarantined.items() if len(v)}
    if not frames:
        return
    qdir = folder / "quarantine"
    qdir.mkdir()
    for table, frame in frames.items():
        write_csv(quarantine_file(frame, lang), qdir / f"{table}.csv")


def _title(name: str, lang: str) -> str:
    key = f"notebook.{name}"
    try:
        return t(key, lang)
    except KeyError:
        return name.replace("_", " ").capitalize()


# The package's handouts, in the meeting's order.
_HANDOUTS = ("data_report", "issue_triage", "minutes")


def _carried_handouts(
    folder: Path, params: Params, results: list[NotebookResult], languages: Sequence[str]
) -> list[tuple[str, str, str]]:
    """(notebook, html file, language) of the handouts in ``folder`` carried over from the
    published week (``--notebook minutes`` after the full run): those of notebooks this
    run did not make, in the run's languages, in the notebooks' order."""
    made = {r.name for r in results}
    out = []
    for name in dict.fromkeys([*params.notebooks, *_HANDOUTS]):
        if name in made:
            continue
        for language in languages:
            html = folder / f"{handout_stem(name, language, languages)}.html"
            if html.is_file():
                out.append((name, html.name, html_lang(html) or language))
    return out


def _write_index(
    folder: Path,
    week: IsoWeek,
    params: Params,
    results: list[NotebookResult],
    languages: Sequence[str],
) -> Path:
    lang = languages[0]
    links: dict[str, list[tuple[str, str]]] = {}
    for r in results:
        links.setdefault(r.name, []).append((r.html.name, r.lang))
    for name, href, language in _carried_handouts(folder, params, results, languages):
        links.setdefault(name, []).append((href, language))
    known = list(dict.fromkeys([*params.notebooks, *_HANDOUTS, *links]))
    handouts = [
        {
            "title": _title(name, lang),
            "links": [
                {"href": href, "lang": lg, "label": t("index.open_in", lg)}
                for href, lg in links[name]
            ],
        }
        for name in known
        if name in links
    ]
    published = {href for found in links.values() for href, _ in found} | {"index.html"}
    extras = [
        p.name
        for p in sorted(folder.iterdir())
        if p.suffix in (".csv", ".ics", ".json", ".html", ".eml", ".txt")
        and p.name not in published
    ]
    # the rows validation set aside, one file per table: what a reader checks first
    extras += [f"{p.parent.name}/{p.name}" for p in sorted(folder.glob("quarantine/*.csv"))]
    generated = t(
        "index.generated",
        lang,
        when=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        params=", ".join(p.name for p in params.files),
    )
    title = t("index.title", lang, week=week)
    text = page(
        "index.html.j2",
        lang=lang,
        title=title,
        company=params.company,
        handouts=handouts,
        extras=extras,
        generated=generated,
    )
    index = folder / "index.html"
    index.write_text(with_csp(text), encoding="utf-8")
    return index


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "meetinglib": __version__}
    for pkg in ("pandas", "numpy", "pyarrow", "matplotlib", "papermill", "nbconvert", "ipykernel"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _write_manifest(
    folder: Path,
    data: WeekData,
    params: Params,
    results: list[NotebookResult],
    timings: dict[str, float],
    languages: Sequence[str],
    *,
    left_out: dict[str, str] | None = None,
    explorer_data: str | None = None,
    report_warnings: Sequence[str] = (),
) -> Path:
    manifest = {
        "warnings": run_warnings(),
        # what the data report warns of on page one (incomplete week, rows set aside)
        "data_warnings": list(report_warnings),
        "sections_left_out": dict(left_out or {}),
        "week": str(data.week),
        "window": {"start": data.window.start.isoformat(), "end": data.window.end.isoformat()},
        "generated_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "language": languages[0],
        "languages": list(languages),
        "params_files": [{"path": str(p), "sha256": _sha256(p)} for p in params.files],
        "parameters": params.model_dump(mode="json"),
        "inputs": [
            {
                "table": s.table,
                "location": s.location,
                "format": s.format,
                "rows": s.rows,
                "sha256": s.sha256,
                # How the table was validated: on the engine or as rows in pandas.
                "validated_on": data.load_paths.get(s.table),
            }
            for s in data.sources
        ],
        "quality": {
            "loaded": data.quality.loaded,
            "kept": data.quality.kept,
            "quarantined": [
                {
                    "table": e.table,
                    "source": e.source,
                    "column": e.column,
                    "rule": e.rule,
                    "rows": e.rows,
                }
                for e in data.quality.entries
            ],
        },
        "handouts": [
            {
                "name": r.name,
                "lang": r.lang,
                "html": r.html.name,
                "notebook": r.notebook.name,
                "seconds": round(r.seconds, 2),
            }
            for r in results
        ],
        # the week's handouts this run did not make, kept from the published week
        "handouts_carried_over": [
            {"name": name, "lang": language, "html": html}
            for name, html, language in _carried_handouts(folder, params, results, languages)
        ],
        # the explorer's saved tables of the week (None: not saved by this run)
        "explorer_data": explorer_data,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        "versions": _versions(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    manifest = redact_tree(manifest)  # a URL's credentials never reach the manifest
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


# Written by every run from scratch; an old copy must not survive a new run.
_RUN_OUTPUTS = frozenset({SNAPSHOT_DIR, "quarantine", "manifest.json", "index.html"})


def _carry_over(final: Path, staging: Path, ran: set[str]) -> None:
    """Keep files of the published week that this run does not produce.

    The agenda, the invite and the notice are written by `meeting agenda` before the
    meeting, not by the notebooks; re-running the handouts must not lose them, nor the
    handouts of notebooks this run did not execute (``--notebook minutes``). A notebook
    it ran (``ran``) leaves none of its earlier handouts: one in a language this run did
    not render would show the figures of earlier data or params beside the new ones.
    """
    if not final.is_dir():
        return
    for item in final.iterdir():
        if item.name in _RUN_OUTPUTS or (staging / item.name).exists():
            continue
        if item.suffix in (".html", ".ipynb") and item.name.split(".")[0] in ran:
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name)
        else:
            shutil.copy2(item, staging / item.name)


# Exit codes of the library's errors a notebook relays as they are (NotebookStoppedError).
_RELAYED_EXIT_CODES = frozenset({EXIT_PARAMS, EXIT_INPUT, EXIT_ENVIRONMENT, EXIT_SECTION})

KERNEL_DIR_PREFIX = "meetinglib-kernel-"
_PID_IN_NAME = re.compile(r"-(\d+)(?:-[^-]*)?$")


@contextlib.contextmanager
def _environment(path: Path) -> Iterator[None]:
    """Turn a read-only folder or a full disk under ``path`` into its own error (exit 5)."""
    try:
        yield
    except OSError as exc:
        env = environment_error(exc, exc.filename or path)
        if env is None:
            raise
        raise env from None


def _environment_in_cell(ename: str, evalue: str, staging: Path) -> MeetingError | None:
    """The environment error a notebook cell's OSError stands for (None: a real failure)."""
    match = re.match(r"\[Errno (\d+)\]", evalue or "")
    if ename not in ("OSError", "PermissionError") or match is None:
        return None
    return environment_error(OSError(int(match.group(1)), evalue), staging)


@contextlib.contextmanager
def _week_lock(
    out_root: Path, week: str, wait: float, say: Progress, lang: str = "en"
) -> Iterator[None]:
    """Hold the week's lock (outputs/.<week>.lock) for the run; wait up to ``wait`` s,
    saying so once in ``lang``.

    An OS lock (flock): it is released when the process ends, even by kill -9, so a
    dead run never blocks the next one. The file is removed on release; a waiter that
    locked a removed file sees it and tries again.
    """
    lock = out_root / f".{week}.lock"
    deadline = time.monotonic() + wait
    told = False
    while True:
        with _environment(lock):
            fh = open(lock, "a+")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                fh.close()
                raise
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            fh.close()
            if time.monotonic() >= deadline:
                raise RunLockedError(week, lock, holder, wait) from None
            if not told:
                say(t("run.progress.waiting_lock", lang, week=week, holder=holder, lock=lock))
                told = True
            time.sleep(0.2)
            continue
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the holder removed this file as we locked it: lock the new one
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {dt.datetime.now().isoformat(timespec='seconds')}")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        fh.close()  # closing releases the lock


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM during the run unwinds like Ctrl-C, so staging and kernel files are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale(out_root: Path, week: str) -> None:
    """Remove what dead runs left: staging copies (with their data snapshot), half-swapped
    old folders, kernel connection folders and Spark's copies of the week's tables.

    Called with the week's lock held, so every staging or old folder of this week is a
    dead run's; other weeks' folders go only when the process that made them is gone.
    """
    for item in out_root.glob(".*.staging-*"):
        pid = _PID_IN_NAME.search(item.name)
        if item.name.startswith(f".{week}.") or (pid and not alive(int(pid.group(1)))):
            shutil.rmtree(item, ignore_errors=True)
    for item in out_root.glob(f".{week}.old-*"):
        shutil.rmtree(item, ignore_errors=True)
    remove_orphans(KERNEL_DIR_PREFIX)
    engine.remove_stale_spills()  # a dead process's copies of a week's tables for Spark


def _publish(staging: Path, final: Path) -> None:
    """Swap the staging folder in as the week's folder.

    Both folders live in the same parent, so each step is a rename: readers see the
    old handouts or the new ones, never a half-written mix.
    """
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        final.rename(old)
    try:
        staging.rename(final)
    except OSError:
        if old is not None:
            old.rename(final)
        raise NotebookError(f"could not publish {staging} as {final}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_params_file() -> Path:
    """The params used when none are given: the demo's (``params/demo.yaml``)."""
    return demo_params_file()
