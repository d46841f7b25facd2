"""`siting inspect`: a grid's elements, profiles, substations and base-case power flow."""

from __future__ import annotations

import argparse
import json
from typing import cast

from siting.cli.options import add_grid, note, say
from siting.errors import SitingError

SUBSTATION_ROWS = 25


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("inspect", help="describe a grid, its substations and base case")
    add_grid(parser, optional=True)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--all", action="store_true", help="list every substation, not the first 25")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from siting.inspect_grid import summary
    from siting.outputs import json_ready
    from siting.sources.catalog import read_catalog
    from siting.sources.grid import load_grid

    source = args.grid or read_catalog().default
    if not args.json:
        note(f"Loading {source} …")
    grid = load_grid(source)
    if not args.json:
        note("Running the base-case power flow …")
    result = summary(grid)
    if args.json:
        say(json.dumps(json_ready(result), indent=2))
    else:
        say(_inspect_text(result, show_all=args.all))
    base_case = cast(dict, result["base_case"])  # summary() with its power flow always has one
    if not base_case["converged"]:
        raise SitingError(f"{grid.source}: the base-case power flow does not converge")
    return 0


def _inspect_text(result: dict, show_all: bool) -> str:
    import pandas as pd

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
    import pandas as pd

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
    if case["unsupplied_buses"]:
        lines.append(
            f"  {case['unsupplied_buses']} bus(es) no slack reaches (islands): their "
            f"{case['unsupplied_load_mw']:.1f} MW of load is not supplied and not in the totals"
        )
    lines.append(
        f"  load {case['load_mw']:.1f} MW, generation {case['generation_mw']:.1f} MW, "
        f"line+transformer losses {case['losses_mw']:.2f} MW"
    )
    return lines
