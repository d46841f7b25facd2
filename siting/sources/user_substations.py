"""A user's own substation list (GIS export) and bus coordinates.

Substation list (CSV or GeoPackage), one row per substation: ``name``; the connection bus as
``bus`` (its number in the case: PSS/E ``I``, MATPOWER ``BUS_I``) or ``bus_name``; its place
as ``lon``/``lat`` (or ``longitude``/``latitude``, or a point geometry); optionally
``firm_mva``, the firm transformer rating, which replaces the one computed from the model. It
replaces the automatic detection, or augments it (the automatic rows at buses the list does not
name are kept).

Bus coordinates (CSV): ``bus`` or ``bus_name``, ``lon``/``lat`` (or ``longitude``/``latitude``),
and optionally ``substation``/``substation_name``, which makes those buses model substations.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import UsageError
from siting.sources.geo import WGS84, bus_lonlat, set_bus_lonlat
from siting.sources.grid import bus_index_of_number
from siting.sources.substations import MIN_CONNECTION_KV, SUBSTATION_COLUMNS, describe_substations

MODES = ("replace", "augment")


def read_bus_coords(path: Path, net: pandapowerNet) -> None:
    """Place the file's buses (``net.bus.geo``) and, where it names them, their substations."""
    table = _read(path)
    buses = _buses(path, table, net)
    lon, lat = _lonlat(path, table)
    current = bus_lonlat(net)
    current.loc[buses, "lon"], current.loc[buses, "lat"] = lon, lat
    set_bus_lonlat(net, current["lon"].to_numpy(), current["lat"].to_numpy())
    missing = current["lon"].isna()
    if missing.any():  # GeoJSON cannot hold NaN: buses the file does not place keep no geodata
        net.bus.loc[missing, "geo"] = None
    column = next((c for c in ("substation", "substation_name") if c in table), None)
    if column is not None:
        if "substation" not in net.bus:
            net.bus["substation"] = None
        net.bus.loc[buses, "substation"] = table[column].astype(str).to_numpy()


def read_substation_list(path: Path, net: pandapowerNet) -> pd.DataFrame:
    """The file's substations: name, bus, lon, lat and firm_mva (NaN where not given)."""
    table = _read(path)
    if "name" not in table:
        raise UsageError(f"{path}: a substation list needs a 'name' column")
    names = table["name"].astype(str)
    if names.duplicated().any():
        raise UsageError(f"{path}: substation '{names[names.duplicated()].iloc[0]}' is listed twice")
    lon, lat = _lonlat(path, table)
    firm = pd.to_numeric(table.get("firm_mva", pd.Series(np.nan, index=table.index)), errors="coerce")
    return pd.DataFrame(
        {"name": names, "bus": _buses(path, table, net), "lon": lon, "lat": lat, "firm_mva": firm.to_numpy()}
    )


def substations_from_list(
    net: pandapowerNet, listed: pd.DataFrame, automatic: gpd.GeoDataFrame | None = None, mode: str = "replace"
) -> gpd.GeoDataFrame:
    """Substations in the ``find_substations`` layout from a user's list (``read_substation_list``).

    ``mode`` "replace" uses the list alone; "augment" adds the automatic rows (``automatic``)
    whose connection bus the list does not name.
    """
    if mode not in MODES:
        raise UsageError(f"substation list mode '{mode}': use {' or '.join(MODES)}")
    rows = describe_substations(net, list(zip(listed["name"], listed["bus"], strict=True)), "user list")
    rows["lon"], rows["lat"] = listed["lon"].to_numpy(), listed["lat"].to_numpy()
    given = listed["firm_mva"].notna().to_numpy()
    rows.loc[given, "firm_transformer_mva"] = listed["firm_mva"].to_numpy()[given]
    if mode == "augment" and automatic is not None:
        kept = pd.DataFrame(automatic[~automatic["bus"].isin(listed["bus"])]).drop(columns=["geometry", "id"])
        rows = pd.concat([rows, kept], ignore_index=True)
    rows.insert(0, "id", np.arange(len(rows)))
    return _frame(rows)


def bus_candidates(net: pandapowerNet, min_kv: float = 0.0) -> gpd.GeoDataFrame:
    """Every in-service bus at or above ``min_kv`` (kV) as a candidate, in the substations layout.

    That is per-bus headroom, as transmission point-of-interconnection studies report it.
    """
    bus = net.bus[net.bus["in_service"].astype(bool) & (net.bus["vn_kv"] >= max(min_kv, MIN_CONNECTION_KV))]
    if bus.empty:
        raise UsageError(f"no in-service bus at or above {min_kv:g} kV to use as a candidate")
    labels = [name if isinstance(name, str) and name else f"bus {i}" for i, name in bus["name"].items()]
    rows = describe_substations(net, list(zip(labels, bus.index.astype(int), strict=True)), "bus")
    coords = bus_lonlat(net).loc[bus.index]
    rows["lon"], rows["lat"] = coords["lon"].to_numpy(), coords["lat"].to_numpy()
    rows.insert(0, "id", np.arange(len(rows)))
    return _frame(rows)


def _frame(rows: pd.DataFrame) -> gpd.GeoDataFrame:
    located = rows["lon"].notna()
    geometry = [
        gpd.points_from_xy([x], [y])[0] if ok else None
        for x, y, ok in zip(rows["lon"], rows["lat"], located, strict=True)
    ]
    return gpd.GeoDataFrame(rows[SUBSTATION_COLUMNS], geometry=geometry, crs=WGS84)


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UsageError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".gpkg", ".geojson", ".shp"):
            frame = gpd.read_file(path)
            if "geometry" in frame and frame.geometry.notna().any():
                frame = frame.to_crs(WGS84)
                frame["lon"], frame["lat"] = frame.geometry.x, frame.geometry.y
            return pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise UsageError(f"{path}: not a readable table ({str(err).splitlines()[0][:150]})") from err


def _buses(path: Path, table: pd.DataFrame, net: pandapowerNet) -> np.ndarray:
    """The model bus (index) of each row; rows that match no bus are named.

    The bus comes from ``bus`` (also ``bus_i``, ``bus_number``: the case's bus number) or ``bus_name``.
    """
    number = next((c for c in ("bus", "bus_i", "bus_number") if c in table), None)
    if number is not None:
        keys = table[number]
        numbers = pd.Series(pd.to_numeric(keys, errors="coerce"), index=table.index)
        found = numbers.map(bus_index_of_number(net))
    elif "bus_name" in table:
        keys = table["bus_name"].astype(str)
        names = net.bus["name"].astype(str)
        unique = names[~names.duplicated(keep=False)]
        found = keys.map(pd.Series(unique.index, index=unique.to_numpy()))
    else:
        raise UsageError(f"{path}: needs a 'bus' (bus number) or 'bus_name' column")
    missing = found.isna()
    if missing.any():
        rows = ", ".join(f"row {i + 2} ({keys.iloc[i]})" for i in np.flatnonzero(missing)[:10])
        raise UsageError(f"{path}: {int(missing.sum())} row(s) name buses not in the model: {rows}")
    return found.astype(int).to_numpy()


def _lonlat(path: Path, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lon_column = next((c for c in ("lon", "longitude", "lng") if c in table), None)
    lat_column = next((c for c in ("lat", "latitude") if c in table), None)
    if lon_column is None or lat_column is None:
        raise UsageError(f"{path}: needs 'lon' and 'lat' (or 'longitude'/'latitude') columns")
    lon = pd.to_numeric(table[lon_column], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(table[lat_column], errors="coerce").to_numpy(float)
    bad = ~((np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    if bad.any():
        at = int(np.argmax(bad))
        raise UsageError(
            f"{path}: row {at + 2} has coordinates ({lon[at]}, {lat[at]}) outside −180…180 / −90…90 "
            "(or none); give longitude and latitude in degrees (EPSG:4326)"
        )
    return lon, lat
