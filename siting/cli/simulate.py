"""`siting simulate`: a year of inference dispatched among the sites, checked by AC power flow."""

from __future__ import annotations

import argparse

from siting.cli.options import (
    add_engine,
    add_grid,
    add_limits,
    add_out,
    add_own_data,
    add_pf,
    engine_from,
    limits_from,
    load_own,
    say,
)


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser(
        "simulate", help="a year of inference dispatched among the sites, checked by AC power flow"
    )
    add_grid(parser)
    parser.add_argument("--sites", required=True, metavar="CSV", help="sites.csv from siting select")
    add_out(parser)
    parser.add_argument(
        "--policy",
        default="blind,grid-aware",
        help="comma-separated dispatch policies: blind, grid-aware (default: both)",
    )
    parser.add_argument("--pue", type=float, default=1.3, help="facility power / IT power")
    parser.add_argument(
        "--aux-fraction", type=float, default=0.02, help="always-on auxiliary load, share of the site rating"
    )
    parser.add_argument(
        "--step", type=float, metavar="MINUTES", help="simulation step (default: the profiles' own)"
    )
    parser.add_argument(
        "--load-scale",
        default="1",
        metavar="X",
        help="multiply the grid's load profiles by X, or 'peak-case': the year's peak net load = case hL",
    )
    parser.add_argument("--demand", metavar="CSV", help="fleet demand (tokens/s) instead of the model")
    parser.add_argument(
        "--utilisation", type=float, default=0.9, help="modelled demand at its peak, share of fleet capacity"
    )
    parser.add_argument("--max-delay", type=float, default=15.0, help="longest wait before a drop (min)")
    parser.add_argument("--latency-km", type=float, help="demand only to sites this close (default: any)")
    add_pf(parser, "the sites")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload model")
    modes = parser.add_argument_group("site power modes (grid-aware dispatch, where the grid binds)")
    modes.add_argument(
        "--power-cap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="GPU power capping (default: on)",
    )
    modes.add_argument("--min-cap-w", type=float, default=200.0, help="lowest GPU power limit (W)")
    modes.add_argument(
        "--shutdown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="power idle servers down (default: on)",
    )
    modes.add_argument(
        "--wake-minutes", type=float, default=10.0, help="power-on to serving of a server (min)"
    )
    modes.add_argument(
        "--warm-reserve", type=float, default=0.1, help="share of GPUs kept powered while others are off"
    )
    modes.add_argument(
        "--flex-depth", type=float, default=0.25, help="share of work that may be held back at a step"
    )
    modes.add_argument("--flex-hours", type=float, default=3.0, help="longest run of held-back hours")
    modes.add_argument(
        "--backup-hours",
        type=float,
        default=0.0,
        help="hours a year each site may run from its own supply where even its lowest power "
        "breaks a limit (the US 50-hour rule: 50; default: 0, never)",
    )
    add_limits(parser)
    add_own_data(parser)
    add_engine(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from datetime import UTC, datetime
    from pathlib import Path

    from siting.errors import UsageError
    from siting.fleet import FleetSettings, PowerModes, modelled_demand, read_sites, simulate, write_fleet
    from siting.outputs import check_output_folder, write_output
    from siting.power import PowerModel, load_gpu_curve
    from siting.progress import Reporter
    from siting.sources.profiles import simulation_year
    from siting.workload import read_demand_csv

    started = datetime.now(UTC)
    settings = FleetSettings(
        policies=tuple(p.strip() for p in args.policy.split(",") if p.strip()),
        power=PowerModel(load_gpu_curve(), pue=args.pue, aux_fraction=args.aux_fraction),
        peak_utilisation=args.utilisation,
        max_delay_minutes=args.max_delay,
        latency_km=args.latency_km,
        pf=args.pf,
        seed=args.seed,
        limits=limits_from(args),
        modes=PowerModes(
            cap=args.power_cap,
            min_cap_w=args.min_cap_w,
            shutdown=args.shutdown,
            wake_minutes=args.wake_minutes,
            warm_reserve=args.warm_reserve,
            max_depth=args.flex_depth,
            max_hours=args.flex_hours,
            backup_hours=args.backup_hours,
        ),
        engine=engine_from(args),
    )
    out = check_output_folder(Path(args.out))
    for flag, path in (("--sites", args.sites), ("--demand", args.demand)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: file not found; give the path of an existing CSV")
    grid = load_own(args)
    if grid.profiles is None:
        raise UsageError(f"{args.grid}: has no time-series profiles; simulate needs a year of them")
    year, factor = simulation_year(grid, load_scale=args.load_scale, step_minutes=args.step)
    sites = read_sites(Path(args.sites), year)
    if args.demand:
        demand = read_demand_csv(Path(args.demand), year.require_profiles("for the demand").index)
    else:
        demand = modelled_demand(year, sites, settings)
    result = simulate(year, sites, demand, settings, progress=Reporter(prefix=lambda: "  "))
    files = write_output(
        out,
        lambda folder: write_fleet(result, folder),
        inputs={
            **year.inputs(),
            "sites": Path(args.sites),
            "demand": Path(args.demand) if args.demand else "workload model (data/traces)",
        },
        settings={
            **settings.record(),
            "load_scale": args.load_scale,
            "load_factor_applied": factor,
            "step_minutes": args.step or "profiles' own",
        },
        results=result.record(),
        started=started,
    )
    say(_simulate_text(result, factor))
    say(f"\nWritten to {args.out}/ ({', '.join([*files, 'manifest.json'])})")
    return 0


def _simulate_text(result, factor: float) -> str:
    import pandas as pd

    summary = result.summary
    shown = pd.DataFrame(
        {
            "policy": summary["policy"],
            "served %": 100 * summary["served_share"],
            "dropped %": 100 * summary["dropped_tokens"] / summary["demand_tokens"],
            "energy GWh": summary["energy_mwh"] / 1000,
            "peak MW": summary["peak_mw"],
            "violations": summary["violations"],
            "steps": summary["violation_steps"],
            "worst loading %": summary["worst_loading_percent"],
            "min V pu": summary["min_vm_pu"],
        }
    )
    lines = [
        f"Fleet of {result.sites['substation'].nunique()} sites over {len(result.demand):,} steps "
        f"(loads × {factor:g}; {result.flows:,} AC power flows)",
        shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    ]
    if len(result.violations):
        lines += ["", "Violations (the fleet makes a limit worse than the grid alone):"]
        lines.append(result.violations.head(10).to_string(index=False))
    if len(result.grid_violations):
        lines.append(
            f"The grid alone, without the fleet, already breaks {len(result.grid_violations)} limit(s): "
            "see grid_violations.csv"
        )
    return "\n".join(lines)
