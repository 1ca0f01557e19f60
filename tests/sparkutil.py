"""A local Spark for the engine tests: one small, quiet session for the whole test run.

pyspark comes with the ``test`` extra; Java from the system (Debian:
openjdk-17-jre-headless, which ``make system-deps`` installs when run as root). Without
them the Spark tests skip saying what to install, except on CI (``CI=true``), where the
project installs everything and a missing piece is a failure.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from meetinglib.core.errors import EngineUnavailableError
from meetinglib.data.engine import EngineSettings, spark_session

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


def start() -> Any:
    """A local[2] SparkSession in UTC with 1 GB for the driver, logging errors only."""
    try:
        session = spark_session(SETTINGS)
    except EngineUnavailableError as exc:
        unavailable(f"{exc.problem} (make install sets up both, Java when run as root)")
    session.sparkContext.setLogLevel("ERROR")
    return session
