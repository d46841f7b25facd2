"""Flexible capacity: how much constant new load fits if a little of it may be curtailed.

The method of Norris et al., "Rethinking Load Growth" (Duke University, 2025): given a
headroom series h_t (MW), a new load L is curtailed by c_t = min(L, max(0, L − h_t)) at
each step; its curtailment rate is Σ c_t / (L × steps), computed per calendar year and
averaged over the years. Flexible capacity at a limit is the largest L whose rate stays
within it. Norris et al. applied it to whole balancing authorities; here it runs on any
headroom series, e.g. a substation's network-constrained hourly headroom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from siting.errors import UsageError

DEFAULT_LIMITS = (0.0025, 0.005, 0.01, 0.05)
LOAD_STEP_MW = 0.01
SERVED_SHARES = (0.5, 0.75, 0.9)

FLEX_COLUMNS = [
    "limit",
    "load_mw",
    "curtailment_rate",
    "curtailed_hours_per_year",
    "curtailed_mwh_per_year",
    "events_per_year",
    "mean_event_hours",
    "max_event_hours",
    "hours_ge_50pct_served",
    "hours_ge_75pct_served",
    "hours_ge_90pct_served",
]


def flex_column(limit: float) -> str:
    """The capacity-table column of the flexible capacity at curtailment ``limit`` (a fraction)."""
    return f"flex_{limit * 100:g}pct_mw"


def flexible_capacity(headroom: pd.Series, limits: tuple[float, ...] = DEFAULT_LIMITS) -> pd.DataFrame:
    """One row per curtailment limit: the largest constant load (MW) and its curtailment profile.

    Parameters
    ----------
    headroom : Series
        Hosting capacity (MW) per time step on a DatetimeIndex of equal steps (hourly or finer).
    limits : tuple of float
        Curtailment limits, each a fraction of the load's energy in (0, 1).

    Returns
    -------
    DataFrame
        ``FLEX_COLUMNS``: per limit the load (MW) and its curtailment profile;
        ``hours_ge_X_served`` count, per year, the curtailed hours in which at least X of the
        load is still served.

    Raises
    ------
    UsageError
        Fewer than two steps, no DatetimeIndex, NaN headroom or a limit outside (0, 1).
    """
    values, years, step_hours = _checked(headroom)
    if any(not 0 < limit < 1 for limit in limits):
        raise UsageError(f"curtailment limits {limits}: each must be in (0, 1)")
    rows = []
    for limit in limits:
        load = _largest_load(values, years, limit)
        rows.append({"limit": limit, "load_mw": load, **_profile(values, years, step_hours, load)})
    return pd.DataFrame(rows, columns=FLEX_COLUMNS)


def curtailment_rate(values: np.ndarray, years: np.ndarray, load_mw: float) -> float:
    """Mean over calendar years of curtailed energy / (load × steps)."""
    if load_mw <= 0:
        return 0.0
    curtailed = np.minimum(load_mw, np.maximum(0.0, load_mw - values))
    rates = [curtailed[years == year].sum() / (load_mw * (years == year).sum()) for year in np.unique(years)]
    return float(np.mean(rates))


def _checked(headroom: pd.Series) -> tuple[np.ndarray, np.ndarray, float]:
    if not isinstance(headroom.index, pd.DatetimeIndex) or len(headroom) < 2:
        raise UsageError("headroom: need a series of at least two steps on a DatetimeIndex")
    values = headroom.to_numpy(dtype=float)
    if np.isnan(values).any():
        raise UsageError(f"headroom: {int(np.isnan(values).sum())} steps are NaN; fill or drop them first")
    step_hours = float(pd.Series(headroom.index).diff().median() / pd.Timedelta(hours=1))
    return np.maximum(values, 0.0), headroom.index.year.to_numpy(), step_hours


def _largest_load(values: np.ndarray, years: np.ndarray, limit: float) -> float:
    """Bisection on L: the rate grows with L, from 0 (L ≤ min h) towards 1.

    Above max h every step curtails at least (L − max h) / L, so the answer is below
    max h / (1 − limit).
    """
    allowed = limit * (1 + 1e-9)  # a rate equal to the limit meets it, rounding aside
    lo, hi = float(values.min()), float(values.max()) / (1 - limit) + LOAD_STEP_MW
    while hi - lo > LOAD_STEP_MW / 2:
        mid = (lo + hi) / 2
        if curtailment_rate(values, years, mid) <= allowed:
            lo = mid
        else:
            hi = mid
    return float(np.floor(lo / LOAD_STEP_MW) * LOAD_STEP_MW)


def _profile(values: np.ndarray, years: np.ndarray, step_hours: float, load: float) -> dict:
    n_years = len(np.unique(years))
    curtailed = np.minimum(load, np.maximum(0.0, load - values))
    hit = curtailed > 1e-9
    events = _runs(hit)
    served = 1.0 - np.divide(curtailed, load, out=np.zeros_like(curtailed), where=load > 0)
    profile = {
        "curtailment_rate": curtailment_rate(values, years, load),
        "curtailed_hours_per_year": hit.sum() * step_hours / n_years,
        "curtailed_mwh_per_year": curtailed.sum() * step_hours / n_years,
        "events_per_year": len(events) / n_years,
        "mean_event_hours": float(np.mean(events) * step_hours) if events else 0.0,
        "max_event_hours": float(np.max(events) * step_hours) if events else 0.0,
    }
    for share in SERVED_SHARES:
        count = (hit & (served >= share - 1e-12)).sum()
        profile[f"hours_ge_{int(share * 100)}pct_served"] = count * step_hours / n_years
    return profile


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of consecutive True values."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[::2]).tolist()
