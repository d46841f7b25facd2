"""`siting study`: capacity → selection → simulation → map report, from one study file."""

from __future__ import annotations

import argparse

from siting.cli.options import note, say


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser(
        "study", help="capacity → selection → simulation → map report, from one study file"
    )
    parser.add_argument("file", nargs="?", help="study TOML file (default: data/studies/default.toml)")
    parser.add_argument(
        "--out", metavar="DIR", help="report folder (default: the file's out, else reports/<name>)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    import time
    from pathlib import Path

    from siting.progress import Reporter
    from siting.study import read_study, run_study

    study = read_study(Path(args.file) if args.file else None)
    out = Path(args.out) if args.out else study.out or Path("reports") / study.name
    started = time.monotonic()
    note(f"Study {study.name} ({study.source}) → {out}/")
    progress = Reporter(prefix=lambda: f"  [{time.monotonic() - started:6.0f} s] ")
    if study.scenarios:
        from siting.report import scenario_table
        from siting.study import run_scenarios

        headlines = run_scenarios(
            study, out, progress, what=f"{study.source}: out" if study.out == out else "--out"
        )
        say(f"{study.name}: done in {time.monotonic() - started:.0f} s, the scenarios side by side:")
        say(scenario_table(headlines).to_string())
        say(f"\nReport: {out}/index.html (one sub-folder per scenario: {', '.join(headlines)})")
        return 0
    headline = run_study(study, out, progress)
    width = max(len(k) for k in headline)
    lines = [f"{key:<{width}}  {_shown(value)}" for key, value in headline.items()]
    say("\n".join([f"{study.name}: done in {time.monotonic() - started:.0f} s", *lines]))
    beside = [name for name in ("figures/", "results.gpkg", "timeseries.parquet", "manifest.json")
              if (out / name).exists()]  # fmt: skip
    say(f"\nReport: {out}/index.html ({', '.join(beside)})")
    return 0


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "–" if value is None else str(value)
