"""GIS layers for siting: exclusion zones, fiber, land parcels, demand centres, regions.

Every layer is read with its own CRS and measured in one local metric CRS (the UTM zone
around the grid), so distances are metres whatever the files were drawn in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.cluster.vq import kmeans2

from siting.errors import DataError, UsageError, check_number
from siting.sources.geo import WGS84

LAYER_KINDS = ("exclusion", "fiber", "parcels", "demand", "regions")
GEOMETRY_KINDS = {
    "exclusion": {"Polygon", "MultiPolygon"},
    "fiber": {"LineString", "MultiLineString", "Point", "MultiPoint"},
    "parcels": {"Polygon", "MultiPolygon"},
    "demand": {"Point", "MultiPoint"},
    "regions": {"Polygon", "MultiPolygon"},
}


@dataclass(frozen=True)
class GeoRules:
    """How layers act on candidates.

    Parameters
    ----------
    exclusion_buffer_m : float
        A candidate within this distance (m) of an exclusion zone is ruled out.
    fiber_max_m : float or None
        A candidate farther than this (m) from fiber is ruled out (None: no limit).
    parcel_min_m2 : float
        Smallest parcel (m²) a site fits on.
    parcel_max_m : float
        Such a parcel must be within this distance (m) of the candidate.
    """

    exclusion_buffer_m: float = 0.0
    fiber_max_m: float | None = None
    parcel_min_m2: float = 20_000.0  # about 5 acres: a 20 MW site with its yard and cooling
    parcel_max_m: float = 2_000.0

    def __post_init__(self) -> None:
        check_number("exclusion_buffer_m", self.exclusion_buffer_m, at_least=0)
        if self.fiber_max_m is not None:
            check_number("fiber_max_m", self.fiber_max_m, above=0)
        check_number("parcel_min_m2", self.parcel_min_m2, at_least=0)
        check_number("parcel_max_m", self.parcel_max_m, above=0)


@dataclass(frozen=True)
class Layers:
    """The layers a study uses, keyed by kind, as read from disk (their own CRS)."""

    frames: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)  # invalid geometries made valid


def parse_layer_args(items: list[str] | None) -> dict[str, Path]:
    """``kind=path`` arguments into a mapping, refusing unknown kinds."""
    paths = {}
    for item in items or []:
        kind, sep, path = item.partition("=")
        if not sep or kind not in LAYER_KINDS:
            raise UsageError(f"--layers {item}: write KIND=FILE with KIND one of {', '.join(LAYER_KINDS)}")
        paths[kind] = Path(path)
    return paths


def read_layers(paths: dict[str, Path]) -> Layers:
    """Read and check each layer: it must exist, have a CRS, hold features of the right kind.

    Parameters
    ----------
    paths : dict of str to Path
        Layer files by kind (``LAYER_KINDS``: exclusion, fiber, parcels, demand, regions).

    Returns
    -------
    Layers
        The layers in their own CRS, with the count of geometries made valid per kind.

    Raises
    ------
    UsageError
        A missing or unreadable file, no CRS, or features of the wrong geometry type.
    """
    frames, repaired = {}, {}
    for kind, path in paths.items():
        frames[kind], repaired[kind] = read_layer(path, kind)
    return Layers(frames, repaired)


def read_layer(path: Path, kind: str) -> tuple[gpd.GeoDataFrame, int]:
    """One layer, with invalid geometries made valid (and counted)."""
    if not path.exists():
        raise UsageError(f"{kind} layer {path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = gpd.read_file(path)
    except Exception as err:  # GDAL raises many kinds for an unreadable file
        raise DataError(f"{kind} layer {path}: not a readable GIS file ({str(err).splitlines()[0]})") from err
    if frame.crs is None:
        raise DataError(
            f"{kind} layer {path}: has no coordinate reference system; set one (e.g. EPSG:4326) and retry"
        )
    frame = frame[~frame.geometry.is_empty & frame.geometry.notna()]
    if frame.empty:
        raise DataError(f"{kind} layer {path}: has no features")
    wrong = set(frame.geometry.geom_type) - GEOMETRY_KINDS[kind]
    if wrong:
        raise DataError(
            f"{kind} layer {path}: holds {', '.join(sorted(wrong))}; a {kind} layer needs "
            f"{' or '.join(sorted(GEOMETRY_KINDS[kind]))} features"
        )
    invalid = ~frame.geometry.is_valid
    if invalid.any():
        frame = frame.copy()
        frame.loc[invalid, "geometry"] = shapely.make_valid(frame.geometry[invalid].to_numpy())
    return frame.reset_index(drop=True), int(invalid.sum())


def local_crs(points: gpd.GeoDataFrame):
    """The UTM zone around ``points``: the metric CRS all distances are measured in."""
    return points.to_crs(WGS84).estimate_utm_crs()


def apply_layers(
    candidates: gpd.GeoDataFrame, layers: Layers, rules: GeoRules, demand: gpd.GeoDataFrame
) -> pd.DataFrame:
    """Per candidate: why geography rules it out (empty if it does not) and its distances (km).

    ``demand`` holds weighted points (column ``weight``); the score is 1 − the mean of the
    candidate's distances to fiber and to demand, each divided by its largest value among
    the candidates (1 is best).
    """
    out = pd.DataFrame(index=candidates.index)
    out["geo_reason"] = ""
    if candidates.geometry.isna().all():  # a grid without coordinates: geography is off
        out["score"] = 1.0  # every candidate equal: capacity alone ranks them
        return out
    crs = local_crs(candidates)
    sites = candidates.to_crs(crs).geometry
    if "exclusion" in layers.frames:
        # clipped to the candidates' surroundings first: a zone as large as a continent has no
        # finite shape in a local metric map
        zones = _metric(
            _near(layers.frames["exclusion"], candidates, rules.exclusion_buffer_m), crs, "exclusion"
        )
        area = shapely.union_all(zones.geometry.buffer(rules.exclusion_buffer_m).to_numpy())
        inside = sites.intersects(area)
        note = f" or within {rules.exclusion_buffer_m:g} m of one" if rules.exclusion_buffer_m else ""
        out.loc[inside.to_numpy(), "geo_reason"] = f"inside an exclusion zone{note}"
    if "fiber" in layers.frames:
        fiber = shapely.union_all(_metric(layers.frames["fiber"], crs, "fiber").geometry.to_numpy())
        out["fiber_km"] = sites.distance(fiber).to_numpy() / 1e3
        if rules.fiber_max_m is not None:
            far = (out["fiber_km"] * 1e3 > rules.fiber_max_m) & (out["geo_reason"] == "")
            out.loc[far, "geo_reason"] = [
                f"{d:.1f} km from fiber (at most {rules.fiber_max_m / 1e3:g} km)"
                for d in out.loc[far, "fiber_km"]
            ]
    if "parcels" in layers.frames:
        parcels = _metric(_near(layers.frames["parcels"], candidates, rules.parcel_max_m), crs, "parcels")
        big = parcels[parcels.geometry.area >= rules.parcel_min_m2]
        if big.empty:
            reach = np.full(len(sites), np.inf)
        else:
            reach = sites.distance(shapely.union_all(big.geometry.to_numpy())).to_numpy()
        out["parcel_km"] = reach / 1e3
        lacking = (reach > rules.parcel_max_m) & (out["geo_reason"] == "").to_numpy()
        out.loc[lacking, "geo_reason"] = (
            f"no parcel of {rules.parcel_min_m2:,.0f} m² within {rules.parcel_max_m / 1e3:g} km"
        )
    out["demand_km"] = weighted_distance_km(sites, _metric(demand, crs, "demand"))
    parts = [out[c] / out[c].max() for c in ("fiber_km", "demand_km") if c in out and out[c].max() > 0]
    out["score"] = 1.0 - (sum(parts) / len(parts) if parts else 0.0)
    return out


def _near(frame: gpd.GeoDataFrame, candidates: gpd.GeoDataFrame, reach_m: float) -> gpd.GeoDataFrame:
    """The parts of ``frame`` within a generous box around the candidates (EPSG:4326)."""
    margin = 1.0 + 2.0 * reach_m / 111_000.0  # degrees: more than ``reach_m`` anywhere below 60° latitude
    west, south, east, north = candidates.to_crs(WGS84).total_bounds
    area = shapely.box(
        max(west - margin, -180), max(south - margin, -90), min(east + margin, 180), min(north + margin, 90)
    )
    return frame.to_crs(WGS84).clip(area)


def _metric(frame: gpd.GeoDataFrame, crs, kind: str) -> gpd.GeoDataFrame:
    """``frame`` in the local metric CRS, refused if a feature has no finite place in it."""
    projected = frame.to_crs(crs)
    if len(projected) and not np.isfinite(projected.geometry.bounds.to_numpy()).all():
        raise DataError(
            f"{kind} layer: some features lie too far from the grid to measure in its local map "
            f"({crs.name}); clip the layer to the study area"
        )
    return projected


def weighted_distance_km(sites: gpd.GeoSeries, demand: gpd.GeoDataFrame) -> np.ndarray:
    """Demand-weighted mean distance (km) from each site to the demand points."""
    xy = np.column_stack([sites.x, sites.y])
    dxy = np.column_stack([demand.geometry.x, demand.geometry.y])
    weight = demand["weight"].to_numpy(dtype=float)
    if weight.sum() <= 0:
        raise DataError("demand layer: the weights add up to zero; give each point a positive 'weight'")
    distance = np.hypot(xy[:, None, 0] - dxy[None, :, 0], xy[:, None, 1] - dxy[None, :, 1])
    return distance @ weight / weight.sum() / 1e3


def demand_points(layers: Layers, default: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The demand layer (with a ``weight`` column, 1 where it has none), else the default."""
    if "demand" not in layers.frames:
        return default
    frame = layers.frames["demand"].explode(index_parts=False)
    if "weight" not in frame:
        frame = frame.assign(weight=1.0)
    weight = pd.to_numeric(frame["weight"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(weight) | (weight < 0)
    if bad.any():
        raise DataError(
            f"demand layer: {int(bad.sum())} point(s) have a weight that is missing, not a number or "
            f"negative (first: {frame['weight'].iloc[int(np.argmax(bad))]!r}); give each a weight ≥ 0"
        )
    return frame.assign(weight=weight)[["weight", "geometry"]]


def cluster_regions(points: gpd.GeoDataFrame, n: int, seed: int = 0) -> tuple[np.ndarray, gpd.GeoDataFrame]:
    """k-means on metric coordinates: a region number per point and each region's hull (EPSG:4326)."""
    if n < 1:
        raise UsageError(f"--regions {n}: need at least one region")
    if n > len(points):
        raise UsageError(f"--regions {n}: more regions than the {len(points)} substations to put in them")
    crs = local_crs(points)
    metric = points.to_crs(crs).geometry
    xy = np.column_stack([metric.x, metric.y])
    _, labels = kmeans2(xy, n, seed=seed, minit="++")
    labels = _renumber_west_to_east(xy, labels)
    hulls = [shapely.convex_hull(shapely.MultiPoint(xy[labels == r])).buffer(5_000) for r in range(n)]
    regions = gpd.GeoDataFrame({"region": np.arange(n)}, geometry=hulls, crs=crs).to_crs(WGS84)
    return labels, regions


def _renumber_west_to_east(xy: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Region numbers ordered by their centre's easting, so they read the same way each run."""
    present = np.unique(labels)
    order = present[np.argsort([xy[labels == r, 0].mean() for r in present])]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping[label] for label in labels])


def regions_from_layer(points: gpd.GeoDataFrame, regions: gpd.GeoDataFrame) -> np.ndarray:
    """The region (row of the layer) each point falls in; -1 outside every region."""
    joined = gpd.sjoin(points.to_crs(regions.crs), regions[["geometry"]], how="left", predicate="within")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["index_right"].fillna(-1).astype(int).reindex(points.index).to_numpy()
