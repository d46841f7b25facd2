"""TAMU ACTIVSg synthetic grids: MATPOWER case + real bus coordinates + hourly area loads.

Each bus gets its latitude/longitude and substation from the coordinates file. Loads follow
their area's hourly total: load_i(t) = load_i × area(t) / Σ_area load, P and Q alike
(constant power factor; TAMU's change table scales P only). Generators in service scale
with the system total, gen_i(t) = gen_i × total(t) / Σ load, so the slack carries losses
and not the whole swing between the case's dispatch and the hour's load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import GridError
from siting.sources.catalog import CatalogEntry
from siting.sources.geo import set_bus_lonlat
from siting.sources.grid import read_matpower
from siting.sources.user_profiles import generation_following


def load_activsg(entry: CatalogEntry) -> tuple[pandapowerNet, pd.DataFrame]:
    """The catalog entry's net (with coordinates and substations) and its hourly profiles."""
    if entry.case is None:  # read_catalog gives every entry without a 'source' a case
        raise GridError(f"grid {entry.name}: the catalog names no 'case' file")
    net = read_matpower(entry.case)
    coords = pd.read_csv(entry.bus_coords)
    if len(coords) != len(net.bus) or not (coords["bus_name"].to_numpy() == net.bus["name"].to_numpy()).all():
        raise GridError(f"{entry.bus_coords}: buses do not match {entry.case.name} one to one")
    set_bus_lonlat(net, coords["longitude"].to_numpy(), coords["latitude"].to_numpy())
    if "substation_name" in coords:
        net.bus["substation"] = coords["substation_name"].to_numpy()
    else:  # bus names are '<substation> <n>'
        net.bus["substation"] = coords["bus_name"].str.rsplit(" ", n=1).str[0].to_numpy()
    area = pd.Series(coords[entry.area_column].to_numpy(), index=net.bus.index)
    net.bus[entry.area_column] = area  # so that a user's 'area <n>' / 'zone <n>' profile keys find it
    return net, area_profiles(net, area, pd.read_csv(entry.area_loads), entry.year)


def area_profiles(
    net: pandapowerNet, bus_area: pd.Series, area_loads: pd.DataFrame, year: int
) -> pd.DataFrame:
    """Hourly load and generation per element from hourly area totals (MW)."""
    hours = len(area_loads)
    time = pd.date_range(f"{year}-01-01", periods=hours, freq="h", name="time")
    load_area = bus_area.loc[net.load["bus"]].to_numpy()
    ratio = np.ones((hours, len(net.load)))
    for area in np.unique(load_area):
        column = f"area_{int(area)}"
        members = load_area == area
        base = net.load.loc[members, "p_mw"].sum()
        if column in area_loads and base > 0:
            ratio[:, members] = (area_loads[column].to_numpy() / base)[:, None]
    total = area_loads["total"].to_numpy() / net.load["p_mw"].sum()
    frames = {
        ("load", "p_mw"): ratio * net.load["p_mw"].to_numpy(),
        ("load", "q_mvar"): ratio * net.load["q_mvar"].to_numpy(),
        **generation_following(net, total),
    }
    index = {"load": net.load.index, "gen": net.gen.index, "sgen": net.sgen.index}
    parts = {
        key: pd.DataFrame(values, index=time, columns=index[key[0]])
        for key, values in frames.items()
        if values.shape[1]
    }
    return pd.concat(parts, axis=1, names=["element", "variable", "index"]).sort_index(axis=1)
