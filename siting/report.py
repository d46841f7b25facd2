"""A study's report folder: one offline HTML page with an interactive map, PNG figures, GIS and tables.

``index.html`` carries plotly's JavaScript once, inline, so it opens anywhere with no network.
The map is drawn on plain Web Mercator axes; OpenStreetMap tiles are laid under it only when
the reader asks for them (a checkbox), so an offline page makes no requests and logs no errors.
Every name that comes from a model file is escaped before it reaches the page (see
``siting.figures.esc``), so it shows as text and never runs.
"""

from __future__ import annotations

import copy
import json
import math
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import shapely
from plotly.offline import get_plotlyjs

from siting.engine.flow import Scenarios, prepare, profile_scenarios, solve
from siting.figures import PALETTE, Chart, charts, esc
from siting.outputs import atomic_folder, manifest, write_json
from siting.screening import Screening, site_faults, site_sheet
from siting.sources.geo import WGS84, bus_lonlat
from siting.sources.grid import Grid

if TYPE_CHECKING:
    from siting.capacity import CapacityStudy
    from siting.fleet import FleetResult
    from siting.selection import Selection

GPKG_LAYERS = ("substations", "lines", "sites", "candidates", "regions")
# Peak line loading bins (%): lower bound, upper bound, legend label, colour
LOADING_BINS = (
    (-math.inf, 50.0, "line loading < 50 %", "#2ca02c"),
    (50.0, 80.0, "line loading 50–80 %", "#bcbd22"),
    (80.0, 100.0, "line loading 80–100 %", "#ff7f0e"),
    (100.0, math.inf, "line loading ≥ 100 %", "#d62728"),
)
NO_RESULT_COLOR = "#b0b0b0"
MAP_HEIGHT = 700
MAP_MARGIN = 0.05  # share of the map's extent left around its contents
MAX_LATITUDE = 85.0511  # Web Mercator's limit (°)
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)  # latitude tick spacing (°)
TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
MAX_TILES = 60  # tiles fetched when the basemap is switched on; the zoom level follows
MAP_ASPECT = 2.0  # width / height of the map's plot area on a wide screen, about
MAX_ZOOM = 16
MAX_TABLE_ROWS = 200  # violations table: the rest is in the chart and the caller's CSV
NO_HEADROOM_NOTE = (
    "Not computed: the study ran hosting capacity at its operating point only (capacity.year = false)."
)
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# Hover fields per map layer: (label, column, unit); missing columns are left out
SUBSTATION_FIELDS = (
    ("substation", "substation", ""),
    ("bus", "bus_name", ""),
    ("voltage", "vn_kv", " kV"),
    ("existing load", "load_mw", " MW"),
    ("N-0 capacity", "hc_n0_mw", " MW"),
    ("firm (N-1) capacity", "hc_n1_mw", " MW"),
    ("year-round N-0 capacity", "hc_n0_year_min_mw", " MW"),
    ("binds", "binding_criterion", ""),
    ("binding element", "binding_element", ""),
    ("under outage", "binding_outage", ""),
)
SITE_FIELDS = (
    ("size", "size_mw", " MW"),
    ("firm capacity", "capacity_mw", " MW"),
    ("region", "region", ""),
    ("score", "score", ""),
    ("why", "reason", ""),
)
CANDIDATE_FIELDS = (("status", "status", ""), ("firm capacity", "capacity_mw", " MW"), ("why", "reason", ""))
LINE_FIELDS = (
    ("peak loading", "loading_percent", " %"),
    ("voltage", "vn_kv", " kV"),
    ("from bus", "from_bus", ""),
    ("to bus", "to_bus", ""),
)


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report shows; frames in EPSG:4326, power in MW."""

    title: str  # study name
    description: str  # a line under the title (may be empty)
    grid_name: str
    operating_point: str  # e.g. "case:hL"
    substations: gpd.GeoDataFrame  # points; the columns of capacity.csv
    lines: gpd.GeoDataFrame  # LineStrings: name, vn_kv, loading_percent (peak), from_bus, to_bus
    sites: gpd.GeoDataFrame  # selected sites: sites.csv columns
    candidates: gpd.GeoDataFrame  # every candidate, with status and reason
    regions: gpd.GeoDataFrame | None
    headroom: pd.DataFrame | None  # DatetimeIndex × substation id: N-0 headroom (MW)
    fleet_summary: pd.DataFrame  # one row per dispatch policy
    violations: pd.DataFrame  # policy, element_type, element, criterion, steps, hours, ...
    site_power: pd.DataFrame  # long: time, policy, substation, bus, p_mw, own_supply_mw, served_tokens_per_s
    headline: dict[str, str]  # label → value as shown in the summary box
    manifest: dict[str, object]
    flex_curve: pd.DataFrame | None = None  # siting.flexcurve CURVE_COLUMNS, one row per level
    flex_sizing: str = "each"  # how the curve sized each level's sites (FLEX_LEVELS_NOTES)


def report_inputs(
    grid: Grid,
    *,
    capacity: CapacityStudy,
    selection: Selection,
    fleet: FleetResult | None = None,
    title: str = "",
    description: str = "",
    headline: dict[str, object] | None = None,
    manifest: dict[str, object] | None = None,
    flex_curve: pd.DataFrame | None = None,
    flex_sizing: str = "each",
) -> ReportInputs:
    """What the report shows, from the stages' results (``headline``: from ``headline_numbers``)."""
    # lines by their highest loading over the simulated year (the last policy: grid-aware by default)
    loading = fleet.line_peak_percent.iloc[:, -1] if fleet is not None else peak_line_loading(grid)
    headline = headline if headline is not None else headline_numbers(grid, capacity, selection, fleet)
    empty = pd.DataFrame()
    return ReportInputs(
        title=title or grid.name,
        description=description,
        grid_name=grid.name,
        operating_point=capacity.operating_point,
        substations=_points(capacity.table),
        lines=lines_frame(grid, loading),
        sites=selection.sites,
        candidates=selection.candidates,
        regions=selection.regions,
        headroom=capacity.headroom,
        fleet_summary=fleet.summary if fleet is not None else empty,
        violations=fleet.violations if fleet is not None else empty,
        site_power=fleet.site_power if fleet is not None else empty,
        headline=headline_display(headline),
        manifest=manifest or {},
        flex_curve=flex_curve,
        flex_sizing=flex_sizing,
    )


def write_report(
    folder: Path,
    grid: Grid,
    *,
    capacity: CapacityStudy,
    selection: Selection,
    fleet: FleetResult | None = None,
    title: str = "",
    description: str = "",
    screening: Screening | None = None,
    pdf: bool = False,
) -> list[str]:
    """Write the report folder ``folder`` whole or not at all, from the stages' results.

    Parameters
    ----------
    folder : Path
        Created, or replaced whole if siting wrote it (refused otherwise).
    grid, capacity, selection, fleet
        The grid and the results of ``substation_capacity``, ``select_sites`` and, optionally,
        ``simulate``.
    title, description : str
        Shown at the top of the page (default title: the grid's name).
    screening : Screening, optional
        The interconnection screening of the sites (``siting.screening.screen_sites``).
    pdf : bool
        Also write ``report.pdf``.

    Returns
    -------
    list of str
        The files written, relative to ``folder`` (index.html, figures/…, results.gpkg, …).
    """
    from datetime import UTC, datetime

    started = datetime.now(UTC)
    headline = headline_numbers(grid, capacity, selection, fleet)
    with atomic_folder(Path(folder), "folder") as staging:
        record = manifest(grid.inputs(), {"title": title}, headline, started)
        inputs = report_inputs(
            grid,
            capacity=capacity,
            selection=selection,
            fleet=fleet,
            title=title,
            description=description,
            headline=headline,
            manifest=record,
        )
        written = write_report_files(inputs, staging, screening=screening, pdf=pdf)
        return [path.relative_to(staging).as_posix() for path in written]


_FLEX_DISPATCH_NOTE = (
    "Grid-aware dispatch keeps every limit of normal operation at each step by moving, deferring "
    "and capping work and powering idle servers down (violation_steps: steps where it could not); "
    "the blind_ columns are the same fleet dispatched without looking at the grid. Outages are not "
    "simulated: a level above firm is a flexible interconnection."
)
# The "Flexibility levels" note per way of sizing a level's sites (study [flex_curve] sizing).
FLEX_LEVELS_NOTES = {
    "each": "One row per level: every candidate at its own capacity under the level's criterion (at "
    "most the largest site), not checked together; the simulated year is the check. " + _FLEX_DISPATCH_NOTE,
    "joint": "One row per level: the sites the selection stage picks together under the level's "
    "criterion (firm: over every single outage; flexible: under the curtailment obligation over the "
    "year). " + _FLEX_DISPATCH_NOTE,
}

FLEX_LEVEL_LABELS = (  # the flexibility curve's levels (siting.flexcurve.LEVELS), as the headline names them
    ("firm", "firm (N-1 at peak) capacity"),
    ("peak", "N-0 capacity at peak"),
    ("flex-0.25", "flexible capacity, 0.25 % curtailed"),
    ("flex-0.5", "flexible capacity, 0.5 % curtailed"),
    ("flex-1", "flexible capacity, 1 % curtailed"),
    ("flex-5", "flexible capacity, 5 % curtailed"),
)

HEADLINE_LABELS = {
    "grid": "grid",
    "operating_point": "operating point",
    "substations": "substations studied",
    "firm_capacity_mw": "firm (N-1) capacity, all substations",
    "unused_share_at_peak": "grid capacity unused at peak",
    "sites": "sites selected",
    "total_mw": "selected capacity",
    "joint_check_passes": "joint AC check of the selected set",
    "naive_violations": "violations of the naive top-K set",
    "load_scale": "load growth in the simulated year",
    "selection_notes": "selection notes",
    "scenario": "scenario",
    "load_growth": "load growth at the operating point (capacity, selection)",
    **{
        f"flex_{level}_mw": f"connected, every candidate at its own {label}, grid-aware dispatch"
        for level, label in FLEX_LEVEL_LABELS
    },
    **{
        f"flex_{level}_blind_violation_steps": f"the fleet at {level}, blind dispatch: steps breaking a limit"
        for level, _ in FLEX_LEVEL_LABELS
    },
    "screening_fleet_trip_mw": "the whole fleet trips at once",
    "screening_fleet_trip_mw_pass": "fleet trip against the load-loss limit",
    "screening_worst_fault_mw": "worst fault: sites' MW that ride through too low",
    "screening_worst_fault_bus_name": "worst fault: at bus",
    "screening_worst_fault_sites": "worst fault: sites that drop",
}


def headline_display(headline: dict[str, object]) -> dict[str, str]:
    """The headline numbers as a reader sees them: labels, units, percentages."""
    shown = {}
    for key, value in headline.items():
        if key == "study" or value is None:
            continue
        policy, _, measure = (
            key.partition("_") if key.startswith(("blind_", "grid-aware_")) else ("", "", key)
        )
        label = HEADLINE_LABELS.get(key) or f"{policy}: {measure.removesuffix('_mwh').replace('_', ' ')}"
        if key.endswith("_mw") or key == "total_mw":
            text = f"{value:,.1f} MW"
        elif key.endswith("share") or key.endswith("share_at_peak"):
            text = f"{100 * cast(float, value):.2f} %"
        elif key.endswith("energy_mwh"):
            text = f"{cast(float, value) / 1000:,.1f} GWh"
        elif key == "joint_check_passes":
            text = "passes" if value else "FAILS"
        elif key in ("load_scale", "load_growth"):
            text = f"× {value:g}"
        elif isinstance(value, float):
            text = f"{value:,.4g}"
        else:
            text = str(value)
        shown[label] = text
    return shown


def headline_numbers(
    grid: Grid,
    capacity: CapacityStudy,
    selection: Selection,
    fleet: FleetResult | None = None,
    load_factor: float | None = None,
) -> dict[str, object]:
    """The numbers a study leads with (MW, shares, counts), keyed for ``headline_display``."""
    table = capacity.table
    joint = selection.joint.set_index("set")
    headline: dict[str, object] = {
        "grid": grid.name,
        "operating_point": capacity.operating_point,
        "substations": len(table),
        "firm_capacity_mw": float(table["hc_n1_mw"].sum()) if table["hc_n1_mw"].notna().any() else None,
        "unused_share_at_peak": capacity.unused_share_at_peak,
        "sites": len(selection.sites),
        "total_mw": float(selection.sites["size_mw"].sum()),
        "joint_check_passes": bool(joint.at["selected", "passes"]),
        "naive_violations": int(joint.at["naive top-K", "violations"])
        if "naive top-K" in joint.index
        else None,
        "load_scale": load_factor,
        "selection_notes": "; ".join(selection.notes) or None,
    }
    if fleet is not None:
        for row in fleet.summary.itertuples():
            headline[f"{row.policy}_served_share"] = row.served_share
            headline[f"{row.policy}_violations"] = row.violations
            headline[f"{row.policy}_violation_hours"] = row.violation_hours
            headline[f"{row.policy}_energy_mwh"] = row.energy_mwh
    return headline


def scenario_table(headlines: dict[str, dict[str, object]]) -> pd.DataFrame:
    """Scenarios side by side, as a reader sees the numbers.

    Parameters
    ----------
    headlines : dict of str to dict
        Scenario name → its headline numbers (``compute_study``'s, MW, shares, counts).

    Returns
    -------
    DataFrame
        One row per headline label (as ``headline_display`` shows it, with units), one column
        per scenario in the given order; "–" where a scenario lacks the number.
    """
    # the scenario's name heads its column already
    shown = {
        name: headline_display({k: v for k, v in headline.items() if k != "scenario"})
        for name, headline in headlines.items()
    }
    labels = list(dict.fromkeys(label for values in shown.values() for label in values))
    return pd.DataFrame(
        {name: [values.get(label, "–") for label in labels] for name, values in shown.items()},
        index=pd.Index(labels, name="measure"),
    )


def scenario_story(headline: dict[str, object]) -> str:
    """One scenario's result in a sentence: capacity, the joint checks, the dispatches, the flex curve.

    Parameters
    ----------
    headline : dict
        A scenario's headline numbers (``compute_study``'s: MW, hours, shares).

    Returns
    -------
    str
        E.g. "firm capacity of all substations 579.6 MW; 10 sites, 200 MW: the joint AC check of
        the selected set passes; the naive top-K set breaks 0 limits; blind dispatch: …".
    """
    number = {k: v for k, v in headline.items() if isinstance(v, int | float)}
    firm = number.get("firm_capacity_mw")
    parts = [] if firm is None else [f"firm capacity of all substations {firm:,.1f} MW"]
    parts.append(
        f"{headline['sites']} sites, {number['total_mw']:,.0f} MW: the joint AC check of the selected "
        f"set {'passes' if headline['joint_check_passes'] else 'FAILS'}"
    )
    naive = headline.get("naive_violations")
    if naive is not None:
        parts.append(f"the naive top-K set breaks {naive} limit{'s' if naive != 1 else ''}")
    for policy in ("blind", "grid-aware"):
        if f"{policy}_violations" in headline:
            parts.append(
                f"{policy} dispatch: {headline[f'{policy}_violations']} element limit(s) broken in "
                f"{number[f'{policy}_violation_hours']:g} h, "
                f"{100 * number[f'{policy}_served_share']:.2f} % of the demand served"
            )
    levels = [
        key.removeprefix("flex_").removesuffix("_mw")
        for key in number
        if key.startswith("flex_") and key.endswith("_mw")
    ]
    if levels:
        connectable = ", ".join(
            f"{level} {number[f'flex_{level}_mw']:,.0f} MW"
            + (
                f" (blind: limits broken in {number[blind]:,.0f} steps)"
                if (blind := f"flex_{level}_blind_violation_steps") in number
                else ""
            )
            for level in levels
        )
        parts.append(f"connectable at each level: {connectable}")
    return "; ".join(parts) + "."


def scenarios_page(
    title: str,
    description: str,
    table: pd.DataFrame,
    notes: dict[str, str],
    headlines: dict[str, dict[str, object]],
) -> str:
    """A study's scenarios on one offline page, every name escaped.

    A sentence per scenario (``scenario_story``) linking to its own report
    (``<name>/index.html``), then the headline numbers side by side.

    Parameters
    ----------
    title, description : str
        The study's name and its line under the title.
    table : DataFrame
        ``scenario_table`` of ``headlines``.
    notes : dict of str to str
        Scenario name → its description (the load level and its source).
    headlines : dict of str to dict
        Scenario name → its headline numbers (MW, hours, shares).

    Returns
    -------
    str
        The whole HTML page (no script: it needs no network and runs nothing).
    """
    items = "".join(
        f"<li><a href='{esc(name)}/index.html'><b>{esc(name)}</b></a>"
        + (f" — {esc(notes[name])}" if notes.get(name) else "")
        + f"<br>{esc(scenario_story(headline))}</li>"
        for name, headline in headlines.items()
    )
    header = "".join(f"<th>{esc(name)}</th>" for name in table.columns)
    rows = "".join(
        f"<tr><th>{esc(label)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr>"
        for label, values in zip(table.index, table.to_numpy(), strict=True)
    )
    body = (
        f"<section><h2>Scenarios</h2><ul class='scenarios'>{items}</ul></section>"
        "<section><h2>Side by side</h2><table class='data compare'>"
        f"<tr><th>measure</th>{header}</tr>{rows}</table></section>"
    )
    return _PAGE.format(
        title=esc(title), subtitle=esc(description), style=_STYLE + _SCENARIOS_STYLE, head="", body=body
    )


def _points(table: pd.DataFrame) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs=WGS84)


def write_report_files(
    inputs: ReportInputs, folder: Path, screening: Screening | None = None, pdf: bool = False
) -> list[Path]:
    """Write the report into ``folder`` (an existing staging folder); return the files written.

    With ``screening``, the page gets the interconnection screening and a sheet per site; with
    ``pdf``, the whole report is also written as ``report.pdf`` (no browser needed).
    """
    folder = Path(folder)
    (folder / "figures").mkdir(exist_ok=True)
    found = charts(
        inputs.substations,
        inputs.sites,
        inputs.headroom,
        inputs.site_power,
        inputs.violations,
        inputs.flex_curve,
    )
    written = [*([_write_gpkg(inputs, folder / "results.gpkg")] if located(inputs) else [])]
    written += _write_parquet(inputs, folder)
    for chart in found:
        chart.save_png(folder / "figures" / f"{chart.name}.png")
        written.append(folder / "figures" / f"{chart.name}.png")
    (folder / "index.html").write_text(page(inputs, found, screening), encoding="utf-8")
    written.append(folder / "index.html")
    if pdf:
        from siting.pdf import write_pdf  # it draws on this module's inputs

        pngs = [folder / "figures" / f"{chart.name}.png" for chart in found]
        written.append(write_pdf(inputs, pngs, folder / "report.pdf", screening))
    manifest = folder / "manifest.json"
    files = [path.relative_to(folder).as_posix() for path in [*written, manifest]]
    write_json(manifest, {**inputs.manifest, "report_files": files})
    return [*written, manifest]


def lines_frame(grid: Grid, loading_percent: pd.Series) -> gpd.GeoDataFrame:
    """Lines as straight segments between their buses' coordinates, with loading (%) by net.line index.

    Lines with an end bus that has no coordinates are left out.
    """
    net = grid.net
    where = bus_lonlat(net)
    start = where.reindex(net.line["from_bus"]).to_numpy()
    end = where.reindex(net.line["to_bus"]).to_numpy()
    placed = np.isfinite(start).all(axis=1) & np.isfinite(end).all(axis=1)
    frame = gpd.GeoDataFrame(
        {
            "line": net.line.index,
            "name": net.line["name"].fillna("").astype(str).to_numpy(),
            "vn_kv": net.bus["vn_kv"].reindex(net.line["from_bus"]).to_numpy(),
            "loading_percent": loading_percent.reindex(net.line.index).to_numpy(float),
            "from_bus": net.line["from_bus"].to_numpy(),
            "to_bus": net.line["to_bus"].to_numpy(),
        },
        geometry=[
            shapely.LineString([a, b]) if ok else None for a, b, ok in zip(start, end, placed, strict=True)
        ],
        crs=WGS84,
        index=net.line.index,
    )
    return frame[placed]


def peak_line_loading(grid: Grid, scenarios: Scenarios | None = None) -> pd.Series:
    """Highest loading (%) of each line over ``scenarios``, by net.line index (NaN: never solved).

    Default: every profile step, or the model's own values when the grid has no profiles.
    Scenarios that do not converge are left out.
    """
    if scenarios is None:
        scenarios = Scenarios(n=1) if grid.profiles is None else profile_scenarios(grid.net, grid.profiles)
    result = solve(prepare(copy.deepcopy(grid.net)), scenarios)
    loading = result.line_loading_percent[result.converged]
    with warnings.catch_warnings():  # a line no slack reaches is NaN in every scenario
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(loading, axis=0) if len(loading) else np.full(len(result.line_index), np.nan)
    return pd.Series(peak, index=result.line_index, name="loading_percent")


# --- files -----------------------------------------------------------------------------------------


def _write_gpkg(inputs: ReportInputs, path: Path) -> Path:
    layers = dict(
        zip(GPKG_LAYERS[:4], (inputs.substations, inputs.lines, inputs.sites, inputs.candidates), strict=True)
    )
    if inputs.regions is not None and len(inputs.regions):
        layers["regions"] = inputs.regions
    for name, frame in layers.items():
        frame.to_file(path, layer=name, driver="GPKG")
    return path


def _write_parquet(inputs: ReportInputs, folder: Path) -> list[Path]:
    inputs.site_power.to_parquet(folder / "timeseries.parquet", index=False)
    written = [folder / "timeseries.parquet"]
    if inputs.headroom is not None:
        # parquet wants text column names; capacity's own headroom.parquet has them too
        inputs.headroom.rename(columns=str).to_parquet(folder / "headroom.parquet")
        written.append(folder / "headroom.parquet")
    return written


# --- page ------------------------------------------------------------------------------------------


def page(inputs: ReportInputs, found: list[Chart], screening: Screening | None = None) -> str:
    """The whole self-contained HTML page."""
    if located(inputs):
        # JSON inside a script element: with "<" and "/" escaped nothing in it can close the element
        tiles = json.dumps(basemap_tiles(*_bounds(inputs))).replace("<", "\\u003c").replace("/", "\\u002f")
        shown = _section(
            "Map", MAP_NOTE, _BASEMAP_TOGGLE.format(tiles=tiles) + _plotly_div(map_figure(inputs), "map")
        )
    else:
        shown = _section("Map", NO_COORDINATES_NOTE, "")
    sections = [
        shown,
        _section("Substations", "Hosting capacity of every substation (MW).", _table(inputs.substations)),
        _section("Selected sites", "", _table(inputs.sites)),
        _section("Fleet by dispatch policy", "", _table(inputs.fleet_summary)),
        *(
            _section(chart.title, chart.caption, _plotly_div(chart.plotly, f"chart-{chart.name}"))
            for chart in found
        ),
        *([_section("Headroom duration curves", NO_HEADROOM_NOTE, "")] if inputs.headroom is None else []),
        *(
            [_section("Flexibility levels", FLEX_LEVELS_NOTES[inputs.flex_sizing], _table(inputs.flex_curve))]
            if inputs.flex_curve is not None and len(inputs.flex_curve)
            else []
        ),
        _section(
            "Violations",
            f"Up to {MAX_TABLE_ROWS} rows, most steps first.",
            _table(_most_steps(inputs.violations).head(MAX_TABLE_ROWS)),
        ),
        *([] if screening is None else _screening_sections(screening)),
    ]
    headline = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_text(v))}</dd>" for k, v in inputs.headline.items())
    return _PAGE.format(
        title=esc(inputs.title),
        subtitle=(f"{esc(inputs.description)} · " if inputs.description else "")
        + f"grid {esc(inputs.grid_name)} · operating point {esc(inputs.operating_point)}",
        style=_STYLE,
        head=f"<script>{get_plotlyjs()}</script>\n",
        body=f'<div class="headline"><dl>{headline}</dl></div>\n' + "\n".join(sections),
    )


def located(inputs: ReportInputs) -> bool:
    """Whether the grid's substations have places: without them there is no map and no GIS layer."""
    return bool(inputs.substations["lon"].notna().any())


def map_figure(inputs: ReportInputs) -> go.Figure:
    """The map on Web Mercator axes: x is longitude (°), y the Mercator northing in the same unit.

    Equal axis scales keep shapes true anywhere, and OpenStreetMap tiles (square in these units)
    can be laid underneath as images when the reader switches the basemap on.
    """
    figure = go.Figure(map_traces(inputs))
    _, (south, north) = _bounds(inputs)
    ticks = _latitude_ticks(south, north)
    figure.update_layout(
        template="plotly_white",
        height=MAP_HEIGHT,
        plot_bgcolor="#eef2f5",
        margin={"t": 20, "b": 40, "l": 60, "r": 20},
        legend={"orientation": "h", "y": -0.08},
        xaxis={"title": "longitude (°)", "showgrid": False, "zeroline": False},
        yaxis={
            "title": "latitude (°)",
            "showgrid": False,
            "zeroline": False,
            "scaleanchor": "x",
            "tickvals": _northing(ticks),
            "ticktext": [f"{tick:g}" for tick in ticks],
        },
    )
    return figure


def basemap_tiles(lon: tuple[float, float], lat: tuple[float, float]) -> list[dict]:
    """Layout images of the OpenStreetMap tiles over a lon/lat box (°), widened to the plot's shape.

    The zoom is the finest whose tiles number at most MAX_TILES.
    """
    top, bottom = _northing([lat[1], lat[0]])
    if top is None or bottom is None:
        raise ValueError(f"latitude bounds {lat} are not numbers")
    # the plot is wider than tall: cover its full width around the contents
    half_width = max(lon[1] - lon[0], (top - bottom) * MAP_ASPECT) / 2
    x_range, y_range = (sum(lon) / 2 - half_width, sum(lon) / 2 + half_width), (top, bottom)
    for zoom in range(MAX_ZOOM, -1, -1):
        size = 360 / 2**zoom  # a tile's side in degrees of longitude (and of northing)
        columns = range(int((x_range[0] + 180) // size), int((x_range[1] + 180) // size) + 1)
        rows = range(int((180 - y_range[0]) // size), int((180 - y_range[1]) // size) + 1)
        if len(columns) * len(rows) <= MAX_TILES:
            break
    return [
        {
            "source": TILE_URL.format(z=zoom, x=column % 2**zoom, y=row),
            "xref": "x",
            "yref": "y",
            "x": column * size - 180,
            "y": 180 - row * size,
            "sizex": size,
            "sizey": size,
            "sizing": "stretch",
            "xanchor": "left",
            "yanchor": "top",
            "layer": "below",
        }
        for column in columns
        for row in rows
        if 0 <= row < 2**zoom
    ]


def map_traces(inputs: ReportInputs) -> list[go.Scatter]:
    """Regions, lines by loading bin, candidates, substations and sites, bottom layer first."""
    traces = _region_traces(inputs.regions) if inputs.regions is not None else []
    traces += _line_traces(inputs.lines)
    traces += _candidate_traces(inputs.candidates)
    traces.append(_substation_trace(inputs.substations))
    traces.append(_site_trace(inputs.sites))
    return traces


def _region_traces(regions: gpd.GeoDataFrame) -> list[go.Scatter]:
    traces = []
    for i, (region, shape) in enumerate(zip(regions["region"], regions.geometry, strict=True)):
        lon, lat = _paths(shapely.get_parts(shapely.get_exterior_ring(shapely.get_parts(shape))))
        traces.append(
            go.Scatter(
                x=lon,
                y=_northing(lat),
                mode="lines",
                fill="toself",
                name="regions",
                legendgroup="regions",
                showlegend=i == 0,
                line={"width": 1, "color": PALETTE[i % len(PALETTE)]},
                fillcolor=_transparent(PALETTE[i % len(PALETTE)]),
                hoverinfo="text",
                hovertext=f"region {esc(region)}",
            )
        )
    return traces


def _line_traces(lines: gpd.GeoDataFrame) -> list[go.Scatter]:
    loading = lines["loading_percent"].to_numpy(float)
    bins = [(np.isnan(loading), "lines: no result", NO_RESULT_COLOR)]
    bins += [((loading >= low) & (loading < high), label, color) for low, high, label, color in LOADING_BINS]
    traces = []
    for members, label, color in bins:
        part = lines[members]
        if part.empty:
            continue
        hover = _hover(part, LINE_FIELDS)
        lon, lat, text = [], [], []
        for shape, note in zip(part.geometry, hover, strict=True):
            xy = shapely.get_coordinates(shape)
            lon += [*xy[:, 0], None]
            lat += [*xy[:, 1], None]
            text += [note] * len(xy) + [None]  # hover at each vertex of the line
        traces.append(
            go.Scatter(
                x=lon,
                y=_northing(lat),
                mode="lines",
                name=esc(label),
                line={"width": 2, "color": color},
                hovertext=text,
                hoverinfo="text",
            )
        )
    return traces


def _candidate_traces(candidates: gpd.GeoDataFrame) -> list[go.Scatter]:
    others = candidates[candidates["status"].astype(str) != "selected"]
    return [
        go.Scatter(
            x=part.geometry.x,
            y=_northing(part.geometry.y),
            mode="markers",
            name=esc(f"candidates: {status}"),
            marker={"size": 9, "color": "#555555" if status == "dropped" else "#9e9e9e", "symbol": "x"},
            hovertext=_hover(part, CANDIDATE_FIELDS),
            hoverinfo="text",
        )
        for status, part in others.groupby(others["status"].astype(str), sort=True)
    ]


def _substation_trace(substations: gpd.GeoDataFrame) -> go.Scatter:
    firm = substations["hc_n1_mw"].to_numpy(float)
    return go.Scatter(
        x=substations.geometry.x,
        y=_northing(substations.geometry.y),
        mode="markers",
        name="substations",
        marker={
            "size": 11,
            "color": firm,
            "colorscale": "Viridis",
            "cmin": 0,
            "colorbar": {"title": {"text": "firm capacity (MW)"}, "thickness": 12},
            "line": {"width": 1, "color": "#333333"},
        },
        hovertext=_hover(substations, SUBSTATION_FIELDS),
        hoverinfo="text",
    )


def _site_trace(sites: gpd.GeoDataFrame) -> go.Scatter:
    return go.Scatter(
        x=sites.geometry.x,
        y=_northing(sites.geometry.y),
        mode="markers",
        name="selected sites (size in MW)",
        marker={
            "size": 8 + sites["size_mw"].to_numpy(float),
            "color": "rgba(214, 39, 40, 0.55)",
            "symbol": "diamond",
            "line": {"width": 2, "color": "#7f0000"},
        },
        hovertext=_hover(sites, SITE_FIELDS),
        hoverinfo="text",
    )


def _hover(frame: pd.DataFrame, fields: tuple[tuple[str, str, str], ...]) -> list[str]:
    """Escaped hover text per row: the name in bold, then each field present."""
    present = [(label, column, unit) for label, column, unit in fields if column in frame.columns]
    names = frame["name"] if "name" in frame.columns else pd.Series("", index=frame.index)
    notes = []
    for (_, row), name in zip(frame.iterrows(), names, strict=True):
        parts = [f"<b>{esc(name)}</b>"]
        for label, column, unit in present:
            value = _text(row[column])
            if value:
                # long reasons wrap; each piece is escaped before the line breaks go in
                pieces = textwrap.wrap(f"{label}: {value}{unit}", 70) or [""]
                parts.append("<br>  ".join(esc(piece) for piece in pieces))
        notes.append("<br>".join(parts))
    return notes


def _screening_sections(screening: Screening) -> list[str]:
    """The screening's headline and one section per site: its sheet and its deep faults."""
    summary = pd.DataFrame({"item": list(screening.summary), "value": list(screening.summary.values())})
    sections = [
        _section("Interconnection screening", "One row per site in interconnection.csv.", _table(summary))
    ]
    for _, site in screening.sites.iterrows():
        title = esc(f"Site {site['name']} — substation {site['substation']}, {site['size_mw']:g} MW")
        faults = site_faults(screening, site).head(MAX_TABLE_ROWS)
        body = _table(site_sheet(site)) + "<h3>Faults below the ride-through threshold</h3>" + _table(faults)
        sections.append(_section(title, "", body))
    return sections


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class='empty'>none</p>"
    plain = pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
    return plain.to_html(index=False, escape=True, na_rep="", float_format=_number, border=0, classes="data")


def _most_steps(violations: pd.DataFrame) -> pd.DataFrame:
    if "steps" not in violations.columns:
        return violations
    return violations.sort_values("steps", ascending=False, kind="stable")


def _plotly_div(figure: go.Figure, div_id: str) -> str:
    height = figure.layout.height or 450
    return figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_height=f"{height}px",
    )


def _section(title: str, note: str, body: str) -> str:
    caption = f"<p class='note'>{note}</p>" if note else ""
    return f"<section><h2>{title}</h2>{caption}{body}</section>"


def _text(value: object) -> str:
    """A value as plain (unescaped) text; empty for missing values."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return _number(float(value))
    return str(value)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _paths(rings: np.ndarray) -> tuple[list, list]:
    lon, lat = [], []
    for ring in rings:
        xy = shapely.get_coordinates(ring)
        lon += [*xy[:, 0], None]
        lat += [*xy[:, 1], None]
    return lon, lat


def _bounds(inputs: ReportInputs) -> tuple[tuple[float, float], tuple[float, float]]:
    """(west, east), (south, north) of everything on the map (°), with a margin around it."""
    frames = [inputs.substations, inputs.lines, inputs.sites, inputs.candidates]
    boxes = np.array([frame.total_bounds for frame in frames if len(frame)])
    west, south = np.nanmin(boxes[:, :2], axis=0)
    east, north = np.nanmax(boxes[:, 2:], axis=0)
    margin = max(east - west, north - south, 0.01) * MAP_MARGIN
    return (
        (float(west - margin), float(east + margin)),
        (float(max(south - margin, -MAX_LATITUDE)), float(min(north + margin, MAX_LATITUDE))),
    )


def _northing(lat: object) -> list[float | None]:
    """Web Mercator northing in degrees (equal to longitude's scale at the equator); None stays a gap."""
    values = np.clip(np.asarray(pd.Series(lat, dtype=float)), -MAX_LATITUDE, MAX_LATITUDE)
    northing = np.degrees(np.log(np.tan(np.pi / 4 + np.radians(values) / 2)))
    return [None if np.isnan(v) else float(v) for v in northing]


def _latitude_ticks(south: float, north: float) -> list[float]:
    """Round latitudes (°) for the y axis, at most about eight over the map."""
    step = next((s for s in TICK_STEPS if (north - south) / s <= 8), TICK_STEPS[-1])
    first = math.ceil(south / step) * step
    return [round(first + i * step, 6) for i in range(int((north - first) / step) + 1)]


def _transparent(color: str, alpha: float = 0.12) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


NO_COORDINATES_NOTE = (
    "No map and no GIS layer (results.gpkg): the grid has no bus coordinates. Everything else in "
    "this report is computed without them; give them with --bus-coords or a substation list with lon/lat."
)
MAP_NOTE = (
    "Lines coloured by peak loading, substations by firm (N-1) capacity, selected sites sized by MW; "
    "hover for numbers. Web Mercator axes; without the basemap the page needs no network."
)
# The tiles are laid under the map only when asked for, so an offline page requests nothing.
_BASEMAP_TOGGLE = """
<label class="toggle"><input type="checkbox" id="basemap-toggle"> OpenStreetMap basemap
(loads map tiles from tile.openstreetmap.org: needs internet; © OpenStreetMap contributors)</label>
<script type="application/json" id="basemap-tiles">{tiles}</script>
<script>
document.getElementById("basemap-toggle").addEventListener("change", function (event) {{
  var tiles = JSON.parse(document.getElementById("basemap-tiles").textContent);
  Plotly.relayout("map", {{images: event.target.checked ? tiles : []}});
}});
</script>
"""
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem 2rem;
       color: #222; max-width: 1400px; }
h1 { margin-bottom: 0.2rem; }
.subtitle, .note, .empty { color: #555; }
.headline dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1.2rem;
               background: #f3f6fa; border: 1px solid #d0d8e2; border-radius: 6px; padding: 0.8rem 1.2rem;
               width: fit-content; }
.headline dt { font-weight: 600; }
.headline dd { margin: 0; font-variant-numeric: tabular-nums; }
section { margin-top: 2rem; overflow-x: auto; }
table.data { border-collapse: collapse; font-size: 0.8rem; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: 0.2rem 0.5rem; border-bottom: 1px solid #e0e0e0; text-align: right; }
table.data th { background: #f3f6fa; position: sticky; top: 0; }
.toggle { display: block; margin: 0.5rem 0; font-size: 0.9rem; }
"""
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
{head}</head>
<body>
<h1>{title}</h1>
<p class="subtitle">{subtitle}</p>
{body}
</body>
</html>
"""
_SCENARIOS_STYLE = """
table.compare th { text-align: left; }
ul.scenarios li { margin-bottom: 0.6rem; }
"""
