"""The operating point at which capacity is judged: a planning case, the net-load peak, or a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from siting.errors import SettingError, UsageError
from siting.sources.grid import Grid


@dataclass(frozen=True)
class OperatingPoint:
    """Element values (absolute; NaN keeps the model's) that define one state of the grid."""

    label: str  # e.g. "case:hL", "netpeak 2016-01-12 18:00", "model values"
    values: dict[tuple[str, str], np.ndarray]  # (table, column) → one value per table row
    time: pd.Timestamp | None = None


def net_load(profiles: pd.DataFrame) -> pd.Series:
    """Load minus static generation (wind, PV, other in-feed) at each time step (MW).

    Voltage-controlled generators are left out: they are dispatched to follow the load, so
    subtracting them would leave only losses.
    """
    total = profiles[("load", "p_mw")].sum(axis=1)
    if ("sgen", "p_mw") in profiles.columns.droplevel("index"):
        total = total - profiles[("sgen", "p_mw")].sum(axis=1)
    return total


def net_peak_step(profiles: pd.DataFrame) -> int:
    """Position of the time step with the largest net load."""
    return int(np.argmax(net_load(profiles).to_numpy()))


def profile_values(grid: Grid, step: int) -> dict[tuple[str, str], np.ndarray]:
    """Element values of one profile time step, aligned to the pandapower tables."""
    profiles = grid.profiles
    if profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to take step {step} of")
    row = profiles.iloc[step]
    values = {}
    for element, variable in profiles.columns.droplevel("index").unique():
        series = row[(element, variable)]
        values[(element, variable)] = series.reindex(grid.net[element].index).to_numpy(float)
    return values


def operating_point(grid: Grid, at: str | None = None) -> OperatingPoint:
    """Resolve ``--at``: ``case:<name>``, ``netpeak``, a time in the profiles, or the default.

    The default is the planning case ``hL`` (high load, no generation) where the grid has
    SimBench study cases, else the net-load peak of the profiles, else the model's values.
    """
    cases = study_cases(grid)
    if at is None:
        if cases is not None and "hL" in cases:
            at = "case:hL"
        elif grid.profiles is not None:
            at = "netpeak"
        else:
            return OperatingPoint("model values", {})
    if at.startswith("case:"):
        name = at.removeprefix("case:")
        if cases is None or name not in cases:
            known = ", ".join(cases) if cases else "none"
            raise SettingError("at", at, f"{grid.name} has no study case '{name}' (study cases: {known})")
        return OperatingPoint(at, cases[name])
    if grid.profiles is None:
        raise SettingError(
            "at", at, f"{grid.name} has no time-series profiles; use case:<name> or leave it out"
        )
    if at == "netpeak":
        step = net_peak_step(grid.profiles)
        time = grid.profiles.index[step]
        return OperatingPoint(f"netpeak {time:%Y-%m-%d %H:%M}", profile_values(grid, step), time)
    try:
        time = pd.Timestamp(at)
    except ValueError as err:
        raise SettingError("at", at, "not case:<name>, netpeak or a time like 2016-01-12T18:00") from err
    index = grid.profiles.index
    if (time.tzinfo is None) != (index.tz is None):
        zone = "with" if index.tz is not None else "without"
        raise SettingError("at", at, f"the profiles' times are {zone} a time zone; give the time so too")
    steps = np.flatnonzero(index == time)
    if not len(steps):
        raise SettingError("at", at, f"not a time step of the profiles ({index[0]} … {index[-1]})")
    # a local-time index repeats the hour at the end of daylight saving: the first is the earlier
    step = int(steps[0])
    label = f"{time:%Y-%m-%d %H:%M}" + (f" (first of {len(steps)})" if len(steps) > 1 else "")
    return OperatingPoint(label, profile_values(grid, step), time)


def study_cases(grid: Grid) -> dict[str, dict[tuple[str, str], np.ndarray]] | None:
    """SimBench study cases (hL, n1, hW, hPV, lW, lPV) as absolute element values."""
    net = grid.net
    if "loadcases" not in net or not len(net.loadcases) or "profiles" not in net:
        return None
    import simbench

    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=False)
    names = list(next(iter(absolute.values())).index)
    return {
        name: {
            key: frame.loc[name].reindex(net[key[0]].index).to_numpy(float)
            for key, frame in absolute.items()
            if frame.shape[1]
        }
        for name in names
    }
