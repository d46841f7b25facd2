"""Options several commands share, defined once, and how the CLI speaks: one line per error.

Nothing heavy is imported here: ``siting --help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from siting.errors import SettingError, UsageError

# Settings fields whose flag is not "--" + the field name with dashes.
FLAGS = {
    "cap_mw": "--cap",
    "vmin_pu": "--vmin",
    "vmax_pu": "--vmax",
    "contingency_vmin_pu": "--contingency-vmin",
    "contingency_vmax_pu": "--contingency-vmax",
    "emergency_factor": "--emergency",
    "peak_utilisation": "--utilisation",
    "max_delay_minutes": "--max-delay",
    "policies": "--policy",
    "step_minutes": "--step",
    "resolution_mw": "--resolution",
    "cap": "--power-cap",
    "max_depth": "--flex-depth",
    "max_hours": "--flex-hours",
    "worsening_pu": "--pre-existing-tolerance-pu",
    "worsening_percent": "--pre-existing-tolerance-percent",
    "contribution_df": "--contribution-df",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) that point to ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {plain(message)} (see {self.prog} --help)\n")


def plain(text: object) -> str:
    r"""``text`` safe for a terminal: control characters (escape codes, BEL, …) shown as \x.."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def one_line(text: object) -> str:
    """``text`` as one terminal-safe line."""
    return plain(str(text).replace("\r", " ").replace("\n", " ⏎ "))


def flag_error(err: SettingError) -> UsageError:
    """A settings error in the CLI's terms: the flag and the value as typed."""
    flag = FLAGS.get(err.field, "--" + err.field.replace("_", "-"))
    value = err.value
    if err.field == "emergency_factor" and isinstance(value, int | float):  # the flag is in %
        value = value * 100
    return err.named(flag, value)


def say(text: object) -> None:
    """Print results to standard output, terminal-safe."""
    print(plain(text))


def note(text: object) -> None:
    """Print a progress or status line to standard error, terminal-safe."""
    print(plain(text), file=sys.stderr, flush=True)


def add_grid(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    """The grid argument (a catalog name or a source)."""
    what = "simbench:<code>, pandapower:<name>, a .json/.m/.mat/.raw file, or a catalog name"
    if optional:
        parser.add_argument("grid", nargs="?", help=f"{what} (default: the catalog's default grid)")
    else:
        parser.add_argument("grid", help=f"{what} ('siting grids' lists the catalog)")


def add_out(parser: argparse.ArgumentParser, required: bool = True, default: str = "") -> None:
    """``--out DIR``: the output folder."""
    parser.add_argument(
        "--out",
        required=required,
        metavar="DIR",
        help="output folder: created, or replaced whole if siting wrote it"
        + (f" {default}" if default else ""),
    )


def add_pf(parser: argparse.ArgumentParser, what: str = "the added load") -> None:
    """``--pf``: the power factor of ``what``."""
    parser.add_argument("--pf", type=float, default=0.95, help=f"power factor of {what}, lagging")


def add_at(parser: argparse.ArgumentParser) -> None:
    """``--at``: the operating point."""
    parser.add_argument(
        "--at", metavar="POINT", help="case:<name>, netpeak or a time (default: case:hL, else netpeak)"
    )


def add_n1_hops(parser: argparse.ArgumentParser, help: str) -> None:
    """``--n1-hops N``: contingency screening by branch hops."""
    parser.add_argument("--n1-hops", type=int, metavar="N", help=help)


def add_limits(parser: argparse.ArgumentParser) -> None:
    """The limit flags, applied where the model has no limit of its own."""
    group = parser.add_argument_group("limits (where the model has none of its own)")
    group.add_argument("--vmin", type=float, default=0.95, help="undervoltage limit (pu)")
    group.add_argument("--vmax", type=float, default=1.05, help="overvoltage limit (pu)")
    group.add_argument(
        "--emergency", type=float, default=120.0, help="thermal limit after an outage, %% of the normal limit"
    )
    group.add_argument(
        "--contingency-vmin", type=float, default=0.90, help="undervoltage limit after an outage"
    )
    group.add_argument(
        "--contingency-vmax", type=float, default=1.10, help="overvoltage limit after an outage"
    )
    group.add_argument(
        "--pre-existing",
        choices=["no-worse", "contribution", "ignore"],  # siting.limits.PRE_EXISTING_POLICIES
        default="no-worse",
        help="a limit the base case already breaks: binds once made worse (default), where the added "
        "load contributes to it (thermal: distribution factor ≥ --contribution-df), or never",
    )
    group.add_argument(
        "--contribution-df",
        type=float,
        default=0.20,  # siting.limits.CONTRIBUTION_DF
        help="contribution: the distribution factor from which added load shares an existing overload "
        "(default 0.20, MISO's ERIS cutoff)",
    )
    group.add_argument(
        "--pre-existing-tolerance-pu", type=float, default=0.001, help="no-worse: voltage change allowed (pu)"
    )
    group.add_argument(
        "--pre-existing-tolerance-percent",
        type=float,
        default=0.1,
        help="no-worse: loading change allowed (points)",
    )


def add_own_data(parser: argparse.ArgumentParser) -> None:
    """Flags that bring the user's own data onto the grid (``siting.sources.own``)."""
    group = parser.add_argument_group("your own data")
    group.add_argument(
        "--profiles", metavar="FILE", help="load profiles, CSV or Parquet (time × load/bus/substation)"
    )
    group.add_argument("--profiles-tz", metavar="ZONE", help="time zone of profile times that carry none")
    group.add_argument(
        "--dispatch",
        choices=["load-following", "case"],  # siting.sources.user_profiles.DISPATCH_RULES
        help="generation with --profiles: in proportion to total load, or the case's own "
        "(default: load-following where the case has voltage-controlled generators)",
    )
    group.add_argument(
        "--bus-coords", metavar="FILE", help="bus coordinates: bus, lon, lat (CSV or GeoPackage)"
    )
    group.add_argument(
        "--substation-list", metavar="FILE", help="your substations: name, bus, lon/lat [, firm MVA]"
    )
    group.add_argument(
        "--substation-list-mode",
        choices=["replace", "augment"],
        default="replace",
        help="use the list alone or add it",
    )
    group.add_argument(
        "--candidates",
        choices=["substations", "buses", "feeder"],
        default="substations",
        help="candidate connection points (feeder: an OpenDSS feeder's three-phase primary buses)",
    )
    group.add_argument(
        "--min-kv", type=float, default=0.0, help="with --candidates buses: lowest voltage (kV)"
    )
    group.add_argument(
        "--contingencies",
        metavar="FILE",
        help="your contingency set (CSV, MATPOWER contab .m or PSS/E .con) instead of every single outage",
    )


def load_own(args: argparse.Namespace):
    """The grid the flags name, with the user's own data read in."""
    from siting.sources.grid import load_grid
    from siting.sources.own import with_own_data

    note(f"Loading {args.grid} …")
    grid = load_grid(args.grid)
    return with_own_data(
        grid,
        profiles=args.profiles,
        time_zone=args.profiles_tz,
        bus_coords=args.bus_coords,
        substation_list=args.substation_list,
        list_mode=args.substation_list_mode,
        candidates=args.candidates,
        min_kv=args.min_kv,
        contingencies=args.contingencies,
        dispatch=args.dispatch,
    )


def add_engine(parser: argparse.ArgumentParser) -> None:
    """The generator flags of the power flows: reactive limits and who balances added load."""
    group = parser.add_argument_group("power flow")
    group.add_argument(
        "--enforce-q-lims",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="switch PV buses to PQ at their generators' reactive limits (default: off)",
    )
    group.add_argument(
        "--balance",
        choices=["slack", "participation"],
        default="slack",
        help="who supplies added load: the slack, or generators in proportion to their headroom",
    )


def engine_from(args: argparse.Namespace):
    """The engine options the power-flow flags give."""
    from siting.engine.flow import Balance, EngineOptions

    return EngineOptions(enforce_q_lims=args.enforce_q_lims, balance=Balance(mode=args.balance))


def limits_from(args: argparse.Namespace):
    """The study limits the limit flags give."""
    from siting.limits import StudyLimits

    return StudyLimits(
        vmin_pu=args.vmin,
        vmax_pu=args.vmax,
        contingency_vmin_pu=args.contingency_vmin,
        contingency_vmax_pu=args.contingency_vmax,
        emergency_factor=args.emergency / 100,
        pre_existing=args.pre_existing,
        worsening_pu=args.pre_existing_tolerance_pu,
        worsening_percent=args.pre_existing_tolerance_percent,
        contribution_df=args.contribution_df,
    )


def substation_ids(text: str | None) -> list[int] | None:
    """``--substations 0,3,7`` as ids."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise UsageError(f"--substations {text}: give substation ids as numbers, e.g. 0,3,7") from err
