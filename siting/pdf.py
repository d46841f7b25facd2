"""The study record as one PDF: map, headline, tables, figures and a screening sheet per site.

Drawn with reportlab (layout) and matplotlib (a static map), so no browser is needed. Names
from model files are escaped before they reach reportlab's paragraph mark-up, so a name
shows as text. Wide tables are cut to the columns that fit; the CSV files hold the rest.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from siting.report import NO_COORDINATES_NOTE, ReportInputs, located
from siting.screening import Screening, site_faults, site_sheet

PAGE = landscape(A4)
MARGIN = 1.2 * cm
MAX_ROWS = 40  # rows of a table in the PDF; the CSV has them all
MAX_COLUMNS = 12
FIGURE_WIDTH = PAGE[0] - 2 * MARGIN
FIGURE_HEIGHT = PAGE[1] - 2 * MARGIN - 2.5 * cm  # room for a heading above
PASS_COLORS = {"pass": colors.HexColor("#d9f2d9"), "fail": colors.HexColor("#f8d0d0")}


def write_pdf(
    inputs: ReportInputs,
    figures: list[Path],
    path: Path,
    screening: Screening | None = None,
) -> Path:
    """Write the study's ``report.pdf`` to ``path`` and return ``path``.

    It holds the map, headline, substations, sites, fleet, the PNG ``figures`` (``siting.figures``
    charts), and, with ``screening``, its headline, table and one sheet per site.
    """
    styles = getSampleStyleSheet()
    story: list = [
        Paragraph(_text(inputs.title), styles["Title"]),
        Paragraph(
            _text(f"grid {inputs.grid_name} · operating point {inputs.operating_point}"), styles["Normal"]
        ),
        Spacer(1, 0.3 * cm),
        _key_values(inputs.headline),
        Spacer(1, 0.3 * cm),
        _image(_map_png(inputs), FIGURE_WIDTH * 0.75)
        if located(inputs)
        else Paragraph(_text(NO_COORDINATES_NOTE), styles["Normal"]),
        PageBreak(),
    ]
    for title, frame in (
        ("Substations", inputs.substations),
        ("Selected sites", inputs.sites),
        ("Fleet by dispatch policy", inputs.fleet_summary),
    ):
        story += [Paragraph(_text(title), styles["Heading2"]), *_table(frame), Spacer(1, 0.4 * cm)]
    for figure in figures:
        story += [PageBreak(), Paragraph(_text(Path(figure).stem.replace("_", " ")), styles["Heading2"])]
        story.append(_image(Path(figure).read_bytes(), FIGURE_WIDTH * 0.9))
    if screening is not None:
        story += _screening_story(screening, styles)
    return _build(story, path, str(inputs.title))


def write_scenarios_pdf(title: str, description: str, table: pd.DataFrame, path: Path) -> Path:
    """Write a study's scenarios side by side as a one-page PDF.

    Each scenario's own report.pdf sits in its sub-folder.

    Parameters
    ----------
    title, description : str
        The study's name and its line under the title.
    table : DataFrame
        ``siting.report.scenario_table`` of the scenarios' headlines.
    path : Path
        Where to write the PDF.

    Returns
    -------
    Path
        ``path``.
    """
    styles = getSampleStyleSheet()
    frame = table.reset_index()
    story = [
        Paragraph(_text(title), styles["Title"]),
        Paragraph(_text(description), styles["Normal"]),
        Spacer(1, 0.3 * cm),
        *_table(frame),
    ]
    return _build(story, path, title)


def _build(story: list, path: Path, title: str) -> Path:
    """Write ``story`` as a PDF at ``path`` with the report's page and margins."""
    document = SimpleDocTemplate(
        str(path),
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=title,
        invariant=1,  # same inputs, same bytes: no creation time or random id in the file
    )
    document.build(story)
    return Path(path)


def _screening_story(screening: Screening, styles) -> list:
    story = [
        PageBreak(),
        Paragraph("Interconnection screening", styles["Heading1"]),
        _key_values(screening.summary),
        Spacer(1, 0.3 * cm),
        *_table(screening.sites),
    ]
    for _, site in screening.sites.iterrows():
        story += [PageBreak(), *_site_sheet(site, screening, styles)]
    return story


def _site_sheet(site: pd.Series, screening: Screening, styles) -> list:
    """One site's sheet: every figure with its limit and verdict, then its deep faults.

    Deep faults take the site below the ride-through threshold.
    """
    title = (
        f"Site {site['name']} (substation {site['substation']}, bus {site['bus']}, {site['size_mw']:g} MW)"
    )
    sheet = site_sheet(site)
    rows = [list(sheet.columns), *sheet.astype(str).to_numpy().tolist()]
    table = Table([[_para(c) for c in row] for row in rows], repeatRows=1, hAlign="LEFT")
    style = _grid_style()
    for i, verdict in enumerate(sheet["verdict"], start=1):
        if verdict in PASS_COLORS:
            style.add("BACKGROUND", (3, i), (3, i), PASS_COLORS[verdict])
    table.setStyle(style)
    faults = screening.faults
    deep = site_faults(screening, site)
    note = (
        "Every short-circuit figure uses documented defaults (marked assumed)." if site["sc_assumed"] else ""
    )
    return [
        Paragraph(_text(title), styles["Heading2"]),
        table,
        Spacer(1, 0.3 * cm),
        Paragraph(
            _text(
                f"Faults that take this site below {screening.summary['ride_through_pu']:g} pu "
                f"({len(deep)} of {len(faults)}), most MW first. {note}"
            ),
            styles["Normal"],
        ),
        *_table(deep),
    ]


def _key_values(values: Mapping[str, object]) -> Table:
    rows = [[_para(k), _para(_cell(v))] for k, v in values.items()]
    table = Table(rows or [[_para(""), _para("")]], hAlign="LEFT", colWidths=[7 * cm, 14 * cm])
    table.setStyle(_grid_style())
    return table


def _table(frame: pd.DataFrame) -> list:
    """A DataFrame as a small-print table: the first MAX_ROWS rows and MAX_COLUMNS columns."""
    styles = getSampleStyleSheet()
    if frame is None or not len(frame):
        return [Paragraph("(none)", styles["Normal"])]
    frame = frame.drop(columns="geometry", errors="ignore")
    shown = frame.iloc[:MAX_ROWS, :MAX_COLUMNS]
    rows = [[_para(c, bold=True) for c in shown.columns]]
    rows += [[_para(_cell(v)) for v in record] for record in shown.itertuples(index=False)]
    width = (PAGE[0] - 2 * MARGIN) / max(len(shown.columns), 1)
    table = Table(rows, repeatRows=1, hAlign="LEFT", colWidths=[width] * len(shown.columns))
    table.setStyle(_grid_style())
    cut = []
    if len(frame) > MAX_ROWS:
        cut.append(f"{MAX_ROWS} of {len(frame)} rows")
    if frame.shape[1] > MAX_COLUMNS:
        cut.append(f"{MAX_COLUMNS} of {frame.shape[1]} columns")
    if not cut:
        return [table]
    return [table, Paragraph(_text(f"Shown: {', '.join(cut)}; the CSV has all."), styles["Italic"])]


def _grid_style() -> TableStyle:
    return TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ]
    )


def _para(value: object, bold: bool = False) -> Paragraph:
    style = getSampleStyleSheet()["BodyText"].clone("cell", fontSize=6.5, leading=8)
    text = _text(value)
    return Paragraph(f"<b>{text}</b>" if bold else text, style)


def _text(value: object) -> str:
    """Text safe for reportlab's paragraph mark-up."""
    return escape("" if value is None else str(value))


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}" if abs(float(value)) < 1e4 else f"{value:,.0f}"
    return str(value)


def _image(png: bytes, width: float) -> Image:
    """The PNG at ``width`` (points), smaller if it would not fit a page under a heading."""
    image = Image(io.BytesIO(png))
    scale = min(width / image.imageWidth, FIGURE_HEIGHT / image.imageHeight)
    image.drawWidth, image.drawHeight = image.imageWidth * scale, image.imageHeight * scale
    return image


def _map_png(inputs: ReportInputs) -> bytes:
    """A static map: lines grey, substations by firm capacity, sites as red stars with names."""
    with matplotlib.rc_context({"text.parse_math": False}):
        figure = Figure(figsize=(10, 6.5), layout="constrained")
        axes = figure.add_subplot()
        for geometry in inputs.lines.geometry:
            if geometry is not None and not geometry.is_empty:
                x, y = geometry.xy
                axes.plot(x, y, color="#9e9e9e", linewidth=0.6, zorder=1)
        subs = inputs.substations
        if len(subs):
            value = subs["hc_n1_mw"] if "hc_n1_mw" in subs else pd.Series(np.zeros(len(subs)))
            points = axes.scatter(subs.geometry.x, subs.geometry.y, c=value, cmap="viridis", s=18, zorder=2)
            figure.colorbar(points, ax=axes, label="firm (N-1) capacity, MW", shrink=0.7)
        sites = inputs.sites
        if len(sites):
            axes.scatter(sites.geometry.x, sites.geometry.y, marker="*", s=160, color="#d62728", zorder=3)
            for x, y, name in zip(sites.geometry.x, sites.geometry.y, sites["name"], strict=True):
                axes.annotate(str(name), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
        axes.set_xlabel("longitude (°)")
        axes.set_ylabel("latitude (°)")
        axes.set_aspect(1 / max(np.cos(np.deg2rad(np.nanmean(subs.geometry.y) if len(subs) else 0)), 0.1))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
