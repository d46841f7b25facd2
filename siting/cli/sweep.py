"""`siting sweep`: many studies (grids × scenarios) as Dask tasks, one table."""

from __future__ import annotations

import argparse

from siting.cli.options import note, say


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("sweep", help="many studies (grids × scenarios) as Dask tasks, one table")
    parser.add_argument("file", help="sweep TOML file (see data/sweeps/README.md)")
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="local cluster: worker processes (default: one per core)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: the file's out, else reports/<name>)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    import time
    from pathlib import Path

    from siting.errors import UsageError
    from siting.progress import Reporter
    from siting.sweep import read_sweep, run_sweep, sweep_text

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give at least one worker")
    sweep = read_sweep(Path(args.file))
    out = Path(args.out) if args.out else sweep.out or Path("reports") / sweep.name
    started = time.monotonic()
    note(f"Sweep {sweep.name} ({sweep.source}): {len(sweep.cases)} cases → {out}/")
    progress = Reporter(prefix=lambda: f"  [{time.monotonic() - started:6.0f} s] ")
    table = run_sweep(sweep, out, scheduler=args.scheduler, workers=args.workers, progress=progress)
    say(sweep_text(table))
    say(f"\nWritten to {out}/ (sweep.csv, cases/<case>/, manifest.json)")
    return 0 if (table["status"] == "ok").all() else 1
