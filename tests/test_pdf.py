"""The study record as a PDF, with a screening sheet per site, written without a browser."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from matplotlib.figure import Figure

from siting.pdf import write_pdf
from siting.report import ReportInputs, lines_frame
from siting.screening import screen_sites

NAME = "<b>Bus & 'site'</b>"


@pytest.fixture(scope="module")
def pdf_case(hv_mixed, tmp_path_factory):
    subs = hv_mixed.substations.iloc[[5, 12]]
    sites = pd.DataFrame(
        {"substation": subs["id"], "name": subs["name"], "bus": subs["bus"], "size_mw": 15.0}
    ).reset_index(drop=True)
    sites.loc[0, "name"] = NAME  # a hostile name must print as text
    screening = screen_sites(hv_mixed, sites)
    site_points = gpd.GeoDataFrame(sites, geometry=gpd.points_from_xy(subs["lon"], subs["lat"]), crs=4326)
    loading = pd.Series(50.0, index=hv_mixed.net.line.index)
    inputs = ReportInputs(
        title="screening record",
        grid_name=hv_mixed.name,
        operating_point="model values",
        substations=hv_mixed.substations,
        lines=lines_frame(hv_mixed, loading),
        sites=site_points,
        candidates=site_points.iloc[:0],
        regions=None,
        headroom=None,
        fleet_summary=pd.DataFrame({"policy": ["blind"], "violations": [0]}),
        violations=pd.DataFrame(),
        site_power=pd.DataFrame(),
        headline={"sites": 2, "fleet MW": 30.0},
        manifest={},
    )
    folder = tmp_path_factory.mktemp("pdf")
    figure = Figure(figsize=(4, 3))
    figure.add_subplot().plot([0, 1], [0, 1])
    png = folder / "capacity.png"
    figure.savefig(png)
    path = write_pdf(inputs, [png], folder / "report.pdf", screening=screening)
    again = write_pdf(inputs, [png], folder / "again.pdf", screening=screening)
    return path, again, screening


def test_pdf_has_every_part(pdf_case):
    path, _, screening = pdf_case
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = data.count(b"/Type /Page\n") + data.count(b"/Type /Page ")
    # title page + tables + one figure + screening + one sheet per site
    assert pages >= 3 + len(screening.sites)
    assert b"Interconnection screening" in data
    assert b"Short-circuit ratio" in data
    # the hostile name is printed as written, not taken as mark-up
    assert b"<b>Bus & 'site'</b>" in data


def test_pdf_is_reproducible(pdf_case):
    path, again, _ = pdf_case
    assert path.read_bytes() == again.read_bytes()
