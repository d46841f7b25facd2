"""Scenario changes to a grid's own time series: load growth and a coarser time step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from siting.errors import SettingError, UsageError, check_number
from siting.sources.grid import Grid
from siting.sources.peak import net_load, study_cases

PEAK_CASE = "peak-case"


def load_scale_factor(grid: Grid, scale: str | float) -> float:
    """The factor on every load profile: a number, or ``peak-case``.

    ``peak-case`` is the factor that makes the year's peak net load (loads × factor − static
    generation) equal the planning case ``hL``.
    """
    if isinstance(scale, int | float):
        factor = float(scale)
    elif str(scale).strip() == PEAK_CASE:
        factor = _peak_case_factor(grid)
    else:
        try:
            factor = float(scale)
        except ValueError as err:
            raise SettingError("load_scale", scale, f"give a number (e.g. 1.5) or {PEAK_CASE}") from err
    check_number("load_scale", factor, above=0)
    return factor


def simulation_year(
    grid: Grid, *, load_scale: str | float = 1.0, step_minutes: float | None = None
) -> tuple[Grid, float]:
    """The grid a fleet is simulated on: loads × ``load_scale``, profiles at ``step_minutes``.

    Returns
    -------
    (Grid, float)
        The new grid (the given one is not changed) and the load factor applied.
    """
    factor = load_scale_factor(grid, load_scale)
    year = scale_loads(grid, factor)
    if step_minutes is not None:
        year = resample_profiles(year, step_minutes)
    return year, factor


def scale_loads(grid: Grid, factor: float) -> Grid:
    """The grid with every load profile (MW and Mvar) multiplied by ``factor``."""
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to scale")
    profiles = grid.profiles.copy()
    columns = profiles.columns.get_level_values("element") == "load"
    profiles.loc[:, columns] = profiles.loc[:, columns] * factor
    return dataclasses.replace(grid, profiles=profiles)


def resample_profiles(grid: Grid, minutes: float) -> Grid:
    """The grid with its profiles averaged over steps of ``minutes`` (a multiple of its own step)."""
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to resample")
    own = profile_step_minutes(grid.profiles)
    if minutes == own:
        return grid
    ratio = minutes / own
    if minutes <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        raise SettingError(
            "step_minutes", minutes, f"must be a whole multiple of the grid's own {own:g}-minute step"
        )
    # by position, not by clock: SimBench's wall-clock times repeat an hour when summer time ends
    ratio = round(ratio)
    block = np.arange(len(grid.profiles)) // ratio
    profiles = grid.profiles.groupby(block).mean()
    profiles.index = grid.profiles.index[::ratio][: len(profiles)]
    return dataclasses.replace(grid, profiles=profiles)


def profile_step_minutes(profiles: pd.DataFrame) -> float:
    """The step of a profile index, in minutes (the most common spacing)."""
    if len(profiles.index) < 2:
        raise UsageError("the grid's profiles have fewer than two time steps")
    spacing = pd.Series(profiles.index[1:] - profiles.index[:-1]).mode().iloc[0]
    return spacing / pd.Timedelta(minutes=1)


def _peak_case_factor(grid: Grid) -> float:
    cases = study_cases(grid)
    if cases is None or "hL" not in cases:
        raise SettingError("load_scale", PEAK_CASE, f"{grid.name} has no planning case hL; give a number")
    if grid.profiles is None:
        raise SettingError("load_scale", PEAK_CASE, f"{grid.name} has no time-series profiles")
    case = cases["hL"]
    target = np.nansum(case[("load", "p_mw")]) - np.nansum(case.get(("sgen", "p_mw"), np.zeros(1)))
    load = grid.profiles[("load", "p_mw")].sum(axis=1).to_numpy()
    other = load - net_load(grid.profiles).to_numpy()  # static generation at each step
    low, high = 0.0, 1.0
    while np.max(high * load - other) < target:
        high *= 2
        if high > 1e4:
            raise UsageError(f"--load-scale {PEAK_CASE}: the profiles' load is too small to reach hL")
    for _ in range(60):  # the peak net load grows monotonically with the factor
        middle = (low + high) / 2
        low, high = (middle, high) if np.max(middle * load - other) < target else (low, middle)
    return round(high, 6)
