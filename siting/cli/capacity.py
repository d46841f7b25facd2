"""`siting capacity`: hosting capacity of every substation (N-0, firm N-1, the year)."""

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
    substation_ids,
)


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("capacity", help="hosting capacity of every substation (N-0, N-1, year)")
    add_grid(parser)
    add_out(parser)
    add_pf(parser)
    parser.add_argument("--cap", type=float, default=100.0, help="largest load searched for (MW)")
    add_at(parser)
    parser.add_argument(
        "--n-1",
        dest="n1",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="firm capacity over single outages (default: on)",
    )
    parser.add_argument(
        "--year",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="headroom at every profile step (default: on)",
    )
    parser.add_argument("--substations", metavar="IDS", help="comma-separated substation ids (default: all)")
    add_n1_hops(
        parser, "check each substation only against outages within N branch hops (default: every outage)"
    )
    parser.add_argument(
        "--verify-opendss",
        action="store_true",
        help="OpenDSS feeders: re-check every N-0 capacity in OpenDSS, unbalanced (capacity_opendss.csv)",
    )
    add_limits(parser)
    add_own_data(parser)
    add_engine(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from datetime import UTC, datetime
    from pathlib import Path

    from siting.capacity import CapacitySettings, substation_capacity, write_capacity
    from siting.errors import UsageError
    from siting.outputs import check_output_folder, write_output
    from siting.progress import Reporter

    started = datetime.now(UTC)
    settings = CapacitySettings(
        pf=args.pf,
        cap_mw=args.cap,
        limits=limits_from(args),
        at=args.at,
        n1=args.n1,
        year=args.year,
        n1_hops=args.n1_hops,
        engine=engine_from(args),
    )
    chosen = substation_ids(args.substations)
    out = check_output_folder(Path(args.out))
    grid = load_own(args)
    if args.verify_opendss and not str(grid.source).lower().endswith(".dss"):
        raise UsageError(f"--verify-opendss: {args.grid} is not an OpenDSS feeder (a .dss master file)")
    study = substation_capacity(grid, settings, substations=chosen, progress=Reporter(prefix=lambda: "  "))
    checked = None
    if args.verify_opendss:
        from siting.verify_dss import verify_capacities

        note("  re-checking every N-0 capacity in OpenDSS, unbalanced …")
        table = study.table
        checked = verify_capacities(
            Path(grid.source), list(table["bus_name"]), table["hc_n0_mw"].to_numpy(), settings
        )

    def write(folder: Path) -> list[str]:
        files = write_capacity(study, folder)
        if checked is None:
            return files
        checked.to_csv(folder / "capacity_opendss.csv", index=False)
        return [*files, "capacity_opendss.csv"]

    files = write_output(
        out,
        write,
        inputs=grid.inputs(),
        settings={**settings.record(), "substations": chosen or "all"},
        results=study.record(),
        started=started,
    )
    say(_capacity_text(grid.name, study))
    if checked is not None:
        differ = checked[~checked["agrees"]]
        say(
            f"OpenDSS (unbalanced, per phase) agrees at {len(checked) - len(differ)} of {len(checked)} buses"
            + ("" if differ.empty else "; where not, its answer holds:\n" + differ.to_string(index=False))
        )
    say(f"\nWritten to {args.out}/ ({', '.join([*files, 'manifest.json'])})")
    return 0


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
