"""Scenario changes to a grid's own time series: load growth and a coarser time step."""

from __future__ import annotations

import copy
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
    if step_minutes is None:
        return scale_loads(grid, factor), factor
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to resample")
    ratio = _step_ratio(grid.profiles, step_minutes)
    if ratio == 1:
        return scale_loads(grid, factor), factor
    profiles = _by_column_blocks(grid.profiles, lambda block: _resampled(_scaled(block, factor), ratio))
    return dataclasses.replace(grid, profiles=profiles), factor


def scale_loads(grid: Grid, factor: float) -> Grid:
    """The grid with every load profile (MW and Mvar) multiplied by ``factor``."""
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to scale")
    if factor == 1.0:
        return grid  # × 1 changes no value: the profiles are shared, not copied (1.35 GB on SimBench)
    return dataclasses.replace(grid, profiles=_by_column_blocks(grid.profiles, lambda b: _scaled(b, factor)))


def grow_loads(grid: Grid, factor: float, *, in_place: bool = False) -> Grid:
    """The grid with every load grown: its model values and, when it has them, its profiles.

    Unlike :func:`scale_loads` (the simulated year only) this moves every operating point a
    study can judge capacity at: a SimBench study case (the model's values × the case's
    factors), the net-load peak of the profiles, a time, or the model's own values.
    Generation is not grown.

    Parameters
    ----------
    grid : Grid
        The grid; it is not changed, except its profiles with ``in_place``.
    factor : float
        Factor (> 0) on every load's MW and Mvar.
    in_place : bool
        Grow ``grid``'s profiles where they are instead of in a copy, for a caller that no
        longer needs ``grid`` (the copy is 1.35 GB on SimBench's HV+MV grid).

    Returns
    -------
    Grid
        A new grid sharing every table but the loads (and the profiles, grown unless
        ``in_place``) with ``grid``.
    """
    check_number("factor", factor, above=0)
    if in_place and grid.profiles is not None and factor != 1.0:
        _scale_in_place(grid.profiles, factor)
        grown = grow_loads(dataclasses.replace(grid, profiles=None), factor)
        return dataclasses.replace(grown, profiles=grid.profiles)
    # a new load table in a shallow copy: every stage deep-copies the net before it solves, so
    # the rest (and the large SimBench profile tables in it) can be shared with the given grid
    net = copy.copy(grid.net)
    net["load"] = grid.net.load.copy()
    for column in ("p_mw", "q_mvar"):
        net.load[column] = net.load[column] * factor
    grown = dataclasses.replace(grid, net=net)
    return scale_loads(grown, factor) if grid.profiles is not None else grown


def resample_profiles(grid: Grid, minutes: float) -> Grid:
    """The grid with its profiles averaged over steps of ``minutes`` (a multiple of its own step)."""
    if grid.profiles is None:
        raise UsageError(f"{grid.name}: has no time-series profiles to resample")
    ratio = _step_ratio(grid.profiles, minutes)
    if ratio == 1:
        return grid
    resampled = _by_column_blocks(grid.profiles, lambda block: _resampled(block, ratio))
    return dataclasses.replace(grid, profiles=resampled)


# Columns per block when profiles are scaled or resampled: each block's temporaries are
# 8 bytes × steps × this (72 MB for a 15-minute year), not several copies of every column.
BLOCK_COLUMNS = 256


def _by_column_blocks(profiles: pd.DataFrame, change) -> pd.DataFrame:
    """``change`` (a frame → a frame with the same columns) applied to blocks of columns.

    The blocks are gathered into one array: every profile operation here works column by column, so the
    blocks give what the whole frame would, without the whole frame's temporaries.
    """
    values, index = None, None
    for start in range(0, profiles.shape[1], BLOCK_COLUMNS):
        part = change(profiles.iloc[:, start : start + BLOCK_COLUMNS])
        if values is None:
            values, index = np.empty((profiles.shape[1], len(part))), part.index
        values[start : start + part.shape[1]] = part.to_numpy(float).T
    if values is None:
        return change(profiles)
    return pd.DataFrame(values.T, index=index, columns=profiles.columns, copy=False)


def _load_columns(profiles: pd.DataFrame) -> np.ndarray:
    """Whether each column of ``profiles`` is a load's (MW or Mvar)."""
    return profiles.columns.get_level_values("element") == "load"


def _scale_in_place(profiles: pd.DataFrame, factor: float) -> None:
    """Every load column × ``factor``, written into ``profiles``, a block of columns at a time."""
    columns = np.flatnonzero(_load_columns(profiles))
    for start in range(0, len(columns), BLOCK_COLUMNS):
        block = columns[start : start + BLOCK_COLUMNS]
        profiles.iloc[:, block] = profiles.iloc[:, block].to_numpy(float) * factor


def _scaled(profiles: pd.DataFrame, factor: float) -> pd.DataFrame:
    if factor == 1.0:
        return profiles
    profiles = profiles.copy()
    columns = _load_columns(profiles)
    profiles.loc[:, columns] = profiles.loc[:, columns] * factor
    return profiles


def _step_ratio(profiles: pd.DataFrame, minutes: float) -> int:
    """How many of the profiles' own steps make one of ``minutes``; refused unless whole."""
    own = profile_step_minutes(profiles)
    ratio = minutes / own
    if minutes <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
        raise SettingError(
            "step_minutes", minutes, f"must be a whole multiple of the grid's own {own:g}-minute step"
        )
    return round(ratio)


def _resampled(profiles: pd.DataFrame, ratio: int) -> pd.DataFrame:
    if ratio == 1:
        return profiles
    # by position, not by clock: SimBench's wall-clock times repeat an hour when summer time ends
    block = np.arange(len(profiles)) // ratio
    resampled = profiles.groupby(block).mean()
    resampled.index = profiles.index[::ratio][: len(resampled)]
    return resampled


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
