"""A throwaway PostgreSQL server for the tests, started from Debian's binaries.

``initdb`` into a fresh folder and ``pg_ctl start`` on 127.0.0.1 with a free port;
PostgreSQL refuses to run as root, so as root both run as the ``postgres`` user, in a
folder it owns. Each test gets a database of its own (``new_database``). fsync is off:
the server is thrown away after the session, durability is not what is tested.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise Unavailable(
            "no PostgreSQL under /usr/lib/postgresql/*/bin; install Debian's postgresql "
            "(make system-deps does as root)"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A running server; ``url(name)`` is a SQLAlchemy URL of one of its databases."""

    def __init__(self, folder: Path, port: int, bindir: Path, run_as: list[str]):
        self.folder, self.port, self.bindir, self.run_as = folder, port, bindir, run_as
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database on the server."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        data = self.folder / "data"
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
             "stop"],
            capture_output=True,
            check=False,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> PgServer:
    """Start a server in a new temporary folder; Unavailable when it cannot."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable(
            "the psycopg driver is not installed (pip install -e '.[test]')"
        ) from None
    bindir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="meetinglib-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise Unavailable("running as root without runuser to start PostgreSQL as postgres")
        try:
            shutil.chown(folder, "postgres", "postgres")
        except (LookupError, PermissionError) as exc:
            raise Unavailable(f"cannot hand {folder} to the postgres user: {exc}") from None
        run_as = ["runuser", "-u", "postgres", "--"]
    data, log, port = folder / "data", folder / "server.log", _free_port()
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--no-locale"],
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off "
         "-c synchronous_commit=off -c max_connections=120", "start"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run([*run_as, *step], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            if log.exists():
                detail += log.read_text(errors="replace").strip().splitlines()[-3:]
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable(f"{Path(step[0]).name} failed: {' | '.join(detail)}")
    return PgServer(folder, port, bindir, run_as)


def copy_tables(url: str, tables: dict) -> None:
    """Frames into new tables of the database at ``url``: typed by pandas' DDL (categories
    as text), rows by COPY (much faster than INSERTs)."""
    import io

    import pandas as pd
    import psycopg
    import sqlalchemy as sa

    plain = {
        name: frame.astype(
            {c: "str" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
        )
        for name, frame in tables.items()
    }
    db = sa.engine.make_url(url)
    engine = sa.create_engine(url)
    for name, frame in plain.items():
        frame.head(0).to_sql(name, engine, index=False)
    engine.dispose()
    with (
        psycopg.connect(host=db.host, port=db.port, user=db.username, dbname=db.database) as conn,
        conn.cursor() as cur,
    ):
        for name, frame in plain.items():
            text = io.StringIO()
            frame.to_csv(text, index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
            with cur.copy(f'COPY "{name}" FROM STDIN WITH (FORMAT csv)') as copy:
                copy.write(text.getvalue())
