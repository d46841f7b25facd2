"""Where a 5–20 MW micro data center could connect: one row per substation.

The rule, in order of preference:

1. **Model substations.** When the model names substations (SimBench's ``substation``
   table, a ``substation`` column on buses), each named substation is one row. Its buses
   are those carrying its name plus the ends of transformers carrying its name.
2. **Transformer low-voltage buses.** Otherwise each group of in-service transformers
   feeding the same low-voltage busbar (buses joined by closed bus-bus switches count as
   one busbar, so parallel units are one substation) is one row.
3. **Load buses.** Otherwise (transmission models without either) every in-service bus
   that serves load is one row.

The connection bus, where new load is added, is the station bus that serves the most
load at the station's lowest voltage; with no load there, the lowest-voltage bus with the
most branches. Buses that only hold generators or external grids, and buses below
``MIN_CONNECTION_KV`` (a 5–20 MW site does not connect at low voltage), are never
connection buses. Ratings are summed over in-service transformer units whose
low-voltage side is at the connection voltage; firm (N-1) rating is the installed rating
less the largest unit (zero with a single unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from siting.errors import GridError
from siting.sources.geo import WGS84, bus_lonlat

MIN_CONNECTION_KV = 1.0

SUBSTATION_COLUMNS = [
    "id",
    "name",
    "bus",
    "bus_name",
    "vn_kv",
    "voltage_level",
    "load_mw",
    "load_mvar",
    "n_transformers",
    "transformer_mva",
    "firm_transformer_mva",
    "rule",
    "lon",
    "lat",
]


def voltage_level(vn_kv: float) -> str:
    """Name of a nominal voltage: LV < 1 kV ≤ MV < 60 kV ≤ HV < 220 kV ≤ EHV."""
    if vn_kv < 1.0:
        return "LV"
    if vn_kv < 60.0:
        return "MV"
    if vn_kv < 220.0:
        return "HV"
    return "EHV"


def find_substations(net: pandapowerNet, grid_name: str) -> gpd.GeoDataFrame:
    """Every place a micro site could connect, as a GeoDataFrame in EPSG:4326 (see module doc).

    A model without any bus coordinates gives substations with NaN lon/lat and empty
    geometry (capacity and selection run; maps and distances cannot); a model with some
    coordinates must have them at every substation bus.
    """
    coords = bus_lonlat(net)
    located = not coords["lon"].isna().all()  # a model without any coordinates is fine: no map
    fused = fused_bus_groups(net)
    if _has_model_substations(net):
        stations, rule = _model_substations(net), "model substation"
    elif _connection_transformers(net).any():
        stations, rule = _transformer_stations(net, fused), "transformer LV bus"
    else:
        stations, rule = _load_bus_stations(net), "load bus"

    facts = _BusFacts.of(net, fused)
    rows = []
    for name, buses in stations:
        bus = _connection_bus(net, buses, facts)
        if bus is not None:
            rows.append(_describe(net, name, bus, facts, rule))
    if not rows:
        raise GridError(
            f"{grid_name}: no substation where a 5–20 MW site could connect (no model "
            f"substation, transformer or load bus at {MIN_CONNECTION_KV:g} kV or above)"
        )
    table = pd.DataFrame(rows)
    table.insert(0, "id", np.arange(len(table)))
    table = table.join(coords, on="bus")
    missing = table["lon"].isna()
    if located and missing.any():
        names = ", ".join(table.loc[missing, "bus_name"].astype(str).head(5))
        raise GridError(
            f"{grid_name}: {int(missing.sum())} substation bus(es) have no coordinates "
            f"(e.g. {names}); add them to net.bus['geo']"
        )
    geometry = gpd.points_from_xy(table["lon"], table["lat"]) if located else [None] * len(table)
    return gpd.GeoDataFrame(table[SUBSTATION_COLUMNS], geometry=geometry, crs=WGS84)


def describe_substations(net: pandapowerNet, stations: list[tuple[str, int]], rule: str) -> pd.DataFrame:
    """Rows in the ``find_substations`` layout (without id and coordinates) for given stations.

    Stations come as (name, connection bus): a user's own list, where the connection bus is
    theirs to choose.
    """
    facts = _BusFacts.of(net, fused_bus_groups(net))
    return pd.DataFrame([_describe(net, name, bus, facts, rule) for name, bus in stations])


def fused_bus_groups(net: pandapowerNet) -> pd.Series:
    """Group number of every bus; buses joined by closed bus-bus switches share a group."""
    position = pd.Series(np.arange(len(net.bus)), index=net.bus.index)
    switch = net.switch
    closed = switch[(switch["et"] == "b") & switch["closed"].astype(bool)]
    rows = position.loc[closed["bus"]].to_numpy()
    cols = position.loc[closed["element"].astype(np.int64)].to_numpy()
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(net.bus),) * 2)
    _, labels = connected_components(graph, directed=False)
    return pd.Series(labels, index=net.bus.index)


def _has_model_substations(net: pandapowerNet) -> bool:
    return "substation" in net.bus.columns and net.bus["substation"].notna().any()


def _model_substations(net: pandapowerNet) -> list[tuple[str, set[int]]]:
    buses_of: dict[str, set[int]] = {}
    for bus, name in net.bus["substation"].dropna().items():
        buses_of.setdefault(str(name), set()).add(int(bus))
    if "substation" in net.trafo.columns:
        for trafo in net.trafo[net.trafo["substation"].notna()].itertuples():
            buses_of.setdefault(str(trafo.substation), set()).update((int(trafo.hv_bus), int(trafo.lv_bus)))
    return sorted(buses_of.items())


def _connection_transformers(net: pandapowerNet) -> pd.Series:
    lv_kv = net.bus["vn_kv"].reindex(net.trafo["lv_bus"]).to_numpy()
    # a three-winding unit's internal star point (PSS/E cases) is no busbar a site could reach
    star = net.bus.get("star_point", pd.Series(False, index=net.bus.index)).astype(bool)
    lv_star = star.reindex(net.trafo["lv_bus"]).to_numpy()
    return pd.Series(
        net.trafo["in_service"].astype(bool).to_numpy() & (lv_kv >= MIN_CONNECTION_KV) & ~lv_star,
        index=net.trafo.index,
    )


def _transformer_stations(net: pandapowerNet, fused: pd.Series) -> list[tuple[str, set[int]]]:
    trafos = net.trafo[_connection_transformers(net)]
    groups: dict[int, set[int]] = {}
    names: dict[int, str] = {}
    for trafo in trafos.itertuples():
        group = int(fused[trafo.lv_bus])
        groups.setdefault(group, set()).add(int(trafo.lv_bus))
        names.setdefault(group, _station_name(net, trafo))
    return [(names[g], groups[g]) for g in sorted(groups)]


def _station_name(net: pandapowerNet, trafo: Any) -> str:  # a row of DataFrame.itertuples
    bus_name = net.bus.at[trafo.lv_bus, "name"]
    if isinstance(bus_name, str) and bus_name:
        return bus_name
    return f"bus {trafo.lv_bus}"


def _load_bus_stations(net: pandapowerNet) -> list[tuple[str, set[int]]]:
    loads = net.load[net.load["in_service"].astype(bool)]
    buses = sorted(set(loads["bus"].astype(int)))
    return [(_bus_label(net, bus), {bus}) for bus in buses]


def _bus_label(net: pandapowerNet, bus: int) -> str:
    name = net.bus.at[bus, "name"]
    return name if isinstance(name, str) and name else f"bus {bus}"


@dataclass(frozen=True)
class _BusFacts:
    """Per-bus facts computed once for all stations."""

    load_mw: pd.Series
    load_mvar: pd.Series
    degree: pd.Series
    source_buses: frozenset[int]
    fused: pd.Series

    @classmethod
    def of(cls, net: pandapowerNet, fused: pd.Series) -> _BusFacts:
        loads = net.load[net.load["in_service"].astype(bool)]
        ends = pd.concat([net.line["from_bus"], net.line["to_bus"], net.trafo["hv_bus"], net.trafo["lv_bus"]])
        return cls(
            load_mw=_sum_by_bus(net, loads, loads["p_mw"] * loads["scaling"]),
            load_mvar=_sum_by_bus(net, loads, loads["q_mvar"] * loads["scaling"]),
            degree=ends.value_counts().reindex(net.bus.index, fill_value=0),
            source_buses=frozenset(
                np.concatenate([net[table]["bus"].to_numpy() for table in ("ext_grid", "gen", "sgen")])
                .astype(int)
                .tolist()
            ),
            fused=fused,
        )


def _sum_by_bus(net: pandapowerNet, loads: pd.DataFrame, value: pd.Series) -> pd.Series:
    return value.groupby(loads["bus"]).sum().reindex(net.bus.index, fill_value=0.0)


def _connection_bus(net: pandapowerNet, buses: set[int], facts: _BusFacts) -> int | None:
    bus = net.bus.loc[sorted(buses)]
    bus = bus[bus["in_service"].astype(bool) & (bus["vn_kv"] >= MIN_CONNECTION_KV)]
    serves_load = facts.load_mw.loc[bus.index] > 0
    bus = bus[serves_load.to_numpy() | ~bus.index.isin(list(facts.source_buses))]
    if bus.empty:
        return None
    lowest = bus.index[bus["vn_kv"] == bus["vn_kv"].min()]
    order = pd.DataFrame({"load": facts.load_mw.loc[lowest], "degree": facts.degree.loc[lowest]})
    order = order.sort_values(["load", "degree"], ascending=False, kind="stable")
    return int(order.index[0])


def _describe(net: pandapowerNet, name: str, bus: int, facts: _BusFacts, rule: str) -> dict:
    group = facts.fused.index[facts.fused == facts.fused[bus]]
    vn_kv = float(net.bus.at[bus, "vn_kv"])
    trafo = net.trafo[
        net.trafo["in_service"].astype(bool)
        & net.trafo["lv_bus"].isin(group)
        & np.isclose(net.trafo["vn_lv_kv"], vn_kv, rtol=0.15)
    ]
    unit_mva = np.repeat(trafo["sn_mva"].to_numpy(), trafo["parallel"].astype(int).to_numpy())
    installed = float(unit_mva.sum()) if len(unit_mva) else np.nan
    firm = float(unit_mva.sum() - unit_mva.max()) if len(unit_mva) else np.nan
    return {
        "name": name,
        "bus": bus,
        "bus_name": _bus_label(net, bus),
        "vn_kv": vn_kv,
        "voltage_level": voltage_level(vn_kv),
        "load_mw": float(facts.load_mw.loc[group].sum()),
        "load_mvar": float(facts.load_mvar.loc[group].sum()),
        "n_transformers": len(unit_mva),
        "transformer_mva": installed,
        "firm_transformer_mva": firm,
        "rule": rule,
    }
