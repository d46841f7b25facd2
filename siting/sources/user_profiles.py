"""Load profiles a user brings (SCADA/AMI exports): a CSV or Parquet table of time × element.

Rows are time steps (any fixed step: 15 min, hourly); columns name what they load, as one of

- a load's name (``net.load.name``), e.g. ``B1001-L1`` for a PSS/E case;
- PSS/E style ``Bus 1001 #1 MW`` (bus number and load ID, as TAMU's ACTIVSg2000 file and
  PowerWorld exports have them), and ``Bus 1001 #1 Mvar`` for its reactive power;
- a bus (its number in the case — PSS/E ``I``, MATPOWER ``BUS_I`` — or its name): every load at
  that bus, shared in proportion to their base MW;
- a substation name (``Grid.substations.name``): every load at its connection bus, likewise;
- an area or zone of the model (``area 1``, ``zone 11``: the bus table's PSS/E ``area`` /
  ``zone`` numbers): every load in it, shared in proportion to their base MW, as TAMU's
  ACTIVSg profiles spread area totals.

A key ending in ``MW`` or ``Mvar`` (either case) sets that quantity; a bare key sets MW; a key
ending in ``pu`` is a shape: each load it names at that multiple of its model MW and Mvar.
Where a load has MW and no Mvar, Mvar follows at the model's power factor (Q/P of the load). Times come
from a ``time`` column, the first column, or PowerWorld's ``Date`` and ``Time``; times without a
zone need one given explicitly, because a local clock repeats an hour each autumn.

The result has the ``Grid.profiles`` layout: columns ``(element, variable, index)`` with the
absolute MW / Mvar of each load at each step; loads the file does not name keep their model value.

Generation is not in the file. Under the ``load-following`` dispatch rule (``follow_load``) every
in-service generator's MW follows the system's total load, gen_i(t) = gen_i × Σload(t) / Σload,
the rule TAMU's ACTIVSg time series use, so the slack carries losses and not the whole swing between
the case's dispatch and the hour's load; under ``case`` generators keep the case's dispatch, which
suits a feeder or a case whose profiles stay near its own load level.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import UsageError
from siting.sources.grid import bus_index_of_number

_PSSE_KEY = re.compile(r"^bus\s+(\d+)\s*#\s*(\S+)$", re.IGNORECASE)
_QUANTITY = re.compile(r"^(.*?)\s+(mw|mvar|pu)$", re.IGNORECASE)
_REGION_KEY = re.compile(r"^(area|zone)[\s_]*(\d+)$", re.IGNORECASE)
# aggregate columns of a PowerWorld time-series export, which name no element
_AGGREGATES = {"num load", "total mw load", "total mvar load"}


def read_profiles(
    path: Path,
    net: pandapowerNet,
    time_zone: str | None = None,
    substations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The file's load profiles in ``Grid.profiles`` form (MW, Mvar per load and time step).

    Parameters
    ----------
    path
        CSV or Parquet file, time × element (module notes for the keys).
    net
        The grid the profiles are for.
    time_zone
        IANA zone (``America/Chicago``, ``UTC``) of times written without one; times that carry
        an offset are converted to it when given.
    substations
        ``Grid.substations``, so that columns may name substations.

    Raises
    ------
    UsageError
        Unknown keys (the first ten named), duplicate, unsorted or irregular times, missing
        values, negative load, or local times without a zone.
    """
    table = _read_table(path)
    time = _times(path, table, time_zone)
    values = table.drop(columns=[c for c in table.columns if _is_time_column(c) or c.lower() in _AGGREGATES])
    keys = _Keys(net, substations)
    p_parts: dict[int, np.ndarray] = {}
    q_parts: dict[int, np.ndarray] = {}
    unknown: list[str] = []
    for column in values.columns:
        key, quantity = _split_quantity(str(column))
        shares = keys.loads_of(key)
        if shares is None:
            unknown.append(str(column))
            continue
        series = pd.to_numeric(values[column], errors="coerce").to_numpy(float)
        _check_values(path, column, series, time)
        if quantity == "pu":  # a shape: each load at that multiple of its own model values
            for load in shares:
                for target, base in ((p_parts, "p_mw"), (q_parts, "q_mvar")):
                    target[load] = target.get(load, 0.0) + series * float(net.load.at[load, base])
            continue
        target = q_parts if quantity == "mvar" else p_parts
        for load, share in shares.items():
            target[load] = target.get(load, 0.0) + series * share
    if unknown:
        raise UsageError(
            f"{path}: {len(unknown)} column(s) name no load, bus or substation of the grid "
            f"(first ten: {', '.join(unknown[:10])}); use load names, 'Bus <n> #<id> MW', bus numbers, "
            "substation names or 'area <n>' / 'zone <n>'"
        )
    if not p_parts and not q_parts:
        raise UsageError(f"{path}: no load columns (keys as in the siting documentation for --profiles)")
    return _assemble(net, time, p_parts, q_parts)


DISPATCH_RULES = ("load-following", "case")


def default_dispatch(net: pandapowerNet) -> str:
    """``load-following`` for a case with voltage-controlled generators (transmission), else ``case``."""
    return "load-following" if bool(net.gen["in_service"].any()) else "case"


def generation_following(net: pandapowerNet, load_ratio: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Each generator's and static generator's MW (steps × units) at ``load_ratio`` × its case MW."""
    return {
        (element, "p_mw"): load_ratio[:, None] * net[element]["p_mw"].to_numpy(float)
        for element in ("gen", "sgen")
    }


def follow_load(net: pandapowerNet, profiles: pd.DataFrame) -> pd.DataFrame:
    """Load ``profiles`` (``read_profiles``) with generation following the total load (module notes).

    The total counts every in-service load, at its profile where it has one and at its model MW
    where not; generators out of service stay out.
    """
    loads = net.load[net.load["in_service"].astype(bool)]
    base = loads["p_mw"].to_numpy(float) * loads["scaling"].to_numpy(float)
    total = np.full(len(profiles), base.sum())
    if ("load", "p_mw") in profiles.columns.droplevel("index"):
        given = profiles["load"]["p_mw"]
        given = given.loc[:, given.columns.isin(loads.index)]
        scaling = loads["scaling"].reindex(given.columns).to_numpy(float)
        total += given.to_numpy() @ scaling - base[loads.index.get_indexer(given.columns)].sum()
    if base.sum() <= 0:
        raise UsageError(f"{net.name or 'the grid'}: has no load in service for generation to follow")
    frames = {
        key: pd.DataFrame(values, index=profiles.index, columns=net[key[0]].index)
        for key, values in generation_following(net, total / base.sum()).items()
        if values.shape[1]
    }
    if not frames:
        return profiles
    following = pd.concat(frames, axis=1, names=["element", "variable", "index"])
    return pd.concat([profiles, following], axis=1).sort_index(axis=1)  # read_profiles gives loads only


def check_covers(profiles: pd.DataFrame, when: pd.Timestamp | str, what: str = "the operating time") -> None:
    """Refuse an operating time outside the profiles' span, naming both."""
    index = profiles.index
    moment = pd.Timestamp(when)
    if index.tz is not None and moment.tzinfo is None:
        moment = moment.tz_localize(index.tz)
    if not index[0] <= moment <= index[-1]:
        raise UsageError(f"{what} {moment} is outside the profiles' span {index[0]} – {index[-1]}")


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UsageError(f"{path}: profile file not found")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        with path.open(errors="replace") as handle:
            first = handle.readline()
        # PowerWorld exports put the time-point object's name on a line of its own first
        skip = 1 if first.split(",")[0].strip().upper().startswith("PW") else 0
        return pd.read_csv(path, skiprows=skip)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise UsageError(
            f"{path}: not a readable CSV/Parquet table ({str(err).splitlines()[0][:150]})"
        ) from err


def _is_time_column(column: object) -> bool:
    return str(column).strip().lower() in ("time", "date", "timestamp", "datetime")


def _times(path: Path, table: pd.DataFrame, time_zone: str | None) -> pd.DatetimeIndex:
    lower = {str(c).strip().lower(): c for c in table.columns}
    if "date" in lower and "time" in lower:
        text = table[lower["date"]].astype(str) + " " + table[lower["time"]].astype(str)
    elif "time" in lower or "timestamp" in lower or "datetime" in lower:
        text = table[lower.get("time", lower.get("timestamp", lower.get("datetime")))]
    else:
        raise UsageError(f"{path}: no time column (call it 'time', or give PowerWorld's 'Date' and 'Time')")
    try:
        time = pd.DatetimeIndex(pd.to_datetime(text, format="mixed"))
    except (ValueError, TypeError) as err:
        raise UsageError(f"{path}: times that cannot be read ({str(err).splitlines()[0][:120]})") from err
    if time.tz is None:
        if time_zone is None:
            raise UsageError(
                f"{path}: times carry no zone; give the zone they are in (e.g. America/Chicago or UTC) — "
                "a local clock repeats an hour when daylight saving time ends"
            )
        try:
            time = time.tz_localize(time_zone, ambiguous="raise", nonexistent="raise")
        except Exception as err:  # pytz/zoneinfo raise their own kinds for ambiguous and unknown
            raise UsageError(f"{path}: times in {time_zone}: {str(err).splitlines()[0][:150]}") from err
    elif time_zone is not None:
        time = time.tz_convert(time_zone)
    _check_steps(path, time)
    return time.rename("time")


def _check_steps(path: Path, time: pd.DatetimeIndex) -> None:
    if len(time) < 2:
        raise UsageError(f"{path}: needs at least two time steps")
    duplicated = time.duplicated()
    if duplicated.any():
        raise UsageError(f"{path}: time {time[duplicated][0]} appears more than once")
    steps = np.diff(time.asi8)
    if (steps < 0).any():
        at = int(np.argmax(steps < 0))
        raise UsageError(f"{path}: times are not sorted ({time[at + 1]} follows {time[at]})")
    step = np.median(steps)
    if (steps != step).any():
        at = int(np.argmax(steps != step))
        raise UsageError(
            f"{path}: the time step is not regular: {time[at]} → {time[at + 1]} where the step is "
            f"{pd.Timedelta(int(step), 'ns')} (a gap or a changed step)"
        )


def _split_quantity(column: str) -> tuple[str, str]:
    match = _QUANTITY.match(column.strip())
    if match:
        return match.group(1).strip(), match.group(2).lower()
    return column.strip(), "mw"


class _Keys:
    """Lookups from a column key to the loads it names, built once per file."""

    def __init__(self, net: pandapowerNet, substations: pd.DataFrame | None) -> None:
        loads = net.load
        self.loads = loads
        self.by_name = loads.groupby(loads["name"].astype(str)).groups
        self.by_psse = {}
        if "psse_id" in loads:
            keys = zip(loads["bus"].astype(int), loads["psse_id"].astype(str).str.strip(), strict=True)
            self.by_psse = {key: int(i) for key, i in zip(keys, loads.index, strict=True)}
        self.by_bus = loads.groupby("bus").groups
        names = net.bus["name"].astype(str)
        unique = names[~names.duplicated(keep=False)]
        self.bus_by_name = dict(zip(unique, unique.index, strict=True))
        self.bus_of_number = bus_index_of_number(net)
        self.station_bus: dict[str, int] = {}
        if substations is not None:
            self.station_bus = dict(zip(substations["name"].astype(str), substations["bus"], strict=True))
        self.region_of = {
            kind: net.bus[kind].reindex(loads["bus"]).to_numpy()
            for kind in ("area", "zone")
            if kind in net.bus
        }

    def loads_of(self, key: str) -> dict[int, float] | None:
        """The loads a key names, with the share of the column each takes; None if it names none."""
        if key in self.by_name:
            return {int(i): 1.0 for i in self.by_name[key]}
        region = _REGION_KEY.match(key)
        if region:
            kind, number = region.group(1).lower(), int(region.group(2))
            if kind not in self.region_of:
                return None
            members = self.loads.index[self.region_of[kind] == number]
            return self._shares(members) if len(members) else None
        match = _PSSE_KEY.match(key)
        if match:
            load = self.by_psse.get((int(match.group(1)), match.group(2)))
            return None if load is None else {load: 1.0}
        bus: int | None
        if key.isdigit() and int(key) in self.bus_of_number.index:
            bus = int(self.bus_of_number[int(key)])
        else:
            bus = self.bus_by_name.get(key, self.station_bus.get(key))
        if bus is None or bus not in self.by_bus:
            return None
        return self._shares(self.by_bus[bus])

    def _shares(self, members: pd.Index) -> dict[int, float]:
        """Loads ``members``, each with its share of their total base MW (equal if all zero)."""
        at = self.loads.loc[members]
        base = at["p_mw"].to_numpy(float)
        shares = base / base.sum() if base.sum() > 0 else np.full(len(at), 1.0 / len(at))
        return {int(i): float(s) for i, s in zip(at.index, shares, strict=True)}


def _check_values(path: Path, column: object, values: np.ndarray, time: pd.DatetimeIndex) -> None:
    missing = np.isnan(values)
    if missing.any():
        raise UsageError(f"{path}: column '{column}' has no value at {time[int(np.argmax(missing))]}")
    if (values < 0).any():
        at = int(np.argmax(values < 0))
        raise UsageError(
            f"{path}: column '{column}' is negative ({values[at]:g}) at {time[at]}; loads are positive "
            "(model generation as its own element)"
        )


def _assemble(
    net: pandapowerNet, time: pd.DatetimeIndex, p_parts: dict[int, np.ndarray], q_parts: dict[int, np.ndarray]
) -> pd.DataFrame:
    loads = net.load
    for load, p in p_parts.items():
        if load not in q_parts:  # the model's power factor
            p0, q0 = float(loads.at[load, "p_mw"]), float(loads.at[load, "q_mvar"])
            q_parts[load] = p * (q0 / p0) if p0 else np.zeros_like(p)
    frames = {}
    for variable, parts in (("p_mw", p_parts), ("q_mvar", q_parts)):
        if parts:
            order = sorted(parts)
            frames[("load", variable)] = pd.DataFrame(
                np.column_stack([parts[i] for i in order]), index=time, columns=pd.Index(order)
            )
    return pd.concat(frames, axis=1, names=["element", "variable", "index"]).sort_index(axis=1)
