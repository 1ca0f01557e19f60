"""Exceptions of meetinglib: one base class, one subclass per failure.

Every message says what is wrong and how to fix it. Each family carries the exit
code the command line returns, so scripts can tell bad parameters from bad input
data from a failing notebook.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_PARAMS = 2
EXIT_INPUT = 3
EXIT_NOTEBOOK = 4
# The machine, not the input: read-only or full disk, a locked store, a missing driver.
EXIT_ENVIRONMENT = 5
# Another run of the same week holds its lock and did not finish within the wait.
EXIT_BUSY = 6
# A report section cannot be computed (and params do not mark it optional).
EXIT_SECTION = 7
# The reader of the output stopped early (``meeting ... | head``): 128 + SIGPIPE, as a
# shell reports a program the signal ended; nothing went wrong.
EXIT_BROKEN_PIPE = 141


class MeetingError(Exception):
    """Base class of every error meetinglib raises on purpose."""

    exit_code = EXIT_UNEXPECTED


# --- parameters -------------------------------------------------------------------


class ParamsError(MeetingError):
    """The parameters (YAML files or command-line options) are wrong."""

    exit_code = EXIT_PARAMS


class ParamsFileError(ParamsError):
    """A params file is missing or is not valid YAML."""


class UnknownParamError(ParamsError):
    """A params file has a key meetinglib does not know (often a typo)."""

    def __init__(self, file: str, key: str, known: list[str]):
        self.file, self.key, self.known = file, key, known
        super().__init__(
            f"unknown key '{key}' in {file}; known keys here: {sorted(known)}. "
            "Fix the spelling or remove the key."
        )


class MissingParamError(ParamsError):
    """A params file lacks a key that has no default."""

    def __init__(self, file: str, key: str):
        self.file, self.key = file, key
        super().__init__(
            f"missing key '{key}' in {file}; add it (every key is documented in "
            "meetinglib/defaults/params.yaml; `meeting init` writes a complete file)."
        )


class InvalidParamError(ParamsError):
    """A params value has the wrong type or is out of range."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"invalid value for '{key}' in {file}: {problem}")


class EngineDatabaseError(ParamsError):
    """engine.kind 'source' names a database the KPIs cannot be computed inside."""

    def __init__(self, database: str, shown: str, why: str, supported: list[str]):
        self.database = database
        super().__init__(
            f"engine.kind 'source' cannot compute the KPIs inside {database} ({shown})"
            f"{': ' + why if why else ''}. Set 'engine: {{kind: duckdb}}' (the default), which "
            "reads the database's rows and computes beside it; inside the database, "
            f"PostgreSQL is tested, and the expressions compile for {', '.join(supported)}."
        )


class UnsafeNameError(ParamsError):
    """An identifier that becomes a file name (department, week, ...) is not safe."""

    def __init__(self, what: str, value: object, rule: str):
        self.what, self.value, self.rule = what, value, rule
        super().__init__(
            f"{what} {value!r} cannot be used as a file name: {rule}. "
            "Use letters, digits, '_' and '-' only (no path separators, no leading dot)."
        )


class SecretInParamsError(ParamsError):
    """A params file holds a credential (in a URL's user info or query string)."""


class WeekFormatError(ParamsError):
    """A week is not written as an ISO week like 2026-W47."""

    def __init__(self, text: object):
        super().__init__(
            f"week {text!r} is not an ISO week; write it as YYYY-Www, for example 2026-W47."
        )


# --- input data -----------------------------------------------------------------


class OutputExistsError(ParamsError):
    """A file would be overwritten without --force."""


class SectionError(MeetingError):
    """A report section cannot be computed from the data and params."""

    exit_code = EXIT_SECTION

    def __init__(self, section: str, reason: str):
        self.section, self.reason = section, reason
        super().__init__(
            f"report section '{section}' cannot be computed: {reason.rstrip('.')}. Fix the "
            f"params or the data, or list '{section}' under optional_sections in the params "
            "to publish the handouts without it."
        )


class InputDataError(MeetingError):
    """The input data cannot be used as it is."""

    exit_code = EXIT_INPUT


class SourceNotFoundError(InputDataError):
    """A configured file, folder or database table does not exist."""


class UnreadableSourceError(InputDataError):
    """A file exists but cannot be decoded or parsed (wrong encoding, corrupt file)."""


class MissingColumnError(InputDataError):
    """A required canonical column is absent from a source."""

    def __init__(
        self,
        source: str,
        column: str,
        found: list[str],
        mapped: list[str] | None = None,
        key: str = "",
        hint: str = "",
    ):
        """``mapped``: the company's names the params map onto ``column`` (none of which
        the source has), under the params key ``key`` (source.tables.<table>.columns);
        ``hint``: another fix, said after the message (the names read from a title row:
        set ``header_row``)."""
        self.source, self.column, self.found = source, column, found
        after = f" {hint}" if hint else ""
        if mapped:
            names = ", ".join(f"'{m}'" for m in mapped)
            super().__init__(
                f"column '{column}' not in {source}: the params map {names} onto it, and the "
                f"source has no column of that name; columns found: {found}. Correct the "
                f"name under {key or 'columns in the params mapping'}.{after}"
            )
            return
        super().__init__(
            f"column '{column}' not in {source}; columns found: {found}. "
            f"Map the company's column name onto it under 'columns' in the params mapping.{after}"
        )


class TooManyQuarantinedError(InputDataError):
    """More rows failed validation than the params allow to set aside."""


class SourceChangedError(InputDataError):
    """The source database changed between loading the week and computing a handout."""


class DamagedSnapshotError(InputDataError):
    """A week's snapshot holds files that meetinglib did not write as they are (altered,
    or made by hand): its tables are not read."""


class NoDataError(InputDataError):
    """The requested week has no data in the source."""


class AmbiguousDatesError(InputDataError):
    """Dates like 09/11/2026 read day-first or month-first, and no value tells which."""


# --- notebooks and handouts -----------------------------------------------------


class NotebookError(MeetingError):
    """A notebook failed while executing or exporting."""

    exit_code = EXIT_NOTEBOOK


class NotebookNotFoundError(ParamsError):
    """A configured notebook does not exist in the notebooks folder (a params problem)."""


class NotebookExecutionError(NotebookError):
    """A cell of a notebook raised an error under papermill."""

    def __init__(self, notebook: str, cell: str, error: str, kept_at: str):
        self.notebook, self.cell, self.error, self.kept_at = notebook, cell, error, kept_at
        super().__init__(
            f"notebook '{notebook}' failed in {cell}: {error.rstrip('.')}. "
            f"The executed notebook is kept at {kept_at} for debugging; "
            "the previously published handouts of this week are unchanged."
        )


class NotebookStoppedError(MeetingError):
    """A notebook's cell stopped on one of meetinglib's own errors about the params, the
    data, the machine or a report section (``error``, by its class name): the notebook
    is not at fault, so the run exits with that error's code and message."""

    def __init__(self, notebook: str, error: str, message: str, exit_code: int, kept_at: str):
        self.notebook, self.error, self.kept_at = notebook, error, kept_at
        self.exit_code = exit_code
        super().__init__(
            f"{message.rstrip('.')} ({error}, in notebook '{notebook}'). The executed "
            f"notebook is kept at {kept_at}; the previously published handouts of this "
            "week are unchanged."
        )


def error_class(name: str) -> type[MeetingError] | None:
    """meetinglib's error class called ``name`` (None: not one of ours)."""
    found: list[type[MeetingError]] = [MeetingError]
    for cls in found:
        if cls.__name__ == name:
            return cls
        found.extend(cls.__subclasses__())
    return None


# --- the environment --------------------------------------------------------------


class EnvironmentProblem(MeetingError):
    """The machine stops the run: no permission, no space, a lock, a missing driver.

    The message names the path (or resource) and the remedy; nothing published is
    changed by the failure.
    """

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, path: object, problem: str, remedy: str):
        self.path, self.problem, self.remedy = str(path), problem, remedy
        super().__init__(f"{problem}: {path}. {remedy}")


class NotWritableError(EnvironmentProblem):
    """A folder or file to be written is read-only or not permitted."""

    def __init__(self, path: object, detail: str = ""):
        super().__init__(
            path,
            "cannot write here (read-only or no permission"
            + (f"; {detail}" if detail else "")
            + ")",
            "Make the folder writable for this user or point 'output_dir' (or --out) elsewhere.",
        )


class DiskFullError(EnvironmentProblem):
    """The disk (or quota) holding a folder to be written is full."""

    def __init__(self, path: object):
        super().__init__(
            path,
            "no space left on the device holding",
            "Free some space (old outputs/<week>.failed-* folders can go) and run again.",
        )


class StoreLockedError(EnvironmentProblem):
    """The meeting store stayed locked by another writer beyond the busy timeout."""

    def __init__(self, path: object, seconds: float):
        super().__init__(
            path,
            f"the meeting store stayed locked by another process for {seconds:g} s",
            "Wait for the other command to finish and run again, or raise 'store.busy_timeout'.",
        )


class MailNotSentError(EnvironmentProblem):
    """The SMTP server cannot be reached, or refuses the login: nothing was sent."""


class SourceUnreachableError(EnvironmentProblem):
    """The source database refuses the connection (server down, login refused, no such
    database), as a meeting store or an SMTP server that cannot be reached is."""

    def __init__(self, url: object, detail: str):
        self.path, self.problem = str(url), detail
        self.remedy = "Check the URL, that the server is running, and the user's rights."
        MeetingError.__init__(self, f"cannot connect to database {url}: {detail}. {self.remedy}")


class DriverMissingError(EnvironmentProblem):
    """The Python driver for the configured database is not installed."""

    def __init__(self, url: object, driver: str):
        super().__init__(
            url,
            f"the database driver '{driver}' is not installed for",
            "Install the database's driver package into this environment (for PostgreSQL: "
            "pip install 'psycopg[binary]') or use another URL.",
        )


class EngineUnavailableError(EnvironmentProblem):
    """The configured query engine cannot start on this machine (a package or Java missing)."""

    def __init__(self, engine: str, problem: str):
        self.engine, self.problem = engine, problem
        MeetingError.__init__(
            self,
            f"the query engine '{engine}' cannot start: {problem}. Install what is named, or "
            "set 'engine: duckdb' in params (the default, embedded).",
        )


class SparkStartError(EngineUnavailableError):
    """Spark does not start on this machine with the package's own settings (the params
    set no engine.spark_conf and the default engine.spark_master): the machine stops it
    (its Java runtime, its memory), not the params."""

    def __init__(self, reason: str, java: str = "java"):
        self.engine, self.problem, self.reason, self.java = "spark", reason, reason, java
        MeetingError.__init__(
            self,
            f"the query engine 'spark' cannot start: {reason.rstrip('.')}. Spark was given "
            "only the package's own settings (the params set no engine.spark_conf and the "
            f"default engine.spark_master), so this machine stops it: check that '{java} "
            "-version' runs and that memory is free, or set 'engine: duckdb' in params (the "
            "default, embedded).",
        )

    # Whole again when a process pool hands it from a worker to its parent.
    def __reduce__(self) -> tuple[type[SparkStartError], tuple[str, str]]:
        return type(self), (self.reason, self.java)


class SparkParamsError(ParamsError):
    """Spark refuses to start with what the params set: engine.spark_master (``master``,
    None when the default) or engine.spark_conf (``conf_keys``)."""

    def __init__(self, reason: str, master: str | None, conf_keys: Sequence[str]):
        self.engine, self.reason = "spark", reason
        self.master, self.conf_keys = master, list(conf_keys)
        keys = []
        if master is not None:
            keys.append(f"engine.spark_master '{master}'")
        if self.conf_keys:
            keys.append(f"engine.spark_conf ({', '.join(self.conf_keys)})")
        super().__init__(
            f"the query engine 'spark' cannot start: {reason.rstrip('.')}. The params set "
            f"{' and '.join(keys)}, the likely cause: correct the value Spark refuses (or "
            "remove the key), or set 'engine: duckdb' in params (the default, embedded)."
        )

    def __reduce__(self) -> tuple[type[SparkParamsError], tuple[str, str | None, list[str]]]:
        return type(self), (self.reason, self.master, self.conf_keys)


class ExplorerEngineError(ParamsError):
    """The bottleneck explorer cannot compute on the params' engine."""

    def __init__(self, engine: str):
        self.engine = engine
        super().__init__(
            f"the bottleneck explorer computes on DuckDB over the week's snapshot, and with "
            f"engine '{engine}' the week stays in the source database. Open the explorer "
            "with params whose engine is duckdb (the default) or spark: a params file "
            "layered on the company's with 'engine: {kind: duckdb}'."
        )


class RunLockedError(MeetingError):
    """Another run of the same week holds the week's lock."""

    exit_code = EXIT_BUSY

    def __init__(self, week: object, lock: object, holder: str, waited: float):
        self.week, self.lock = str(week), str(lock)
        super().__init__(
            f"another run of {week} is in progress ({holder}); waited {waited:g} s for "
            f"its lock {lock}. Run again when it has finished, or raise 'run.lock_wait_seconds'."
        )


def environment_error(exc: OSError, path: object = None) -> MeetingError | None:
    """The environment error an OSError stands for (None when it is not one)."""
    where = path if path is not None else (exc.filename or "?")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(where)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR):
        return NotWritableError(where, exc.strerror or "")
    return None


# --- the meeting store ----------------------------------------------------------


class ConcurrentEditError(MeetingError):
    """An edit carried a stale version of a stored item: someone else changed it first."""

    exit_code = EXIT_INPUT

    def __init__(self, item: str, expected: int, stored: int):
        self.item, self.expected, self.stored = item, expected, stored
        super().__init__(
            f"{item} was changed by someone else: the edit expected version {expected} but "
            f"the store holds version {stored}. Reload it, then apply the edit again."
        )
