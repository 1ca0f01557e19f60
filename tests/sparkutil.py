"""A local Spark for the engine tests: one small, quiet session for the whole test run.

pyspark comes with the ``test`` extra; Java from the system (Debian:
openjdk-17-jre-headless, which ``make system-deps`` installs when run as root). Without
them the Spark tests skip saying what to install, except on CI (``CI=true``), where the
project installs everything and a missing piece is a failure.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from meetinglib.core.errors import EngineUnavailableError, MeetingError
from meetinglib.data.engine import EngineSettings, check_spark, spark_session

SETTINGS = EngineSettings(
    kind="spark",
    spark_master="local[2]",
    spark_conf={
        "spark.driver.memory": "1g",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
    },
)


def in_ci() -> bool:
    """Whether the tests run on CI, where every system piece must be there."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip with ``reason`` locally; fail on CI."""
    if in_ci():
        pytest.fail(f"the Spark tests must run on CI: {reason}")
    pytest.skip(f"Spark tests skipped: {reason}")


def require() -> None:
    """Skip unless pyspark and a Java runtime are here (fail on CI): for the tests that
    start Spark in a process of their own."""
    try:
        check_spark()
    except EngineUnavailableError as exc:
        unavailable(f"{exc.problem} (make install sets up both, Java when run as root)")


def start_alone(settings: EngineSettings) -> None:
    """Start Spark with ``settings`` in a new process, which ends with it; its error is
    raised here. A process has one driver JVM: in this one a Spark test's may be up, and
    a session would reuse it whatever ``settings`` say."""
    require()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        pool.submit(_start_and_stop, settings).result()


def _start_and_stop(settings: EngineSettings) -> None:
    try:
        spark_session(settings).stop()
    except MeetingError:
        raise
    except Exception as exc:  # pyspark's and py4j's errors do not cross processes
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None


def start() -> Any:
    """A local[2] SparkSession in UTC with 1 GB for the driver, logging errors only."""
    try:
        session = spark_session(SETTINGS)
    except EngineUnavailableError as exc:
        unavailable(f"{exc.problem} (make install sets up both, Java when run as root)")
    session.sparkContext.setLogLevel("ERROR")
    return session
