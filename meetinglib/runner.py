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

import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from meetinglib._version import __version__
from meetinglib.core.csp import with_csp
from meetinglib.core.csvsafe import to_csv as write_csv
from meetinglib.core.errors import (
    NotebookError,
    NotebookExecutionError,
    NotebookNotFoundError,
    SectionError,
)
from meetinglib.core.i18n import t
from meetinglib.core.params import Params, demo_params_file, load_params
from meetinglib.core.weeks import IsoWeek
from meetinglib.data.dataset import WeekData, load_week
from meetinglib.meeting.minutes import has_minutes
from meetinglib.report.charts import cjk_font
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


def handout_stem(name: str, lang: str, languages: Sequence[str]) -> str:
    """The file stem of a handout: the first language keeps the plain name, the others get
    their language as a suffix (``data_report`` / ``data_report.en``)."""
    return name if not languages or lang == languages[0] else f"{name}.{lang}"


@dataclass
class RunResult:
    week: IsoWeek
    folder: Path
    index: Path
    manifest: Path
    notebooks: list[NotebookResult] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # optional sections left out, why


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
    say = progress or _quiet
    started = time.perf_counter()
    timings: dict[str, float] = {}
    params = load_params(*params_files)
    names = list(notebooks or params.notebooks)
    # --lang asks for one language; otherwise every language the params list, first one
    # primary (its files keep their plain names).
    languages = [lang] if lang else list(params.handout_languages)
    lang = languages[0]
    sources = [_notebook_path(params, name) for name in names]

    t0 = time.perf_counter()
    say("loading and validating data")
    data = load_week(params, week, progress=lambda msg: say(f"  {msg}"))
    timings["load"] = time.perf_counter() - t0
    # Sections the data and params cannot support fail the run before any notebook starts,
    # unless params mark them optional (then the handout shows a box and the run lists them).
    left_out = check_sections(data, names)
    for section, reason in left_out.items():
        say(f"section '{section}' left out (optional): {reason}")
    # The minutes handout exists only once a meeting has been recorded for the week.
    if notebooks is None and "minutes" not in names and has_minutes(params, data.week):
        names.append("minutes")
        sources.append(_notebook_path(params, "minutes"))

    out_root = Path(params.output_dir).resolve()  # the kernels run in another folder
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    staging = out_root / f".{data.week}.staging-{stamp}-{os.getpid()}"
    staging.mkdir()
    try:
        t0 = time.perf_counter()
        snapshot = staging / SNAPSHOT_DIR
        data.save(snapshot)
        _write_quarantine(data, staging)
        # The notebooks read the snapshot; holding the tables here too would double the
        # peak memory of a large week while the kernels run.
        data.tables.clear()
        gc.collect()
        timings["snapshot"] = time.perf_counter() - t0

        results = []
        jobs = [(n, s, g) for n, s in zip(names, sources, strict=True) for g in languages]
        for i, (name, source, language) in enumerate(jobs, start=1):
            stem = handout_stem(name, language, languages)
            say(f"[{i}/{len(jobs)}] {stem}: executing")
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
                    # Machine-readable files (kpis.csv, ...) go beside the handouts, written
                    # by the notebook from the same computation as its figures; once, by
                    # the first language's run.
                    "out_dir": str(staging) if language == lang else None,
                    **(extra_parameters or {}),
                },
                say=say,
                stem=stem,
                lang=language,
            )
            results.append(result)
            timings[stem] = result.seconds
        shutil.rmtree(snapshot)

        timings["total"] = time.perf_counter() - started
        final = out_root / str(data.week)
        _carry_over(final, staging)
        manifest = _write_manifest(
            staging, data, params, results, timings, languages, left_out=left_out
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
    return RunResult(data.week, final, final / index.name, final / manifest.name, moved, left_out)


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
    path = folder / f"{name}.ipynb"
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
) -> NotebookResult:
    stem = stem or name
    executed = staging / f"{stem}.ipynb"
    t0 = time.perf_counter()
    sockets = Path(tempfile.mkdtemp(prefix="meetinglib-kernel-"))
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            progress_bar=sys.stderr.isatty(),
            cwd=str(source.parent),
            log_output=False,
            kernel_manager_class=_local_kernel_manager(sockets),
        )
    except PapermillExecutionError as exc:
        kept = _keep_failed(staging, out_root, stamp)
        if exc.ename == "SectionError":
            # A section that cannot be computed: its own exit code, not a notebook bug.
            raise SectionError.from_message(
                f"{exc.evalue} (notebook kept at {kept / executed.name})"
            ) from None
        cell = f"cell [{exc.exec_count}]" if exc.exec_count else f"cell #{exc.cell_index}"
        first_line = (exc.source or "").strip().splitlines()[:1]
        where = f"{cell} ({first_line[0][:80]!r})" if first_line else cell
        raise NotebookExecutionError(
            name, where, f"{exc.ename}: {exc.evalue}", str(kept / executed.name)
        ) from None
    except Exception as exc:  # kernel died, timeout, bad notebook JSON
        kept = _keep_failed(staging, out_root, stamp)
        raise NotebookExecutionError(
            name, "start-up", f"{type(exc).__name__}: {exc}", str(kept / executed.name)
        ) from None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    say(f"  {stem}: executed in {time.perf_counter() - t0:.1f} s; exporting HTML")
    handout = export_html(executed, lang)
    seconds = time.perf_counter() - t0
    return NotebookResult(name, executed, handout, seconds, lang)


def _local_kernel_manager(sockets: Path) -> type:
    """A kernel manager talking to the kernel over Unix sockets in ``sockets``.

    The default opens TCP ports on localhost and the kernel warns on stderr that the
    traffic is unencrypted; local sockets need no port and live in a private temporary folder.
    """

    class LocalSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(sockets / "kernel")

    return LocalSocketKernelManager


def _keep_failed(staging: Path, out_root: Path, stamp: str) -> Path:
    week = staging.name.split(".staging-")[0].lstrip(".")
    kept = out_root / f"{week}.failed-{stamp}"
    shutil.rmtree(staging / SNAPSHOT_DIR, ignore_errors=True)
    staging.rename(kept)
    return kept


def export_html(notebook: Path, lang: str | None = None) -> Path:
    """Export an executed notebook as a self-contained handout next to it."""

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
    exporter = HTMLExporter(
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
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace(f'<html lang="{lang.split("-")[0]}">', f'<html lang="{lang}">', 1)
    page = notebook.with_suffix(".html")
    page.write_text(with_csp(body), encoding="utf-8")
    return page


def _notebook_language(nb: nbformat.NotebookNode) -> str:
    params = nb.metadata.get("papermill", {}).get("parameters", {})
    return params.get("lang") or "en"


def _write_quarantine(data: WeekData, folder: Path) -> None:
    frames = {k: v for k, v in data.quality.quarantined.items() if len(v)}
    if not frames:
        return
    qdir = folder / "quarantine"
    qdir.mkdir()
    for table, frame in frames.items():
        write_csv(frame, qdir / f"{table}.csv")


def _title(name: str, lang: str) -> str:
    key = f"notebook.{name}"
    try:
        return t(key, lang)
    except KeyError:
        return name.replace("_", " ").capitalize()


def _write_index(
    folder: Path,
    week: IsoWeek,
    params: Params,
    results: list[NotebookResult],
    languages: Sequence[str],
) -> Path:
    lang = languages[0]
    names = list(dict.fromkeys(r.name for r in results))
    handouts = [
        {
            "title": _title(name, lang),
            "links": [
                {"href": r.html.name, "lang": r.lang, "label": t("index.open_in", r.lang)}
                for r in results
                if r.name == name
            ],
        }
        for name in names
    ]
    published = {r.html.name for r in results} | {"index.html"}
    extras = [
        p.name
        for p in sorted(folder.iterdir())
        if p.suffix in (".csv", ".ics", ".json", ".html", ".eml", ".txt")
        and p.name not in published
    ]
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
) -> Path:
    manifest = {
        "warnings": run_warnings(),
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
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        "versions": _versions(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


# Written by every run from scratch; an old copy must not survive a new run.
_RUN_OUTPUTS = frozenset({SNAPSHOT_DIR, "quarantine", "manifest.json", "index.html"})


def _carry_over(final: Path, staging: Path) -> None:
    """Keep files of the published week that this run does not produce.

    The agenda, the invite and the notice are written by `meeting agenda` before the
    meeting, not by the notebooks; re-running the handouts must not lose them.
    """
    if not final.is_dir():
        return
    for item in final.iterdir():
        if item.name in _RUN_OUTPUTS or (staging / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name)
        else:
            shutil.copy2(item, staging / item.name)


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
