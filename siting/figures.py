"""The report's charts: the data behind each, drawn with plotly (for index.html) and matplotlib (PNG).

Names from model files reach plotly only through ``esc``: plotly renders a subset of HTML
in labels and hover text, so a name must arrive there as escaped text. matplotlib draws
text literally once mathtext is off (``text.parse_math``), so PNGs get the raw names.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from plotly.subplots import make_subplots

from siting.engine.search import CRITERIA

CRITERION_COLORS = dict(
    zip(CRITERIA, ("#9e9e9e", "#1f77b4", "#9467bd", "#d62728", "#ff7f0e", "#000000"), strict=True)
)
OTHER_COLOR = "#8c564b"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MAX_BARS = 40  # substations in the capacity chart: beyond this the labels become unreadable
MAX_ELEMENTS = 25  # elements in the violations chart
CURVE_POINTS = 400  # points per duration curve: a year of 15-minute steps would bloat the page
PNG_DPI = 120
PERIODS = (("h", 14), ("D", 92), ("W", math.inf))  # dispatch averaging period by the run's span (days)


def esc(value: object) -> str:
    """Text safe for plotly labels and hover text: ``<``, ``>`` and ``&`` escaped.

    Quotes stay as they are: plotly would show ``&quot;`` literally, and with ``<`` escaped
    no tag (hence no attribute) can start in a name.
    """
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return html.escape(text, quote=False)


@dataclass(frozen=True)
class Chart:
    """One chart of the report: its file stem, heading, caption and both renderings."""

    name: str
    title: str
    caption: str
    plotly: go.Figure
    draw_png: Callable[[Figure], None]

    def save_png(self, path: Path) -> None:
        """Render with matplotlib (Agg, no pyplot state) into ``path``."""
        with matplotlib.rc_context({"text.parse_math": False}):  # a "$" in a name is not math
            figure = Figure(figsize=(10, 5.5), layout="constrained")
            self.draw_png(figure)
            figure.savefig(path, dpi=PNG_DPI)


def charts(
    substations: pd.DataFrame,
    sites: pd.DataFrame,
    headroom: pd.DataFrame | None,
    site_power: pd.DataFrame,
    violations: pd.DataFrame,
    flex_curve: pd.DataFrame | None = None,
) -> list[Chart]:
    """Every chart the report shows, in page order.

    The duration curves come only with headroom, the flexibility curve only when it was computed.
    """
    names = site_names(sites)
    found = [capacity_chart(capacity_bars(substations, sites))]
    if headroom is not None:
        found.append(duration_chart(duration_curves(headroom, names)))
    found.append(dispatch_chart(dispatch_means(site_power, names)))
    found.append(violations_chart(violation_steps(violations)))
    if flex_curve is not None and len(flex_curve):
        found.append(flex_chart(flex_curve))
    return found


def flex_chart(curve: pd.DataFrame) -> Chart:
    """MW connected against the share of demand served, one point per level (firm, N-0, flex)."""
    labels = [esc(level) for level in curve["level"]]
    figure = go.Figure()
    figure.add_scatter(
        x=curve["connected_mw"],
        y=100 * curve["served_share"],
        mode="markers+text+lines",
        text=labels,
        textposition="top center",
        marker={"color": PALETTE[0], "size": 10},
        hovertemplate="%{text}: %{x:.1f} MW connected, %{y:.3f} % served<extra></extra>",
    )
    figure.update_layout(xaxis_title="MW connected", yaxis_title="demand served (%)")

    def draw(png: Figure) -> None:
        ax = png.subplots()
        ax.plot(curve["connected_mw"], 100 * curve["served_share"], "o-", color=PALETTE[0])
        for label, x, y in zip(
            curve["level"], curve["connected_mw"], 100 * curve["served_share"], strict=True
        ):
            ax.annotate(
                str(label), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
            )
        ax.set_xlabel("MW connected")
        ax.set_ylabel("demand served (%)")
        ax.set_title("How many MW flexibility buys")

    return Chart(
        "flexibility",
        "How many MW flexibility buys",
        "The fleet with every candidate at its own firm (N-1 at peak), N-0 or flexible capacity, "
        "against the share of demand it serves over the simulated year under grid-aware dispatch "
        "(power capping and idle shutdown where the grid binds). Table: flexibility/flex_curve.csv.",
        _finish(figure, height=420),
        draw,
    )


def site_names(sites: pd.DataFrame) -> pd.Series:
    """Site label (the substation's name) by substation id."""
    return pd.Series(sites["name"].astype(str).to_numpy(), index=sites["substation"].to_numpy())


# --- data ------------------------------------------------------------------------------------------


def capacity_bars(substations: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Substations to chart: every selected one, then the largest firm capacity, MAX_BARS in all."""
    table = substations.assign(selected=substations["substation"].isin(sites["substation"]))
    table = table.sort_values(["selected", "hc_n1_mw"], ascending=False, kind="stable").head(MAX_BARS)
    return table.sort_values("hc_n1_mw", ascending=False, kind="stable").reset_index(drop=True)


def duration_curves(headroom: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """N-0 headroom (MW) of each site's substation sorted high to low, against hours at or above it.

    Columns are site names; the index is hours (step length × rank). Sampled to CURVE_POINTS.
    """
    columns = {str(column): column for column in headroom.columns}
    picked = {name: columns[str(sub)] for sub, name in names.items() if str(sub) in columns}
    values = -np.sort(-headroom[list(picked.values())].to_numpy(float), axis=0)
    hours = (np.arange(len(headroom)) + 1) * _step_hours(headroom.index)
    rows = np.unique(np.linspace(0, max(len(headroom) - 1, 0), CURVE_POINTS).round().astype(int))
    return pd.DataFrame(values[rows], index=pd.Index(hours[rows], name="hours"), columns=list(picked))


def dispatch_means(site_power: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """Mean power (MW) per site, policy and period.

    Periods are hours up to two weeks of steps, days up to three months, else weeks (so a short
    run shows the daily shape and a year stays a few hundred points).
    """
    if site_power.empty:
        return pd.DataFrame(columns=["policy", "site", "period", "p_mw"])
    span = site_power["time"].max() - site_power["time"].min()
    period = next(rule for rule, days in PERIODS if span / pd.Timedelta(days=1) <= days)
    step = site_power.groupby(["policy", "substation", "time"], sort=False)["p_mw"].sum().reset_index()
    means = (
        step.set_index("time")
        .groupby(["policy", "substation"], sort=False)["p_mw"]
        .resample(period)
        .mean()
        .reset_index()
        .rename(columns={"time": "period"})
    )
    means["site"] = [names.get(sub, str(sub)) for sub in means["substation"]]
    means["policy"] = means["policy"].astype(str)
    return means[["policy", "site", "period", "p_mw"]]


def violation_steps(violations: pd.DataFrame) -> pd.DataFrame:
    """Steps in violation per element (rows, most first, MAX_ELEMENTS) and policy (columns)."""
    if violations.empty:
        return pd.DataFrame()
    label = violations["element"].astype(str) + " · " + violations["criterion"].astype(str)
    table = violations.assign(label=label, policy=violations["policy"].astype(str)).pivot_table(
        index="label", columns="policy", values="steps", aggfunc="sum", fill_value=0
    )
    order = table.sum(axis=1).sort_values(ascending=False, kind="stable").index[:MAX_ELEMENTS]
    return table.loc[order, list(dict.fromkeys(violations["policy"].astype(str)))]  # policies as given


def _step_hours(index: pd.Index) -> float:
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        return float(pd.Series(index).diff().median() / pd.Timedelta(hours=1))
    return 1.0


# --- charts ----------------------------------------------------------------------------------------


def capacity_chart(bars: pd.DataFrame) -> Chart:
    """N-0 (hatched) and firm N-1 (solid) hosting capacity per substation, coloured by what binds."""
    labels = [f"{sub}: {name}" for sub, name in zip(bars["substation"], bars["name"], strict=True)]
    figure = go.Figure()
    for column, criterion_column, kind, pattern in (
        ("hc_n0_mw", "n0_binding_criterion", "N-0", "/"),
        ("hc_n1_mw", "binding_criterion", "N-1", ""),
    ):
        for criterion, rows in bars.groupby(bars[criterion_column].astype(str), sort=False):
            figure.add_bar(
                x=[esc(labels[i]) for i in rows.index],
                y=rows[column],
                name=esc(f"{kind}: {criterion}"),
                offsetgroup=kind,
                marker={"color": _criterion_color(criterion), "pattern": {"shape": pattern}},
                hovertext=[
                    _capacity_hover(row, kind, column, criterion_column) for _, row in rows.iterrows()
                ],
                hoverinfo="text",
            )
    figure.update_layout(barmode="group", yaxis_title="hosting capacity (MW)", xaxis_tickangle=-45)
    figure.update_xaxes(categoryorder="array", categoryarray=[esc(label) for label in labels])

    def draw(png: Figure) -> None:
        ax = png.subplots()
        x = np.arange(len(bars))
        for column, criterion_column, offset, hatch in (
            ("hc_n0_mw", "n0_binding_criterion", -0.2, "//"),
            ("hc_n1_mw", "binding_criterion", 0.2, None),
        ):
            colors = [_criterion_color(str(c)) for c in bars[criterion_column]]
            ax.bar(x + offset, bars[column], width=0.4, color=colors, hatch=hatch, edgecolor="white")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("hosting capacity (MW)")
        ax.set_title("Hosting capacity: N-0 (hatched), firm N-1 (solid); colour = binding criterion")
        used = set(bars["binding_criterion"].astype(str)) | set(bars["n0_binding_criterion"].astype(str))
        handles = [Patch(color=_criterion_color(c), label=c) for c in CRITERIA if c in used]
        png.legend(handles=handles, loc="outside right upper", fontsize=7)

    return Chart(
        "capacity",
        "Hosting capacity by substation",
        f"N-0 and firm (N-1) hosting capacity of {len(bars)} substations (selected sites first, then the "
        "largest); colour says what binds.",
        _finish(figure, height=520),
        draw,
    )


def duration_chart(curves: pd.DataFrame) -> Chart:
    """Headroom duration curve of each selected site's substation."""
    figure = go.Figure()
    for i, name in enumerate(curves.columns):
        figure.add_scatter(
            x=curves.index,
            y=curves[name],
            mode="lines",
            name=esc(name),
            line={"color": PALETTE[i % len(PALETTE)]},
            hovertemplate=f"{esc(name)}<br>%{{y:.1f}} MW or more for %{{x:,.0f}} h<extra></extra>",
        )
    figure.update_layout(
        xaxis_title="hours with at least this headroom",
        yaxis_title="N-0 headroom (MW)",
        yaxis_rangemode="tozero",
    )

    def draw(png: Figure) -> None:
        ax = png.subplots()
        for i, name in enumerate(curves.columns):
            ax.plot(curves.index, curves[name], color=PALETTE[i % len(PALETTE)], label=name)
        ax.set_xlabel("hours with at least this headroom")
        ax.set_ylabel("N-0 headroom (MW)")
        ax.set_ylim(bottom=0)
        ax.set_title("Headroom duration curves of the selected sites")
        if len(curves.columns):
            ax.legend(fontsize=7, loc="lower left")

    return Chart(
        "headroom_duration",
        "Headroom duration curves",
        "N-0 headroom at each selected site's substation over the profile steps, sorted high to low.",
        _finish(figure, height=450),
        draw,
    )


def dispatch_chart(means: pd.DataFrame) -> Chart:
    """Mean power per site over time, one panel per dispatch policy."""
    policies = list(dict.fromkeys(means["policy"])) or ["(no dispatch)"]
    sites = list(dict.fromkeys(means["site"]))
    colors = {site: PALETTE[i % len(PALETTE)] for i, site in enumerate(sites)}
    figure = make_subplots(
        rows=len(policies),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[esc(p) for p in policies],
    )
    for row, (policy, site, part) in _panels(means, policies, sites):
        figure.add_scatter(
            x=part["period"],
            y=part["p_mw"],
            mode="lines",
            name=esc(site),
            legendgroup=esc(site),
            showlegend=row == 1,
            line={"color": colors[site]},
            row=row,
            col=1,
            hovertemplate=f"{esc(site)} · {esc(policy)}<br>%{{x}}: %{{y:.2f}} MW<extra></extra>",
        )
    figure.update_yaxes(title_text="MW", rangemode="tozero")

    def draw(png: Figure) -> None:
        axes = png.subplots(len(policies), 1, sharex=True, squeeze=False)[:, 0]
        for row, (policy, site, part) in _panels(means, policies, sites):
            axes[row - 1].plot(part["period"], part["p_mw"], color=colors[site], label=site)
            axes[row - 1].set_title(policy, fontsize=9)
        for ax in axes:
            ax.set_ylabel("MW")
            ax.set_ylim(bottom=0)
        if sites:
            png.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=7)

    return Chart(
        "dispatch",
        "Dispatch per site and policy",
        "Mean power drawn by each site per hour, day or week (by the run's length), one panel per policy.",
        _finish(figure, height=max(320, 230 * len(policies))),
        draw,
    )


def violations_chart(steps: pd.DataFrame) -> Chart:
    """Steps in violation per element and policy (horizontal bars)."""
    labels = list(reversed(steps.index))  # most violated at the top
    figure = go.Figure()
    for i, policy in enumerate(steps.columns):
        figure.add_bar(
            y=[esc(label) for label in labels],
            x=steps.loc[labels, policy],
            orientation="h",
            name=esc(policy),
            marker={"color": PALETTE[i % len(PALETTE)]},
            hovertemplate=f"{esc(policy)}<br>%{{y}}: %{{x}} steps<extra></extra>",
        )
    figure.update_layout(barmode="group", xaxis_title="steps in violation")
    if steps.empty:
        figure.add_annotation(text="no violations", showarrow=False, font={"size": 16})

    def draw(png: Figure) -> None:
        ax = png.subplots()
        y = np.arange(len(labels))
        width = 0.8 / max(len(steps.columns), 1)
        for i, policy in enumerate(steps.columns):
            ax.barh(
                y + i * width - 0.4 + width / 2,
                steps.loc[labels, policy],
                height=width,
                color=PALETTE[i % len(PALETTE)],
                label=policy,
            )
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel("steps in violation")
        ax.set_title("Violations by element and policy")
        if steps.empty:
            ax.text(0.5, 0.5, "no violations", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)

    return Chart(
        "violations",
        "Violations by element",
        f"Steps in violation per element and policy (the {MAX_ELEMENTS} most violated elements).",
        _finish(figure, height=max(320, 60 + 22 * len(labels) * max(len(steps.columns), 1))),
        draw,
    )


def _panels(
    means: pd.DataFrame, policies: list[str], sites: list[str]
) -> Iterable[tuple[int, tuple[str, str, pd.DataFrame]]]:
    groups = dict(iter(means.groupby(["policy", "site"], sort=False)))
    for row, policy in enumerate(policies, start=1):
        for site in sites:
            if (policy, site) in groups:
                yield row, (policy, site, groups[(policy, site)])


def _capacity_hover(row: pd.Series, kind: str, column: str, criterion_column: str) -> str:
    text = f"<b>{esc(row['name'])}</b><br>{kind}: {row[column]:.1f} MW<br>binds: {esc(row[criterion_column])}"
    element = row.get("binding_element" if kind == "N-1" else "n0_binding_element")
    if isinstance(element, str) and element:
        text += f" at {esc(element)}"
    outage = row.get("binding_outage") if kind == "N-1" else None
    if isinstance(outage, str) and outage:
        text += f"<br>outage: {esc(outage)}"
    return text


def _criterion_color(criterion: str) -> str:
    return CRITERION_COLORS.get(criterion, OTHER_COLOR)


def _finish(figure: go.Figure, height: int) -> go.Figure:
    figure.update_layout(template="plotly_white", height=height, margin={"t": 40, "b": 40, "l": 60, "r": 20})
    return figure
