"""The ``meeting`` command line.

Exit codes: 0 success, 2 bad parameters or options, 3 bad input data, 4 a notebook
failed, 1 anything unexpected. Errors print one clear message, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import EXIT_UNEXPECTED, MeetingError
from .i18n import t

DEFAULT_SAMPLE = Path("data/sample")


class _Progress:
    """Timestamped progress lines on stderr, so stdout carries only the results."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(
                f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True
            )


def _params_files(args: argparse.Namespace) -> list[Path]:
    if args.params:
        return [Path(p) for p in args.params]
    from .runner import default_params_file

    return [default_params_file()]


def cmd_sample_data(args: argparse.Namespace) -> int:
    from .sample import generate_sample

    progress = _Progress(args.quiet)
    summary = generate_sample(
        args.out,
        weeks=args.weeks,
        orders_per_week=args.orders_per_week,
        seed=args.seed,
        end_week=args.end_week,
        tz=args.timezone,
        incidents=not args.no_incidents,
        fmt=args.format,
        progress=progress,
    )
    print(f"sample data for {args.weeks} weeks ending {summary.end_week} in {summary.folder}")
    for table, rows in summary.rows.items():
        print(f"  {table:<12} {rows:>12,} rows")
    for incident in summary.incidents:
        print(f"  incident: {incident.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_week

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
    print(t("cli.handouts_at", args.lang or "en", week=result.week, path=result.index))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
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
        )
        cmd_sample_data(ns)
    return cmd_run(args)


def cmd_validate(args: argparse.Namespace) -> int:
    from .dataset import load_week
    from .params import load_params

    params = load_params(*_params_files(args))
    data = load_week(params, args.week, progress=_Progress(args.quiet))
    print(f"week {data.week}: {sum(data.quality.kept.values()):,} rows kept")
    frame = data.quality.to_frame(args.lang or params.language)
    print(frame.to_string(index=False) if len(frame) else "nothing set aside")
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
            help="params YAML; repeat to layer files (default: params/default.yaml)",
        )
        p.add_argument(
            "--notebook",
            action="append",
            metavar="NAME",
            help="run only this notebook (repeatable; default: 'notebooks' in params)",
        )
        p.add_argument("--lang", choices=["en", "zh-CN"], help="handout language")

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
    p.add_argument("--orders-per-week", type=int, default=20_000)
    p.add_argument("--fresh", action="store_true", help="regenerate the sample data")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("validate", help="load and validate a week; print what was set aside")
    with_run_options(p)
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MeetingError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly, keep the traceback one flag away
        if args.debug:
            raise
        print(
            f"unexpected error: {type(exc).__name__}: {exc}\n"
            "This is a bug in meetinglib; rerun with --debug for the traceback.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
