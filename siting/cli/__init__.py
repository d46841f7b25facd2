"""The `siting` command: a thin layer over the package's functions.

Each command is a module here with ``add(commands)`` (its flags) and ``run(args)`` (settings from
the flags → one library call → print). Libraries are imported inside ``run``, so ``siting --help``,
``siting grids`` and usage errors answer at once.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence

from siting.cli.options import Parser, flag_error, one_line
from siting.errors import SettingError, SitingError

COMMANDS = ("grids", "inspect", "capacity", "select", "simulate", "screen", "study", "sweep", "bench")
TERMINATED = 143  # 128 + SIGTERM, as a shell reports it


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``siting`` with ``argv`` (default: the process's arguments); returns the exit code.

    0 done; 1 a run that failed (input that exists but cannot be used, a model that does not
    solve); 2 a usage error (a flag, value, name or file that does not exist or is not allowed);
    130 interrupted; 143 terminated. Errors are one line on standard error.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args)
    except SettingError as err:
        return _fail(flag_error(err))
    except SitingError as err:
        return _fail(err)
    except KeyboardInterrupt:
        print("siting: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("siting: terminated", file=sys.stderr)
        return TERMINATED
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM as an exception, so that staging folders are removed on the way out."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _fail(err: SitingError) -> int:
    print(f"siting: error: {one_line(err)}", file=sys.stderr)
    return err.exit_code


def _parser() -> Parser:
    parser = Parser(
        prog="siting",
        description="Where can 5–20 MW AI-inference micro data centers connect to this grid?",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"siting.cli.{name}").add(commands)
    return parser
