"""The study record as a PDF, with a screening sheet per site, written without a browser."""

from __future__ import annotations

import base64
import dataclasses
import re
import zlib

import geopandas as gpd
import pandas as pd
import pytest
from matplotlib.figure import Figure

from siting.capacity import CapacitySettings, substation_capacity
from siting.pdf import write_pdf
from siting.report import ReportInputs, lines_frame, write_report_files
from siting.screening import screen_sites

NAME = "<b>Bus & 'site'</b>"


@pytest.fixture(scope="module")
def pdf_case(hv_mixed, tmp_path_factory):
    named = hv_mixed.substations.copy()
    named.loc[named["id"] == 5, "name"] = NAME  # a hostile name from the model must print as text
    hv_mixed = dataclasses.replace(hv_mixed, substations=named)
    subs = hv_mixed.substations.iloc[[5, 12]]
    sites = pd.DataFrame(
        {"substation": subs["id"], "name": subs["name"], "bus": subs["bus"], "size_mw": 15.0}
    ).reset_index(drop=True)
    screening = screen_sites(hv_mixed, sites)
    site_points = gpd.GeoDataFrame(sites, geometry=gpd.points_from_xy(subs["lon"], subs["lat"]), crs=4326)
    loading = pd.Series(50.0, index=hv_mixed.net.line.index)
    capacity = substation_capacity(hv_mixed, CapacitySettings(year=False, n1_hops=1)).table
    substations = gpd.GeoDataFrame(
        capacity, geometry=gpd.points_from_xy(capacity["lon"], capacity["lat"]), crs=4326
    )
    inputs = ReportInputs(
        title="screening record",
        description="",
        grid_name=hv_mixed.name,
        operating_point="model values",
        substations=substations,
        lines=lines_frame(hv_mixed, loading),
        sites=site_points,
        candidates=site_points.assign(status="selected", capacity_mw=15.0, reason="picked"),
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
    return path, again, screening, inputs


def test_pdf_has_every_part(pdf_case):
    path, _, screening, _ = pdf_case
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type /Page\b(?!s)", data))
    # title page + tables + one figure + screening + one sheet per site
    assert pages >= 3 + len(screening.sites)
    data = _page_text(data)
    assert b"Interconnection screening" in data
    assert b"short-circuit ratio" in data
    # the hostile name is printed as written, not taken as mark-up
    assert b"<b>Bus & 'site'</b>" in data


def test_pdf_is_reproducible(pdf_case):
    path, again, _, _ = pdf_case
    assert path.read_bytes() == again.read_bytes()


@pytest.mark.slow
def test_report_hook_writes_the_pdf_and_a_section_per_site(pdf_case, tmp_path):
    _, _, screening, inputs = pdf_case
    written = write_report_files(inputs, tmp_path, screening=screening, pdf=True)
    assert tmp_path / "report.pdf" in written
    assert _page_text((tmp_path / "report.pdf").read_bytes()).count(b"Site ") >= len(screening.sites)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "Interconnection screening" in page
    assert page.count("<h3>Faults below the ride-through threshold</h3>") == len(screening.sites)
    assert NAME not in page and "&lt;b&gt;Bus &amp;" in page  # shown as text, never as mark-up
    assert page.count("short-circuit ratio") == len(screening.sites)


def _page_text(pdf: bytes) -> bytes:
    """The text the PDF's pages show: every content stream decoded (ASCII85, then deflate;
    images skipped), and the strings of its text operators joined."""
    out = []
    for header, stream in re.findall(rb"obj\s*<<(.*?)>>\s*stream\r?\n(.*?)endstream", pdf, flags=re.S):
        if b"/Image" in header:
            continue
        text = stream.strip()
        try:
            out.append(zlib.decompress(base64.a85decode(text.removesuffix(b"~>"))))
        except ValueError:
            out.append(text)
    return b"".join(re.findall(rb"\((.*?)\) Tj", b"\n".join(out)))
