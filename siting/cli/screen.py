"""`siting screen`: the interconnection screening of a set of sites.

Voltage step, fleet trip, short-circuit strength and fault-induced load loss.
"""

from __future__ import annotations

import argparse

from siting.cli.options import (
    add_grid,
    add_limits,
    add_out,
    add_own_data,
    add_pf,
    limits_from,
    load_own,
    note,
    say,
    substation_ids,
)


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser(
        "screen",
        help="interconnection screening of sites: voltage step, fleet trip, Sk'', fault ride-through",
    )
    add_grid(parser)
    parser.add_argument("--sites", metavar="CSV", help="sites.csv from siting select")
    parser.add_argument(
        "--substations", metavar="IDS", help="or: substation ids to screen, each with a site of --size-mw"
    )
    parser.add_argument("--size-mw", type=float, help="with --substations: the site size (MW)")
    add_out(parser)
    add_pf(parser, "the sites")
    parser.add_argument(
        "--step-limit", type=float, default=0.03, help="voltage step limit (pu; IEC TR 61000-3-7)"
    )
    parser.add_argument("--step-hops", type=int, default=2, help="nearby buses: within N branch hops")
    parser.add_argument(
        "--system-loss-limit", type=float, default=2600.0, help="largest load loss at once (MW)"
    )
    parser.add_argument("--min-scr", type=float, default=3.0, help="weakest short-circuit ratio Sk''min / MW")
    parser.add_argument(
        "--fault-hops", type=int, default=3, help="faults at every bus within N hops of a site"
    )
    parser.add_argument(
        "--ride-through", type=float, default=0.70, help="retained voltage a site rides through (pu)"
    )
    parser.add_argument(
        "--ext-grid-sc-mva", type=float, default=10_000.0, help="assumed Sk'' of an external grid"
    )
    add_limits(parser)
    add_own_data(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from datetime import UTC, datetime
    from pathlib import Path

    import pandas as pd

    from siting.errors import DataError, UsageError
    from siting.outputs import check_output_folder, write_output
    from siting.screening import ScreeningSettings, screen_sites, write_screening

    started = datetime.now(UTC)
    settings = ScreeningSettings(
        step_limit_pu=args.step_limit,
        step_hops=args.step_hops,
        pf=args.pf,
        limits=limits_from(args),
        system_loss_limit_mw=args.system_loss_limit,
        min_scr=args.min_scr,
        fault_hops=args.fault_hops,
        ride_through_pu=args.ride_through,
        ext_grid_sc_mva=args.ext_grid_sc_mva,
    )
    out = check_output_folder(Path(args.out))
    if (args.sites is None) == (args.substations is None):
        raise UsageError("--sites CSV or --substations IDS --size-mw MW: give one of the two")
    sites: Path | str  # the manifest's input: the CSV, or the substations and size asked for
    if args.sites is not None:
        sites = path = Path(args.sites)
        if not path.is_file():
            raise UsageError(f"--sites {path}: no such file; give the sites.csv that siting select wrote")
        try:
            table = pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"--sites {path}: not a readable CSV ({str(err).splitlines()[0]})") from err
        grid = load_own(args)
    else:
        if args.size_mw is None or not args.size_mw > 0:
            raise UsageError(f"--size-mw {args.size_mw}: give the size of the site to screen, more than 0 MW")
        ids = substation_ids(args.substations) or []  # never None: --substations was given
        grid = load_own(args)
        known = grid.substations.set_index("id")
        unknown = sorted(set(ids) - set(known.index))
        if unknown:
            raise UsageError(
                f"--substations {args.substations}: {unknown} are not substations of {grid.name}"
            )
        chosen = known.loc[ids]
        table = pd.DataFrame(
            {
                "substation": ids,
                "name": chosen["name"].to_numpy(),
                "bus": chosen["bus"].to_numpy(),
                "size_mw": args.size_mw,
            }
        )
        sites = f"substations {args.substations} at {args.size_mw:g} MW"
    note(f"  screening {len(table)} site(s): voltage steps, fleet trip, short circuit, faults …")
    screening = screen_sites(grid, table, settings=settings)
    files = write_output(
        out,
        lambda folder: write_screening(screening, folder),
        inputs={**grid.inputs(), "sites": sites},
        settings=settings.record(),
        results=screening.summary,
        started=started,
    )
    shown = [c for c in ("name", "size_mw", "step_site_pu", "scr_min", "scr_pass") if c in screening.sites]
    say(screening.sites[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    say("\n".join(f"{key}: {value}" for key, value in screening.summary.items()))
    say(f"\nWritten to {args.out}/ ({', '.join([*files, 'manifest.json'])})")
    return 0
