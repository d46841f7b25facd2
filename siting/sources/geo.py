"""Coordinates of buses: pandapower keeps them as GeoJSON points in ``net.bus.geo``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import GridError

WGS84 = "EPSG:4326"


def bus_lonlat(net: pandapowerNet) -> pd.DataFrame:
    """Longitude and latitude (degrees, EPSG:4326) of every bus; NaN where the model has none."""
    lon = np.full(len(net.bus), np.nan)
    lat = np.full(len(net.bus), np.nan)
    if "geo" in net.bus.columns:
        for position, text in enumerate(net.bus["geo"].to_numpy()):
            try:
                point = _parse_point(text)
            except ValueError as err:
                raise GridError(f"bus {net.bus.index[position]}: its geodata is unusable ({err})") from err
            if point is not None:
                lon[position], lat[position] = point
    return pd.DataFrame({"lon": lon, "lat": lat}, index=net.bus.index)


def set_bus_lonlat(net: pandapowerNet, lon: np.ndarray, lat: np.ndarray) -> None:
    """Store lon/lat (degrees) as GeoJSON points in ``net.bus.geo``, as pandapower does."""
    net.bus["geo"] = [
        json.dumps({"coordinates": [float(x), float(y)], "type": "Point"})
        for x, y in zip(lon, lat, strict=True)
    ]


def _parse_point(text: object) -> tuple[float, float] | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        shape = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(shape, dict) or shape.get("type") != "Point":
        return None
    coordinates = shape.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        raise ValueError(f"a Point needs [lon, lat], not {coordinates!r}")
    x, y = coordinates[:2]
    if (
        isinstance(x, bool)
        or isinstance(y, bool)
        or not isinstance(x, int | float)
        or not isinstance(y, int | float)
    ):
        raise ValueError(f"coordinates {coordinates[:2]!r} are not numbers")
    return float(x), float(y)
