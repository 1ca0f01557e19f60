"""Shared fixtures: one small sample, generated once per test session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
SAMPLE_WEEK = "2026-W47"


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist each worker leads a session of its own: with Linux autogroups a
    # run lowers its whole session's priority while the notebooks run (runner's
    # _SessionPriority), which must not show in another worker's test of it.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        with contextlib.suppress(OSError):
            os.setsid()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The scheduler below tells a Spark test by its name: one that is not named so would
    # start a Java session of its own on the other worker. Each is marked `spark` (for
    # -m "not spark") before the marks select.
    for item in items:
        if "spark_engine" not in getattr(item, "fixturenames", ()):
            continue
        if not _spark(item.nodeid):
            raise pytest.UsageError(f"{item.nodeid} uses spark_engine: put 'spark' in its name")
        item.add_marker(pytest.mark.spark)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it, not called
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (`make test`): a file's tests on one worker, so its module-scoped
    runs (the handouts, a week's data) are made once; the Spark tests of every file on one
    worker, so one Java session starts, not one per worker.

    pytest-xdist groups by suffixing each node id with the test's ``xdist_group`` mark,
    which pytest 9's node ids no longer take: its own grouping split every file across the
    workers (two 80-second runs of the browser tests' handouts, one per worker). The
    groups are therefore given by the ids as they are.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrSpark(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "spark" if _spark(nodeid) else nodeid.split("::", 1)[0]

    return FileOrSpark(config, log)


def _spark(nodeid: str) -> bool:
    """Whether a test is one of the Spark tests, by its name."""
    return "spark" in nodeid.split("::", 1)[-1].lower()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def require(found: bool, why: str) -> None:
    """Skip with ``why`` locally; fail under CI=true, where the project installs everything."""
    if found:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why}; CI must have it (make install / make system-deps install it)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one for the test process.

    Playwright's sync API refuses to start while another of its sessions is open in the
    process, and the browser suites of several files may run on one worker: they share
    this one, each page in a context of its own.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed (pip install -e '.[test]')")
    require(
        CHROMIUM.exists(),
        f"Chromium not found at {CHROMIUM} (make system-deps, or apt-get install chromium)",
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session", autouse=True)
def _source_cache(tmp_path_factory):
    """CSV and XLSX sources are converted into the session's folder, not the user's cache."""
    os.environ["MEETINGLIB_CACHE_DIR"] = str(tmp_path_factory.mktemp("source_cache"))


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """A 4-week sample ending 2026-W47 with the incidents (small, a few seconds)."""
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("sample")
    return generate_sample(folder, weeks=4, orders_per_week=1500, seed=11, end_week=SAMPLE_WEEK)


@pytest.fixture(scope="session")
def quiet_sample(tmp_path_factory):
    """The same sample without the injected incidents."""
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("quiet_sample")
    return generate_sample(
        folder, weeks=4, orders_per_week=1500, seed=11, end_week=SAMPLE_WEEK, incidents=False
    )


@pytest.fixture(scope="session")
def long_sample(tmp_path_factory):
    """10 weeks x 2,000 orders ending 2026-W47 with the incidents: history for the
    anomaly rules (the first weeks and a promotion week included)."""
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("long_sample")
    return generate_sample(folder, weeks=10, orders_per_week=2000, seed=11, end_week=SAMPLE_WEEK)


@pytest.fixture(scope="session")
def long_quiet_sample(tmp_path_factory):
    """The same 10-week sample without the injected incidents."""
    from meetinglib.data.sample import generate_sample

    folder = tmp_path_factory.mktemp("long_quiet_sample")
    return generate_sample(
        folder, weeks=10, orders_per_week=2000, seed=11, end_week=SAMPLE_WEEK, incidents=False
    )


def write_params(folder: Path, source: Path, **extra: str) -> Path:
    """A params file over the sample, writing its outputs and its store under ``folder``."""
    default_store = "{path: '%s'}" % (folder / "meeting.db")
    lines = [
        "company: Test Shop",
        "timezone: Asia/Shanghai",
        f"history_weeks: {extra.pop('history_weeks', 3)}",
        f"source: {{kind: folder, path: '{source}'}}",
        f"notebooks_dir: '{extra.pop('notebooks_dir', ROOT / 'meetinglib' / 'notebooks')}'",
        f"output_dir: '{folder / 'outputs'}'",
        f"store: {extra.pop('store', default_store)}",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path = folder / "params.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sample_params(tmp_path, sample) -> Path:
    return write_params(tmp_path, sample.folder)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server started for the session (see tests/pgserver.py).

    Skipped with the reason when none can start here; under CI=true that fails instead.
    """
    from tests import pgserver

    try:
        server = pgserver.start()
    except pgserver.Unavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request, tmp_path) -> str:
    """The URL of an empty store database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meeting.db'}"
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture(scope="session")
def spark_engine():
    """An Ibis backend on a local Spark session, started once for the run (tests/sparkutil).

    Skipped with what to install when pyspark or Java is missing; under CI=true that fails.
    """
    from meetinglib.data import engine
    from tests import sparkutil

    session = sparkutil.start()
    # the library's backend on it, as `engine: spark` makes it
    yield engine.spark_backend(session)
    session.stop()


def cut_week(source: Path, folder: Path, week: str, hours: float, tz: str = "Asia/Shanghai"):
    """A copy of the sample in ``source`` whose orders stop ``hours`` into ``week`` (an
    export taken early in the week); returns the orders kept."""
    import shutil

    import pandas as pd

    from meetinglib.core.weeks import IsoWeek

    shutil.copytree(source, folder)
    orders = pd.read_parquet(folder / "orders.parquet")
    cut = IsoWeek.parse(week).start(tz) + pd.Timedelta(hours=hours)
    orders = orders[orders["created_at"] < cut]
    orders.to_parquet(folder / "orders.parquet", index=False)
    return orders
