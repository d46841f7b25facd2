"""The `siting` command: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import pandas as pd

from siting.catalog import read_catalog
from siting.errors import SitingError, UsageError

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

    bench = commands.add_parser("bench", help="benchmarks against pandapower, measured in the same run")
    bench.add_argument("what", choices=["engine"], help="engine: a year of time steps on three grids")
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
    from siting.grid import load_grid
    from siting.inspect_grid import summary

    source = args.grid or read_catalog().default
    if not args.json:
        print(f"Loading {source} …", file=sys.stderr)
    grid = load_grid(source)
    if not args.json:
        print("Running the base-case power flow …", file=sys.stderr)
    result = summary(grid)
    if args.json:
        print(json.dumps(_json_ready(result), indent=2))
    else:
        print(_inspect_text(result, show_all=args.all))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from siting.bench import run_engine_benchmark, write_csv

    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    print("Timing the engine and pandapower's run_timeseries on the same steps …", file=sys.stderr)
    table = run_engine_benchmark(quick=args.quick, repeats=args.repeats)
    shown = table[
        [
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
    ]
    print(shown.to_string(index=False))
    print(
        "Times are for all steps; pandapower's are extrapolated from the steps it timed"
        + (", and the engine's too (--quick)." if table["engine_extrapolated"].any() else ".")
    )
    if args.csv:
        write_csv(table, Path(args.csv))
        print(f"Written to {args.csv}")
    return 0


def _json_ready(value: object) -> object:
    """NaN becomes null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item"):
        return _json_ready(value.item())
    return value


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


if __name__ == "__main__":
    sys.exit(main())
