"""The report folder: files, GIS layers, an offline self-contained page, and names shown as text.

The report is of a real study on the SimBench HV grid (tests/conftest.py) whose model carries
hostile names on a substation, its bus and a line.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from conftest import EVIL, EVIL_IMG
from plotly.offline import get_plotlyjs

from siting import Grid
from siting.engine.flow import profile_scenarios
from siting.report import ReportInputs, lines_frame, peak_line_loading, report_inputs, write_report_files
from siting.sources.geo import bus_lonlat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inputs(hostile_study) -> ReportInputs:
    """The report of a real study on the HV grid, with hostile names on a substation, its bus
    and a line."""
    return report_inputs(
        hostile_study.grid,
        capacity=hostile_study.capacity,
        selection=hostile_study.selection,
        fleet=hostile_study.fleet,
        title=hostile_study.study.name,
        description=hostile_study.study.description,
        headline=hostile_study.headline,
        manifest={"study": "hostile names"},
    )


@pytest.fixture(scope="module")
def report(inputs: ReportInputs, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("report")
    return folder, write_report_files(inputs, folder)


def test_writes_every_file_and_lists_them(report: tuple[Path, list[Path]]) -> None:
    folder, written = report
    names = {path.relative_to(folder).as_posix() for path in written}
    assert names == {
        "index.html",
        "results.gpkg",
        "timeseries.parquet",
        "headroom.parquet",
        "manifest.json",
        "figures/capacity.png",
        "figures/headroom_duration.png",
        "figures/dispatch.png",
        "figures/violations.png",
    }
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["study"] == "hostile names"
    assert set(manifest["report_files"]) == names


def test_gis_layers_open(report: tuple[Path, list[Path]], inputs: ReportInputs) -> None:
    path = report[0] / "results.gpkg"
    assert [name for name, _ in pyogrio.list_layers(path)] == [
        "substations",
        "lines",
        "sites",
        "candidates",
        "regions",
    ]
    lines = gpd.read_file(path, layer="lines")
    assert len(lines) == len(inputs.lines)
    assert lines.crs.to_epsg() == 4326
    assert set(lines.geom_type) == {"LineString"}
    assert EVIL in set(gpd.read_file(path, layer="substations")["name"])


def test_parquet_round_trips(report: tuple[Path, list[Path]], inputs: ReportInputs) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(report[0] / "timeseries.parquet"), inputs.site_power)
    pd.testing.assert_frame_equal(
        pd.read_parquet(report[0] / "headroom.parquet"), inputs.headroom.rename(columns=str), check_freq=False
    )


def test_figures_are_png(report: tuple[Path, list[Path]]) -> None:
    for path in (report[0] / "figures").iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), path.name
        assert len(data) > 5_000, path.name


def test_page_is_self_contained(report: tuple[Path, list[Path]]) -> None:
    page = (report[0] / "index.html").read_text(encoding="utf-8")
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1  # the library once, not once per figure
    ours = page.replace(plotly_js, "")  # plotly's own code names URLs it only uses when asked
    assert "<script src" not in ours.lower()
    assert "<link" not in ours.lower()
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", ours, re.IGNORECASE)
    assert len(ours) < 2_000_000


def test_names_are_escaped_everywhere(report: tuple[Path, list[Path]]) -> None:
    page = (report[0] / "index.html").read_text(encoding="utf-8")
    for name in (EVIL, EVIL_IMG):
        assert name not in page
        # in plotly's JSON "<" becomes \u003c: a name that reached plotly unescaped would show so
        assert json.dumps(name).replace("<", "\\u003c").replace(">", "\\u003e")[1:12] not in page
    assert html.escape(EVIL) in page  # tables and title
    assert "&lt;script&gt;alert(1)&lt;\\u002fscript&gt;" in page  # plotly hover text and labels


def test_optional_parts_may_be_missing(inputs: ReportInputs, tmp_path: Path) -> None:
    bare = dataclasses.replace(
        inputs,
        regions=None,
        headroom=None,
        violations=inputs.violations.head(0),
        site_power=inputs.site_power.head(0),
    )
    names = {path.relative_to(tmp_path).as_posix() for path in write_report_files(bare, tmp_path)}
    assert "headroom.parquet" not in names
    assert "figures/headroom_duration.png" not in names
    assert {"figures/dispatch.png", "figures/violations.png", "index.html"} <= names
    assert [name for name, _ in pyogrio.list_layers(tmp_path / "results.gpkg")] == [
        "substations",
        "lines",
        "sites",
        "candidates",
    ]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "no violations" in page
    assert "Not computed: the study ran hosting capacity at its operating point only" in page


def test_lines_frame_places_lines_at_their_buses(hv_mixed: Grid) -> None:
    loading = pd.Series(np.arange(len(hv_mixed.net.line), dtype=float), index=hv_mixed.net.line.index)
    lines = lines_frame(hv_mixed, loading)
    assert list(lines.columns[:6]) == ["line", "name", "vn_kv", "loading_percent", "from_bus", "to_bus"]
    assert lines.crs.to_epsg() == 4326
    assert len(lines) == len(hv_mixed.net.line)  # every SimBench bus has coordinates
    first = lines.iloc[0]
    assert first["loading_percent"] == loading[first["line"]]
    where = bus_lonlat(hv_mixed.net)
    assert first.geometry.coords[0] == tuple(where.loc[first["from_bus"]])
    assert first.geometry.coords[-1] == tuple(where.loc[first["to_bus"]])


def test_peak_line_loading_is_the_highest_step(hv_mixed: Grid) -> None:
    steps = hv_mixed.profiles.iloc[:8]
    peak = peak_line_loading(hv_mixed, profile_scenarios(hv_mixed.net, steps))
    single = [peak_line_loading(hv_mixed, profile_scenarios(hv_mixed.net, steps.iloc[[i]])) for i in (0, 7)]
    assert (peak >= np.maximum(single[0], single[1]) - 1e-9).all()
    assert peak.index.equals(hv_mixed.net.line.index)


# --- in a browser, offline -------------------------------------------------------------------------


@pytest.mark.browser
def test_map_renders_offline(
    report: tuple[Path, list[Path]], inputs: ReportInputs, offline_page, tmp_path: Path
) -> None:
    page, log = offline_page
    page.goto((report[0] / "index.html").as_uri())
    page.wait_for_selector("#map .scatterlayer .trace .point")
    assert page.locator("#map .scatterlayer .trace").count() >= 4  # lines, candidates, substations, sites
    assert page.locator("#map .scatterlayer .point").count() >= len(inputs.sites) + len(inputs.substations)
    for name in ("capacity", "headroom_duration", "dispatch", "violations"):
        assert page.locator(f"#chart-{name} .main-svg").count() > 0, name
    shots = [tmp_path / "report.png"]
    if os.environ.get("SITING_SCREENSHOT"):
        shots.append(Path(os.environ["SITING_SCREENSHOT"]))
    for path in shots:
        page.screenshot(path=path, full_page=True)
    assert log == {"errors": [], "dialogs": [], "requests": []}


@pytest.mark.browser
def test_hostile_names_show_as_text(report: tuple[Path, list[Path]], offline_page) -> None:
    page, log = offline_page
    page.goto((report[0] / "index.html").as_uri())
    page.wait_for_selector("#map .scatterlayer .trace .point")
    assert EVIL in page.locator("body").inner_text()  # title, headline and tables
    assert EVIL in _hover_box(page, "substations", EVIL)  # its name and connection bus
    assert EVIL in _hover_box(page, "selected sites", EVIL)  # substation 3 is picked
    assert EVIL_IMG in _hover_box(page, "line", EVIL_IMG)
    page.wait_for_timeout(200)  # a script that did get in would have run by now
    assert log["dialogs"] == []
    assert log["errors"] == []


@pytest.mark.browser
def test_basemap_lays_tiles_under_the_map_on_request(report: tuple[Path, list[Path]], browser) -> None:
    """Online (tile requests answered with a local PNG): nothing is fetched until the box is ticked."""
    context = browser.new_context()
    requests: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file:"):
            return request_route.continue_()
        requests.append(url)
        return request_route.fulfill(status=200, content_type="image/png", body=_png_tile())

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((report[0] / "index.html").as_uri())
    page.wait_for_selector("#map .scatterlayer .trace .point")
    assert requests == []
    page.check("#basemap-toggle")
    page.wait_for_function("() => document.querySelectorAll('#map image').length > 0")
    tiles = page.locator("#map image").count()
    page.wait_for_timeout(300)
    assert len(requests) == tiles
    assert all(url.startswith("https://tile.openstreetmap.org/") for url in requests)
    assert page.locator("#map .scatterlayer .point").count() > 0  # the data stays on top
    page.uncheck("#basemap-toggle")
    page.wait_for_function("() => document.querySelectorAll('#map image').length === 0")
    assert errors == []
    context.close()


def _png_tile() -> bytes:
    """A blank 256 px map tile."""
    from PIL import Image  # pillow comes with matplotlib

    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (230, 236, 224)).save(buffer, "PNG")
    return buffer.getvalue()


def _hover_box(page, trace: str, name: str) -> str:
    """Hover the first point of a map trace (name starting with ``trace``) whose hover text names
    ``name``; return the text plotly shows."""
    needle = json.dumps(html.escape(name, quote=False))
    curve, point = page.evaluate(
        f"""() => {{
        const data = document.getElementById('map').data;
        for (let c = 0; c < data.length; c++) {{
            if (!data[c].name.startsWith({json.dumps(trace)})) continue;
            const p = [].concat(data[c].hovertext || []).findIndex(t => t && t.includes({needle}));
            if (p >= 0) return [c, p];
        }}
        return [-1, -1];
    }}"""
    )
    assert curve >= 0, f"no {trace} point names {name}"
    page.wait_for_timeout(100)  # plotly drops a hover that follows the previous one within 50 ms
    page.evaluate(f"() => Plotly.Fx.hover('map', [{{curveNumber: {curve}, pointNumber: {point}}}])")
    return page.locator("#map .hoverlayer").text_content()


def test_a_grid_without_coordinates_gets_the_report_without_map_or_layers_and_is_told_why(
    inputs: ReportInputs, report: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    assert 'id="map"' in (report[0] / "index.html").read_text()

    def unplaced(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        frame = frame.assign(lon=np.nan, lat=np.nan) if "lon" in frame else frame.copy()
        return frame.set_geometry(gpd.GeoSeries([None] * len(frame), index=frame.index, crs=frame.crs))

    bare = dataclasses.replace(
        inputs,
        substations=unplaced(inputs.substations),
        sites=unplaced(inputs.sites),
        candidates=unplaced(inputs.candidates),
        lines=inputs.lines.iloc[:0],  # lines_frame leaves out every line without placed ends
        regions=None,
    )
    written = write_report_files(bare, tmp_path, pdf=True)
    names = {path.relative_to(tmp_path).as_posix() for path in written}
    assert "results.gpkg" not in names and {"index.html", "report.pdf", "figures/capacity.png"} <= names
    page = (tmp_path / "index.html").read_text()
    assert "No map and no GIS layer (results.gpkg): the grid has no bus coordinates" in page
    assert 'id="map"' not in page and (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")


def test_the_flexibility_levels_are_charted_and_tabled_with_what_blind_dispatch_does(
    inputs: ReportInputs, hv_mixed: Grid, tmp_path: Path
) -> None:
    """A day of the HV grid with loads × 4.6: eight 20 MW sites break limits dispatched blind,
    none under the obligation; the report's table says both, per level."""
    from siting.flexcurve import flex_curve
    from tests.test_power_modes import _day

    fleets = {"flex-1": pd.DataFrame({"substation": [0, 1, 2, 3, 4, 5, 7, 8], "size_mw": 20.0})}
    curve = flex_curve(_day(hv_mixed, 4.6), fleets)
    row = curve.iloc[0]
    assert row["blind_violation_steps"] > 0 and row["violation_steps"] == 0
    names = {
        p.relative_to(tmp_path).as_posix()
        for p in write_report_files(dataclasses.replace(inputs, flex_curve=curve), tmp_path)
    }
    assert "figures/flexibility.png" in names
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    table = page[page.index("<h2>Flexibility levels</h2>") :]
    assert "blind_violation_steps" in table and "not checked together" in table
    assert f"<td>{int(row['blind_violation_steps'])}</td>" in table.replace(".0</td>", "</td>")
    # a curve whose levels were picked together says so
    joint = tmp_path / "joint"
    joint.mkdir()
    write_report_files(dataclasses.replace(inputs, flex_curve=curve, flex_sizing="joint"), joint)
    page = (joint / "index.html").read_text(encoding="utf-8")
    table = page[page.index("<h2>Flexibility levels</h2>") :]
    assert "picks together" in table and "not checked together" not in table
