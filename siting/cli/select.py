"""`siting select`: sites and sizes that are feasible together, checked by AC power flows."""

from __future__ import annotations

import argparse

from siting.cli.options import (
    add_at,
    add_engine,
    add_grid,
    add_limits,
    add_n1_hops,
    add_out,
    add_own_data,
    add_pf,
    engine_from,
    limits_from,
    load_own,
    note,
    say,
)
from siting.errors import UsageError


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("select", help="pick sites and sizes that are feasible together")
    add_grid(parser)
    add_out(parser)
    parser.add_argument(
        "--criterion", default="firm", help="firm (N-1 at peak, default), peak (N-0) or flex-<percent>"
    )
    parser.add_argument("--sites", type=int, default=10, help="how many sites at most (K)")
    parser.add_argument("--min-mw", type=float, default=5.0, help="smallest site (MW)")
    parser.add_argument("--max-mw", type=float, default=20.0, help="largest site (MW)")
    parser.add_argument("--step-mw", type=float, default=1.0, help="size step (MW)")
    parser.add_argument("--regions", type=int, help="cluster substations into N geographic regions")
    parser.add_argument("--per-region", type=int, help="sites per region (default: K / regions, rounded up)")
    parser.add_argument(
        "--flex-floor",
        type=float,
        metavar="SHARE",
        help="flex: lowest share of its size a curtailed site draws, in [0, 1) (default: idle servers "
        "off with a 10%% warm reserve, 0.074; 0.559 if idle servers stay on)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="KIND=FILE",
        help="GIS layers: exclusion=, fiber=, parcels=, demand=, regions= (any file geopandas reads)",
    )
    parser.add_argument(
        "--exclusion-buffer-m", type=float, default=0.0, help="keep sites this far from exclusion zones"
    )
    parser.add_argument("--fiber-max-m", type=float, help="drop candidates farther than this from fiber")
    parser.add_argument("--parcel-min-m2", type=float, default=20_000.0, help="smallest usable land parcel")
    parser.add_argument("--parcel-max-m", type=float, default=2_000.0, help="farthest a parcel may be")
    parser.add_argument("--capacity", metavar="DIR", help="reuse a siting capacity output folder")
    add_at(parser)
    add_pf(parser, "the sites")
    add_n1_hops(parser, "screen outages to N branch hops while picking (the final check runs every outage)")
    add_limits(parser)
    add_own_data(parser)
    add_engine(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from datetime import UTC, datetime
    from pathlib import Path

    from siting.capacity import CapacitySettings, read_capacity_table, substation_capacity
    from siting.geography import GeoRules, parse_layer_args, read_layers
    from siting.outputs import check_output_folder, write_output
    from siting.progress import Reporter
    from siting.selection import SelectionSettings, select_sites, write_selection

    started = datetime.now(UTC)
    limits = limits_from(args)
    settings = SelectionSettings(
        criterion=args.criterion,
        sites=args.sites,
        min_mw=args.min_mw,
        max_mw=args.max_mw,
        step_mw=args.step_mw,
        regions=args.regions,
        per_region=args.per_region,
        n1_hops=args.n1_hops,
        flex_floor=args.flex_floor,
        pf=args.pf,
        limits=limits,
        engine=engine_from(args),
        geo=GeoRules(
            exclusion_buffer_m=args.exclusion_buffer_m,
            fiber_max_m=args.fiber_max_m,
            parcel_min_m2=args.parcel_min_m2,
            parcel_max_m=args.parcel_max_m,
        ),
    )
    out = check_output_folder(Path(args.out))
    layer_paths = parse_layer_args(args.layers)
    layers = read_layers(layer_paths)
    if args.capacity and not (Path(args.capacity) / "capacity.csv").is_file():
        raise UsageError(f"--capacity {args.capacity}: no capacity.csv there; run siting capacity first")
    grid = load_own(args)
    reporter = Reporter(prefix=lambda: "  ")
    if args.capacity:
        capacity = read_capacity_table(Path(args.capacity), grid)
    else:
        capacity = substation_capacity(
            grid,
            CapacitySettings(
                pf=args.pf,
                limits=limits,
                engine=settings.engine,
                at=args.at,
                n1=settings.criterion == "firm",
                year=False,
                n1_hops=args.n1_hops,
            ),
            progress=reporter,
        ).table
    note(f"  picking up to {settings.sites} sites, checking each pick with AC power flows …")
    selection = select_sites(grid, capacity, settings, layers=layers, at=args.at, progress=reporter)
    files = write_output(
        out,
        lambda folder: write_selection(selection, folder),
        inputs={
            **grid.inputs(),
            "capacity": Path(args.capacity) / "capacity.csv" if args.capacity else "computed",
            **{f"layer {k}": p for k, p in layer_paths.items()},
        },
        settings={**settings.record(), "repaired_geometries": layers.repaired},
        results=selection.record(),
        started=started,
    )
    say(_select_text(selection))
    say(f"\nWritten to {args.out}/ ({', '.join([*files, 'manifest.json'])})")
    return 0


def _select_text(selection) -> str:
    shown = selection.sites[["substation", "name", "size_mw", "region", "score", "reason"]]
    lines = [
        f"{len(selection.sites)} sites, {selection.sites['size_mw'].sum():g} MW, "
        f"at {selection.operating_point} ({selection.flows:,} AC power flows)",
        shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"),
        "",
        "Joint AC check (every state of the criterion, all sites at their sizes):",
        selection.joint[
            ["set", "sites", "total_mw", "min_vm_pu", "max_loading_percent", "violations", "passes"]
        ].to_string(index=False),
    ]
    return "\n".join(lines + [f"Note: {n}" for n in selection.notes])
