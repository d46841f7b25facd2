"""`siting bench`: benchmarks against pandapower, measured in the same run."""

from __future__ import annotations

import argparse

from siting.cli.options import note, say
from siting.errors import UsageError


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("bench", help="benchmarks against pandapower, measured in the same run")
    parser.add_argument(
        "what",
        choices=["engine", "capacity", "fleet"],
        help="engine: a year of time steps on three grids; capacity: hosting capacity on the HV grid; "
        "fleet: a year of both dispatch policies for ten sites on the HV grid",
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps timed; under two minutes")
    parser.add_argument("--repeats", type=int, default=1, help="report the median of this many runs")
    parser.add_argument("--csv", metavar="FILE", help="also write the table to this CSV file")
    parser.set_defaults(run=run)


ENGINE_COLUMNS = [
    "grid",
    "buses",
    "steps",
    "engine_s",
    "pandapower_s",
    "pandapower_recycle_s",
    "engine_steps_per_s",
    "speedup_vs_pandapower",
    "speedup_vs_recycle",
]


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from pathlib import Path

    from siting.bench import run_capacity_benchmark, run_engine_benchmark, run_fleet_benchmark, write_csv

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if args.what == "fleet":
        note("Timing a year of fleet dispatch and pandapower's run_timeseries per flow …")
        table = run_fleet_benchmark(quick=args.quick, repeats=args.repeats)
        say(table.to_string(index=False))
        say("pandapower's time: per flow on a sample of steps, times the flows the simulation ran.")
    elif args.what == "capacity":
        note("Timing batched hosting capacity and the runpp + bisection reference …")
        table = run_capacity_benchmark(quick=args.quick, repeats=args.repeats)
        say(table.drop(columns=["reference_extrapolated"]).to_string(index=False))
        say("The reference's times are extrapolated from the pairs it timed to all pairs.")
    else:
        note("Timing the engine and pandapower's run_timeseries on the same steps …")
        table = run_engine_benchmark(quick=args.quick, repeats=args.repeats)
        say(table[ENGINE_COLUMNS].to_string(index=False))
        extrapolated = ", and the engine's too (--quick)." if table["engine_extrapolated"].any() else "."
        say("Times are for all steps; pandapower's are extrapolated from the steps it timed" + extrapolated)
    if args.csv:
        write_csv(table, Path(args.csv))
        say(f"Written to {args.csv}")
    return 0
