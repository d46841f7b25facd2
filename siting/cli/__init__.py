"""The `siting` command: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd

from siting.errors import SitingError, UsageError
from siting.outputs import json_ready
from siting.sources.catalog import read_catalog

SUBSTATION_ROWS = 25


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SitingError as err:
        print(f"siting: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("siting: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siting",
        description="Where can 5–20 MW AI-inference micro data centers connect to this grid?",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    grids = commands.add_parser("grids", help="list the grids the catalog names")
    grids.set_defaults(run=_grids)

    inspect = commands.add_parser("inspect", help="describe a grid, its substations and base case")
    inspect.add_argument(
        "grid",
        nargs="?",
        help="simbench:<code>, pandapower:<name>, a .json/.m/.mat file, or a catalog name "
        "(default: the catalog's default grid)",
    )
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.add_argument("--all", action="store_true", help="list every substation, not the first 25")
    inspect.set_defaults(run=_inspect)

    capacity = commands.add_parser("capacity", help="hosting capacity of every substation (N-0, N-1, year)")
    capacity.add_argument("grid", help="a grid source, as for inspect")
    capacity.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced whole)")
    capacity.add_argument("--pf", type=float, default=0.95, help="power factor of the added load, lagging")
    capacity.add_argument("--cap", type=float, default=100.0, help="largest load searched for (MW)")
    capacity.add_argument(
        "--at", metavar="POINT", help="case:<name>, netpeak or a time (default: case:hL, else netpeak)"
    )
    capacity.add_argument(
        "--n-1",
        dest="n1",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="firm capacity over single outages (default: on)",
    )
    capacity.add_argument(
        "--year",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="headroom at every profile step (default: on)",
    )
    capacity.add_argument(
        "--substations", metavar="IDS", help="comma-separated substation ids (default: all)"
    )
    capacity.add_argument(
        "--n1-hops",
        type=int,
        metavar="N",
        help="check each substation only against outages within N branch hops (default: every outage)",
    )
    capacity.add_argument(
        "--vmin", type=float, default=0.95, help="undervoltage limit where the model has none"
    )
    capacity.add_argument(
        "--vmax", type=float, default=1.05, help="overvoltage limit where the model has none"
    )
    capacity.add_argument(
        "--emergency", type=float, default=120.0, help="thermal limit after an outage, %% of the normal limit"
    )
    capacity.add_argument(
        "--contingency-vmin", type=float, default=0.90, help="undervoltage limit after an outage"
    )
    capacity.add_argument(
        "--contingency-vmax", type=float, default=1.10, help="overvoltage limit after an outage"
    )
    capacity.set_defaults(run=_capacity)

    select = commands.add_parser("select", help="pick sites and sizes that are feasible together")
    select.add_argument("grid", help="a grid source, as for inspect")
    select.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced whole)")
    select.add_argument("--criterion", default="firm", help="firm (N-1 at peak, default) or peak (N-0)")
    select.add_argument("--sites", type=int, default=10, help="how many sites at most (K)")
    select.add_argument("--min-mw", type=float, default=5.0, help="smallest site (MW)")
    select.add_argument("--max-mw", type=float, default=20.0, help="largest site (MW)")
    select.add_argument("--step-mw", type=float, default=1.0, help="size step (MW)")
    select.add_argument("--regions", type=int, help="cluster substations into N geographic regions")
    select.add_argument("--per-region", type=int, help="sites per region (default: K / regions, rounded up)")
    select.add_argument(
        "--layers",
        nargs="+",
        metavar="KIND=FILE",
        help="GIS layers: exclusion=, fiber=, parcels=, demand=, regions= (any file geopandas reads)",
    )
    select.add_argument(
        "--exclusion-buffer-m", type=float, default=0.0, help="keep sites this far from exclusion zones"
    )
    select.add_argument("--fiber-max-m", type=float, help="drop candidates farther than this from fiber")
    select.add_argument("--parcel-min-m2", type=float, default=20_000.0, help="smallest usable land parcel")
    select.add_argument("--parcel-max-m", type=float, default=2_000.0, help="farthest a parcel may be")
    select.add_argument("--capacity", metavar="DIR", help="reuse a siting capacity output folder")
    select.add_argument("--at", metavar="POINT", help="operating point, as for capacity")
    select.add_argument("--pf", type=float, default=0.95, help="power factor of the sites, lagging")
    select.add_argument(
        "--n1-hops",
        type=int,
        metavar="N",
        help="screen outages to N branch hops while picking (the final check runs every outage)",
    )
    select.set_defaults(run=_select)

    simulate = commands.add_parser(
        "simulate", help="a year of inference dispatched among the sites, checked by AC power flow"
    )
    simulate.add_argument("grid", help="a grid source, as for inspect")
    simulate.add_argument("--sites", required=True, metavar="CSV", help="sites.csv from siting select")
    simulate.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced whole)")
    simulate.add_argument(
        "--policy",
        default="blind,grid-aware",
        help="comma-separated dispatch policies: blind, grid-aware (default: both)",
    )
    simulate.add_argument("--pue", type=float, default=1.3, help="facility power / IT power")
    simulate.add_argument(
        "--aux-fraction", type=float, default=0.02, help="always-on auxiliary load, share of the site rating"
    )
    simulate.add_argument(
        "--step", type=float, metavar="MINUTES", help="simulation step (default: the profiles' own)"
    )
    simulate.add_argument(
        "--load-scale",
        default="1",
        metavar="X",
        help="multiply the grid's load profiles by X, or 'peak-case': the year's peak net load = case hL",
    )
    simulate.add_argument("--demand", metavar="CSV", help="fleet demand (tokens/s) instead of the model")
    simulate.add_argument(
        "--utilisation", type=float, default=0.9, help="modelled demand at its peak, share of fleet capacity"
    )
    simulate.add_argument("--max-delay", type=float, default=15.0, help="longest wait before a drop (min)")
    simulate.add_argument("--latency-km", type=float, help="demand only to sites this close (default: any)")
    simulate.add_argument("--pf", type=float, default=0.95, help="power factor of the sites, lagging")
    simulate.add_argument("--seed", type=int, default=0, help="seed of the workload model")
    simulate.set_defaults(run=_simulate)

    study = commands.add_parser(
        "study", help="capacity → selection → simulation → map report, from one study file"
    )
    study.add_argument("file", nargs="?", help="study TOML file (default: data/studies/default.toml)")
    study.add_argument(
        "--out", metavar="DIR", help="report folder (default: the file's out, else reports/<name>)"
    )
    study.set_defaults(run=_study)

    sweep = commands.add_parser("sweep", help="many studies (grids × scenarios) as Dask tasks, one table")
    sweep.add_argument("file", help="sweep TOML file (see data/sweeps/README.md)")
    sweep.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)",
    )
    sweep.add_argument(
        "--workers", type=int, metavar="N", help="local cluster: worker processes (default: one per core)"
    )
    sweep.add_argument(
        "--out", metavar="DIR", help="output folder (default: the file's out, else reports/<name>)"
    )
    sweep.set_defaults(run=_sweep)

    bench = commands.add_parser("bench", help="benchmarks against pandapower, measured in the same run")
    bench.add_argument(
        "what",
        choices=["engine", "capacity", "fleet"],
        help="engine: a year of time steps on three grids; capacity: hosting capacity on the HV grid; "
        "fleet: a year of both dispatch policies for ten sites on the HV grid",
    )
    bench.add_argument("--quick", action="store_true", help="fewer steps timed; under two minutes")
    bench.add_argument("--repeats", type=int, default=1, help="report the median of this many runs")
    bench.add_argument("--csv", metavar="FILE", help="also write the table to this CSV file")
    bench.set_defaults(run=_bench)
    return parser


def _grids(args: argparse.Namespace) -> int:
    catalog = read_catalog()
    table = pd.DataFrame(
        [
            {"name": e.name + (" *" if e.name == catalog.default else ""), "description": e.description}
            for e in catalog.entries.values()
        ]
    )
    print(table.to_string(index=False, justify="left"))
    print("\n* default grid. Also: simbench:<code>, pandapower:<name>, or a .json/.m/.mat file.")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from siting.inspect_grid import summary
    from siting.sources.grid import load_grid

    source = args.grid or read_catalog().default
    if not args.json:
        print(f"Loading {source} …", file=sys.stderr)
    grid = load_grid(source)
    if not args.json:
        print("Running the base-case power flow …", file=sys.stderr)
    result = summary(grid)
    if args.json:
        print(json.dumps(json_ready(result), indent=2))
    else:
        print(_inspect_text(result, show_all=args.all))
    return 0


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


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from siting.bench import run_capacity_benchmark, run_engine_benchmark, run_fleet_benchmark, write_csv

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if args.what == "fleet":
        print("Timing a year of fleet dispatch and pandapower's run_timeseries per flow …", file=sys.stderr)
        table = run_fleet_benchmark(quick=args.quick, repeats=args.repeats)
        print(table.to_string(index=False))
        print("pandapower's time: per flow on a sample of steps, times the flows the simulation ran.")
    elif args.what == "capacity":
        print("Timing batched hosting capacity and the runpp + bisection reference …", file=sys.stderr)
        table = run_capacity_benchmark(quick=args.quick, repeats=args.repeats)
        print(table.drop(columns=["reference_extrapolated"]).to_string(index=False))
        print("The reference's times are extrapolated from the pairs it timed to all pairs.")
    else:
        print("Timing the engine and pandapower's run_timeseries on the same steps …", file=sys.stderr)
        table = run_engine_benchmark(quick=args.quick, repeats=args.repeats)
        print(table[ENGINE_COLUMNS].to_string(index=False))
        extrapolated = ", and the engine's too (--quick)." if table["engine_extrapolated"].any() else "."
        print("Times are for all steps; pandapower's are extrapolated from the steps it timed" + extrapolated)
    if args.csv:
        write_csv(table, Path(args.csv))
        print(f"Written to {args.csv}")
    return 0


def _capacity(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from siting.capacity import CapacitySettings, substation_capacity, write_capacity
    from siting.limits import StudyLimits
    from siting.outputs import atomic_folder, manifest, write_json
    from siting.sources.grid import load_grid

    started = datetime.now(UTC)
    settings = CapacitySettings(
        pf=args.pf,
        cap_mw=args.cap,
        limits=StudyLimits(
            vmin_pu=args.vmin,
            vmax_pu=args.vmax,
            contingency_vmin_pu=args.contingency_vmin,
            contingency_vmax_pu=args.contingency_vmax,
            emergency_factor=args.emergency / 100,
        ),
    )
    chosen = _ids(args.substations)
    print(f"Loading {args.grid} …", file=sys.stderr)
    grid = load_grid(args.grid)
    study = substation_capacity(
        grid,
        settings,
        at=args.at,
        n1=args.n1,
        year=args.year,
        substations=chosen,
        n1_hops=args.n1_hops,
        progress=lambda message: print(f"  {message} …", file=sys.stderr),
    )
    with atomic_folder(Path(args.out)) as folder:
        write_capacity(study, folder)
        write_json(
            folder / "manifest.json",
            manifest(
                inputs={"grid": grid.source, **{f"file {p.name}": p for p in grid.files}},
                settings={
                    "operating_point": study.operating_point,
                    "pf": settings.pf,
                    "cap_mw": settings.cap_mw,
                    "resolution_mw": settings.resolution_mw,
                    "n1": args.n1,
                    "year": args.year,
                    "substations": chosen or "all",
                    "n1_hops": args.n1_hops if args.n1_hops is not None else "all outages",
                    "study_limits": vars(settings.limits),
                    "limits_from_model": study.limits_from_model,
                },
                results={
                    "substations": len(study.table),
                    "power_flows": study.flows,
                    "load_margin": study.load_margin,
                    "unused_share_at_peak": study.unused_share_at_peak,
                    "base_violations": len(study.base_violations),
                    "skipped_outages": len(study.skipped_outages),
                },
                started=started,
            ),
        )
    print(_capacity_text(grid.name, study))
    print(
        f"\nWritten to {args.out}/ (capacity.csv, "
        + ("headroom.parquet, " if study.headroom is not None else "")
        + "base_violations.csv, skipped_outages.csv, manifest.json)"
    )
    return 0


def _select(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    import pandas as pd

    from siting.capacity import CapacitySettings, substation_capacity
    from siting.geography import GeoRules, parse_layer_args, read_layers
    from siting.outputs import atomic_folder, manifest, write_json
    from siting.selection import SelectionSettings, select_sites, write_selection
    from siting.sources.grid import load_grid

    started = datetime.now(UTC)
    settings = SelectionSettings(
        criterion=args.criterion,
        sites=args.sites,
        min_mw=args.min_mw,
        max_mw=args.max_mw,
        step_mw=args.step_mw,
        regions=args.regions,
        per_region=args.per_region,
        n1_hops=args.n1_hops,
        pf=args.pf,
        geo=GeoRules(
            exclusion_buffer_m=args.exclusion_buffer_m,
            fiber_max_m=args.fiber_max_m,
            parcel_min_m2=args.parcel_min_m2,
            parcel_max_m=args.parcel_max_m,
        ),
    )
    layer_paths = parse_layer_args(args.layers)
    layers = read_layers(layer_paths)
    capacity_file = Path(args.capacity) / "capacity.csv" if args.capacity else None
    if capacity_file is not None and not capacity_file.exists():
        raise UsageError(f"--capacity {args.capacity}: no capacity.csv there; run siting capacity first")
    print(f"Loading {args.grid} …", file=sys.stderr)
    grid = load_grid(args.grid)
    if capacity_file is not None:
        capacity = pd.read_csv(capacity_file)
    else:
        print("  hosting capacity of every substation …", file=sys.stderr)
        capacity = substation_capacity(
            grid,
            CapacitySettings(pf=args.pf),
            at=args.at,
            n1=settings.criterion == "firm",
            year=False,
            n1_hops=args.n1_hops,
        ).table
    print(
        f"  picking up to {settings.sites} sites, checking each pick with AC power flows …", file=sys.stderr
    )
    selection = select_sites(
        grid, capacity, settings, layers, at=args.at, progress=lambda m: print(f"    {m}", file=sys.stderr)
    )
    with atomic_folder(Path(args.out)) as folder:
        write_selection(selection, folder)
        write_json(
            folder / "manifest.json",
            manifest(
                inputs={
                    "grid": grid.source,
                    **{f"file {p.name}": p for p in grid.files},
                    "capacity": capacity_file or "computed",
                    **{f"layer {k}": p for k, p in layer_paths.items()},
                },
                settings={
                    **settings.record(),
                    "operating_point": selection.operating_point,
                    "repaired_geometries": layers.repaired,
                },
                results={
                    "sites": len(selection.sites),
                    "total_mw": float(selection.sites["size_mw"].sum()),
                    "power_flows": selection.flows,
                    "notes": selection.notes,
                },
                started=started,
            ),
        )
    print(_select_text(selection))
    print(
        f"\nWritten to {args.out}/ (sites.csv, sites.gpkg, joint_check.csv, violations.csv, naive.csv, "
        "manifest.json)"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from pathlib import Path

    from siting.fleet import FleetSettings, modelled_demand, read_sites, simulate, write_fleet
    from siting.outputs import atomic_folder, manifest, write_json
    from siting.power import PowerModel, load_gpu_curve
    from siting.sources.grid import load_grid
    from siting.sources.profiles import load_scale_factor, resample_profiles, scale_loads
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
    )
    print(f"Loading {args.grid} …", file=sys.stderr)
    grid = load_grid(args.grid)
    if grid.profiles is None:
        raise UsageError(f"{args.grid}: has no time-series profiles; simulate needs a year of them")
    factor = load_scale_factor(grid, args.load_scale)
    grid = scale_loads(grid, factor)
    if args.step is not None:
        grid = resample_profiles(grid, args.step)
    sites = read_sites(Path(args.sites), grid)
    if args.demand:
        demand = read_demand_csv(Path(args.demand), grid.profiles.index)
    else:
        demand = modelled_demand(grid, sites, settings)
    result = simulate(grid, sites, demand, settings, progress=lambda m: print(f"  {m} …", file=sys.stderr))
    with atomic_folder(Path(args.out)) as folder:
        files = write_fleet(result, folder)
        write_json(
            folder / "manifest.json",
            manifest(
                inputs={
                    "grid": grid.source,
                    **{f"file {p.name}": p for p in grid.files},
                    "sites": Path(args.sites),
                    "demand": Path(args.demand) if args.demand else "workload model (data/traces)",
                },
                settings={
                    **settings.record(),
                    "load_scale": args.load_scale,
                    "load_factor_applied": factor,
                    "step_minutes": args.step or "profiles' own",
                },
                results={"power_flows": result.flows, "files": files, **_headline(result.summary)},
                started=started,
            ),
        )
    print(_simulate_text(result, factor))
    print(f"\nWritten to {args.out}/ ({', '.join(files)}, manifest.json)")
    return 0


def _study(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from siting.study import read_study, run_study

    study = read_study(Path(args.file) if args.file else None)
    out = Path(args.out) if args.out else study.out or Path("reports") / study.name
    started = time.monotonic()
    print(f"Study {study.name} ({study.source}) → {out}/", file=sys.stderr)

    def progress(message: str) -> None:
        print(f"  [{time.monotonic() - started:6.0f} s] {message} …", file=sys.stderr)

    headline = run_study(study, out, progress)
    width = max(len(k) for k in headline)
    lines = [f"{key:<{width}}  {_shown(value)}" for key, value in headline.items()]
    print("\n".join([f"{study.name}: done in {time.monotonic() - started:.0f} s", *lines]))
    print(f"\nReport: {out}/index.html (figures/, results.gpkg, timeseries.parquet, manifest.json)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from siting.sweep import read_sweep, run_sweep, sweep_text

    sweep = read_sweep(Path(args.file))
    out = Path(args.out) if args.out else sweep.out or Path("reports") / sweep.name
    started = time.monotonic()
    print(f"Sweep {sweep.name} ({sweep.source}): {len(sweep.cases)} cases → {out}/", file=sys.stderr)

    def progress(message: str) -> None:
        print(f"  [{time.monotonic() - started:6.0f} s] {message}", file=sys.stderr)

    table = run_sweep(sweep, out, scheduler=args.scheduler, workers=args.workers, progress=progress)
    print(sweep_text(table))
    print(f"\nWritten to {out}/ (sweep.csv, cases/<case>/, manifest.json)")
    return 0 if (table["status"] == "ok").all() else 1


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "–" if value is None else str(value)


def _headline(summary: pd.DataFrame) -> dict:
    return {
        f"{row.policy}": {
            "served_share": row.served_share,
            "violations": row.violations,
            "violation_steps": row.violation_steps,
        }
        for row in summary.itertuples()
    }


def _simulate_text(result, factor: float) -> str:
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


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise UsageError(f"--substations {text}: give substation ids as numbers, e.g. 0,3,7") from err


def _capacity_text(name: str, study) -> str:
    table = study.table
    shown = table[
        [
            "substation",
            "name",
            "hc_n0_mw",
            "hc_n1_mw",
            "hc_n0_year_min_mw",
            "binding_criterion",
            "binding_element",
            "binding_outage",
        ]
    ].rename(
        columns={
            "hc_n0_mw": "N-0 MW",
            "hc_n1_mw": "N-1 MW",
            "hc_n0_year_min_mw": "year min MW",
            "binding_criterion": "binds",
            "binding_element": "element",
            "binding_outage": "outage",
        }
    )
    lines = [
        f"{name}: hosting capacity at {study.operating_point} ({study.flows:,} AC power flows)",
        shown.to_string(index=False, na_rep="–", float_format=lambda v: f"{v:.1f}"),
        "",
        f"Unused at peak: {study.unused_share_at_peak:.0%} of the grid's capacity (every existing load "
        f"can grow ×{study.load_margin:.2f} before a limit binds)",
    ]
    if len(study.base_violations):
        worst = study.base_violations.head(5)
        lines.append(f"Base case already violates {len(study.base_violations)} limit(s), e.g.:")
        lines += [
            f"  {r.criterion} at {r.element}: {r.value:.4f} (limit {r.limit:.4f})" for r in worst.itertuples()
        ]
    if len(study.skipped_outages):
        lines.append(
            f"{len(study.skipped_outages)} outage(s) skipped (islanding or no convergence): "
            "see skipped_outages.csv"
        )
    return "\n".join(lines)


def _inspect_text(result: dict, show_all: bool) -> str:
    lines = [f"{result['grid']} — {result['description']}", ""]
    counts = pd.DataFrame(list(result["elements"].items()), columns=["element", "count"])
    lines += ["Elements", counts.to_string(index=False), ""]
    span = result["profiles"]
    if span:
        lines.append(
            f"Profiles: {span['steps']} steps of {span['step_minutes']:g} min, "
            f"{span['start']} → {span['end']}, {span['elements']} elements"
        )
    else:
        lines.append("Profiles: none (the model's own values only)")
    lines.append("")
    lines += _substations_text(result["substations"], show_all)
    lines += _base_case_text(result.get("base_case"))
    return "\n".join(lines)


def _substations_text(rows: list[dict], show_all: bool) -> list[str]:
    table = pd.DataFrame(rows)
    rule = table["rule"].iloc[0]
    shown = table if show_all else table.head(SUBSTATION_ROWS)
    shown = shown[
        [
            "id",
            "name",
            "bus_name",
            "vn_kv",
            "load_mw",
            "n_transformers",
            "transformer_mva",
            "firm_transformer_mva",
            "lon",
            "lat",
        ]
    ].rename(
        columns={
            "bus_name": "connection bus",
            "vn_kv": "kV",
            "load_mw": "load MW",
            "n_transformers": "units",
            "transformer_mva": "MVA",
            "firm_transformer_mva": "firm MVA",
        }
    )
    text = shown.to_string(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}")
    lines = [f"Substations: {len(table)} (rule: {rule})", text]
    if len(table) > len(shown):
        lines.append(f"… {len(table) - len(shown)} more; --all lists every one, --json gives all fields")
    return [*lines, ""]


def _base_case_text(case: dict | None) -> list[str]:
    if case is None:
        return []
    if not case["converged"]:
        return ["Base-case power flow: did NOT converge"]
    lines = ["Base-case power flow (pandapower runpp, the model's own values)"]
    for label, key, unit in (
        ("min voltage", "min_vm_pu", "pu"),
        ("max voltage", "max_vm_pu", "pu"),
        ("max line loading", "max_line_loading_percent", "%"),
        ("max transformer loading", "max_trafo_loading_percent", "%"),
    ):
        extreme = case[key]
        if extreme is not None:
            lines.append(f"  {label:<24} {extreme['value']:9.4f} {unit:<3} at {extreme['element']}")
    lines.append(
        f"  load {case['load_mw']:.1f} MW, generation {case['generation_mw']:.1f} MW, "
        f"line+transformer losses {case['losses_mw']:.2f} MW"
    )
    return lines


