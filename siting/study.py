"""A siting study from one TOML file: capacity → selection → simulation → report.

The file's tables and keys (every one optional except ``grid``; see data/studies/README.md):
``name``, ``grid``, ``out``; ``[limits]``, ``[capacity]``, ``[selection]`` (+ ``[selection.layers]``),
``[workload]``, ``[power]``, ``[simulation]``. Relative paths are relative to the study file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd

from siting.capacity import CapacityStudy
from siting.errors import SitingError, UsageError
from siting.fleet import FleetResult, FleetSettings
from siting.geography import GeoRules
from siting.limits import StudyLimits
from siting.power import PowerModel, load_gpu_curve
from siting.report import ReportInputs
from siting.selection import Selection, SelectionSettings
from siting.sources.geo import WGS84
from siting.sources.grid import Grid

STUDIES_DIR = Path(__file__).resolve().parent.parent / "data" / "studies"
DEFAULT_STUDY = STUDIES_DIR / "default.toml"

KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"name": str, "grid": str, "out": str, "description": str},
    "limits": {
        "vmin_pu": (int, float),
        "vmax_pu": (int, float),
        "contingency_vmin_pu": (int, float),
        "contingency_vmax_pu": (int, float),
        "emergency_percent": (int, float),
    },
    "capacity": {
        "at": str,
        "n1": bool,
        "n1_hops": int,
        "cap_mw": (int, float),
        "pf": (int, float),
        "year": bool,
    },
    "selection": {
        "criterion": str,
        "sites": int,
        "min_mw": (int, float),
        "max_mw": (int, float),
        "step_mw": (int, float),
        "regions": int,
        "per_region": int,
        "exclusion_buffer_m": (int, float),
        "fiber_max_m": (int, float),
        "parcel_min_m2": (int, float),
        "parcel_max_m": (int, float),
        "layers": dict,
    },
    "workload": {"utilisation": (int, float), "seed": int, "demand": str},
    "power": {"pue": (int, float), "aux_fraction": (int, float), "host_w_per_gpu": (int, float)},
    "simulation": {
        "policies": list,
        "load_scale": (int, float, str),
        "step_minutes": (int, float),
        "max_delay_minutes": (int, float),
        "latency_km": (int, float),
    },
}


@dataclass(frozen=True)
class CapacityOptions:
    at: str | None = None  # operating point: case:<name>, netpeak or a time (default: hL, else netpeak)
    n1: bool = True
    n1_hops: int | None = None
    cap_mw: float = 100.0
    pf: float = 0.95
    year: bool = True


@dataclass(frozen=True)
class Study:
    """A validated study: every stage's settings."""

    name: str
    grid: str
    source: str  # the study file, or "study" for a dict
    limits: StudyLimits = field(default_factory=StudyLimits)
    capacity: CapacityOptions = field(default_factory=CapacityOptions)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    layers: dict[str, Path] = field(default_factory=dict)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    load_scale: float | str = 1.0
    step_minutes: float | None = None
    demand: Path | None = None
    out: Path | None = None
    description: str = ""


def read_study(path: Path | None = None) -> Study:
    """A study file (default: the shipped default study)."""
    path = Path(path) if path is not None else DEFAULT_STUDY
    return study_from_dict(read_toml(path, "study"), source=str(path), base=path.parent)


def read_toml(path: Path, what: str) -> dict:
    """A TOML file's tables; a missing or malformed file is a usage error naming it."""
    if not path.is_file():
        raise UsageError(f"{path}: no such {what} file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not valid TOML ({err})") from err


def study_from_dict(data: dict, source: str = "study", base: Path | None = None) -> Study:
    """Validate a study's tables into a :class:`Study`; errors name the key and the source."""
    _check_keys(data, source)
    if "grid" not in data:
        raise UsageError(f'{source}: needs a grid, e.g. grid = "simbench:1-HV-mixed--0-sw"')
    base = base or Path.cwd()
    limits_data = data.get("limits", {})
    capacity_data = data.get("capacity", {})
    selection_data = dict(data.get("selection", {}))
    workload = data.get("workload", {})
    power = data.get("power", {})
    simulation = data.get("simulation", {})
    try:
        limits = StudyLimits(
            **{k: float(v) for k, v in limits_data.items() if k != "emergency_percent"},
            **(
                {"emergency_factor": limits_data["emergency_percent"] / 100}
                if "emergency_percent" in limits_data
                else {}
            ),
        )
        capacity = CapacityOptions(**capacity_data)
        layers = {kind: resolve_path(base, p) for kind, p in selection_data.pop("layers", {}).items()}
        geo = GeoRules(**{k: selection_data.pop(k) for k in list(selection_data) if k in _fields(GeoRules)})
        selection = SelectionSettings(**selection_data, geo=geo, pf=capacity.pf, n1_hops=capacity.n1_hops)
        fleet = FleetSettings(
            policies=tuple(simulation.get("policies", FleetSettings().policies)),
            power=PowerModel(load_gpu_curve(), **power),
            peak_utilisation=float(workload.get("utilisation", 0.9)),
            max_delay_minutes=float(simulation.get("max_delay_minutes", 15.0)),
            latency_km=simulation.get("latency_km"),
            pf=capacity.pf,
            seed=int(workload.get("seed", 0)),
            limits=limits,
        )
    except UsageError as err:
        raise UsageError(f"{source}: {err}") from err
    name = data.get("name") or Path(source).stem
    return Study(
        name=name,
        grid=data["grid"],
        source=source,
        limits=limits,
        capacity=capacity,
        selection=selection,
        layers=layers,
        fleet=fleet,
        load_scale=simulation.get("load_scale", 1.0),
        step_minutes=simulation.get("step_minutes"),
        demand=resolve_path(base, workload["demand"]) if "demand" in workload else None,
        out=resolve_path(base, data["out"]) if "out" in data else None,
        description=data.get("description", ""),
    )


def _check_keys(data: dict, source: str) -> None:
    for key, value in data.items():
        if key in KEYS and key != "":
            if not isinstance(value, dict):
                raise UsageError(f"{source}: [{key}] must be a table")
            _check_table(value, key, source)
        elif key not in KEYS[""]:
            known = ", ".join([*KEYS[""], *(f"[{k}]" for k in KEYS if k)])
            raise UsageError(f"{source}: unknown key '{key}' (known: {known})")
        elif not isinstance(value, KEYS[""][key]):
            raise UsageError(f"{source}: '{key}' must be text")


def _check_table(table: dict, name: str, source: str) -> None:
    for key, value in table.items():
        expected = KEYS[name].get(key)
        if expected is None:
            raise UsageError(f"{source}: unknown key '{name}.{key}' (known: {', '.join(KEYS[name])})")
        if isinstance(value, bool) and expected is not bool:
            expected_ok = False
        else:
            expected_ok = isinstance(value, expected)
        if not expected_ok:
            kinds = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join(
                {
                    int: "a number",
                    float: "a number",
                    str: "text",
                    bool: "true/false",
                    list: "a list",
                    dict: "a table",
                }[k]
                for k in kinds
            )
            raise UsageError(f"{source}: '{name}.{key}' must be {wanted}, not {value!r}")


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def resolve_path(base: Path, value: str) -> Path:
    """A path from a study or sweep file: as given if absolute, else relative to ``base``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def study_summary(study: Study) -> dict[str, object]:
    """The study's settings as plain data, for manifests."""
    return {
        "name": study.name,
        "grid": study.grid,
        "source": study.source,
        "limits": vars(study.limits),
        "capacity": vars(study.capacity),
        "selection": study.selection.record(),
        "layers": {k: str(v) for k, v in study.layers.items()},
        "fleet": study.fleet.record(),
        "load_scale": study.load_scale,
        "step_minutes": study.step_minutes,
        "demand": str(study.demand) if study.demand else "workload model",
    }


Progress = Callable[[str], None]


@dataclass(frozen=True)
class StudyResults:
    """Every stage's result, in memory: what the report and the sweep are made from."""

    study: Study
    grid: Grid
    capacity: CapacityStudy
    selection: Selection
    fleet: FleetResult | None  # None when the grid has no profiles to simulate a year on
    load_factor: float | None  # the factor applied to the load profiles
    headline: dict[str, object]
    started: datetime


def compute_study(
    study: Study,
    progress: Progress | None = None,
    capacity: CapacityStudy | None = None,
    grid: Grid | None = None,
) -> StudyResults:
    """Run capacity → selection → simulation. ``capacity`` may come precomputed (a sweep splits
    it into chunks), ``grid`` preloaded (a notebook that changed the model)."""
    from siting.fleet import fleet_sites, modelled_demand, simulate
    from siting.geography import read_layers
    from siting.selection import select_sites
    from siting.sources.grid import load_grid
    from siting.sources.profiles import load_scale_factor, resample_profiles, scale_loads
    from siting.workload import read_demand_csv

    say = progress or (lambda _message: None)
    started = datetime.now(UTC)
    layers = read_layers(study.layers)
    if grid is None:
        say(f"loading {study.grid}")
        grid = load_grid(study.grid)
    if capacity is None:
        say("[1/4] hosting capacity of every substation")
        capacity = study_capacity(study, grid, progress=lambda m: say(f"  {m}"))
    say(f"[2/4] picking up to {study.selection.sites} sites")
    selection = select_sites(
        grid, capacity.table, study.selection, layers, at=study.capacity.at, progress=lambda m: say(f"  {m}")
    )
    if not len(selection.sites):
        raise SitingError(f"{study.source}: no substation can host a site of {study.selection.min_mw:g} MW")
    fleet, factor = None, None
    if grid.profiles is not None:
        factor = load_scale_factor(grid, study.load_scale)
        year = scale_loads(grid, factor)
        if study.step_minutes is not None:
            year = resample_profiles(year, study.step_minutes)
        sites = fleet_sites(selection.sites, year, source=f"{study.source}: selected sites")
        demand = (
            read_demand_csv(study.demand, year.profiles.index)
            if study.demand
            else modelled_demand(year, sites, study.fleet)
        )
        say(f"[3/4] simulating the fleet over {len(year.profiles):,} steps")
        fleet = simulate(year, sites, demand, study.fleet, progress=lambda m: say(f"  {m}"))
    headline = _headline(study, grid, capacity, selection, fleet, factor)
    return StudyResults(study, grid, capacity, selection, fleet, factor, headline, started)


def study_capacity(
    study: Study, grid: Grid, substations: list[int] | None = None, progress: Progress | None = None
) -> CapacityStudy:
    """The capacity stage with the study's settings, for all substations or the ids given."""
    from siting.capacity import CapacitySettings, substation_capacity

    options = study.capacity
    return substation_capacity(
        grid,
        CapacitySettings(pf=options.pf, cap_mw=options.cap_mw, limits=study.limits),
        at=options.at,
        n1=options.n1,
        year=options.year,
        substations=substations,
        n1_hops=options.n1_hops,
        progress=progress,
    )


def report_inputs(results: StudyResults, manifest: dict[str, object]) -> ReportInputs:
    """What the report shows, from the stages' results."""
    from siting.report import ReportInputs, lines_frame, peak_line_loading

    fleet, grid = results.fleet, results.grid
    # lines by their highest loading over the simulated year (the last policy: grid-aware by default)
    loading = fleet.line_peak_percent.iloc[:, -1] if fleet is not None else peak_line_loading(grid)
    empty = pd.DataFrame()
    return ReportInputs(
        title=results.study.name,
        grid_name=grid.name,
        operating_point=results.capacity.operating_point,
        substations=_points(results.capacity.table),
        lines=lines_frame(grid, loading),
        sites=results.selection.sites,
        candidates=results.selection.candidates,
        regions=results.selection.regions,
        headroom=results.capacity.headroom,
        fleet_summary=fleet.summary if fleet is not None else empty,
        violations=fleet.violations if fleet is not None else empty,
        site_power=fleet.site_power if fleet is not None else empty,
        headline=headline_display(results.headline),
        manifest=manifest,
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
            text = f"{100 * value:.2f} %"
        elif key.endswith("energy_mwh"):
            text = f"{value / 1000:,.1f} GWh"
        elif key == "joint_check_passes":
            text = "passes" if value else "FAILS"
        elif key == "load_scale":
            text = f"× {value:g}"
        elif isinstance(value, float):
            text = f"{value:,.4g}"
        else:
            text = str(value)
        shown[label] = text
    return shown


def write_study(results: StudyResults, out: Path) -> None:
    """The report folder ``out``, written whole or not at all: each stage's tables in its own
    subfolder, then the report (index.html, figures, results.gpkg, Parquet, manifest)."""
    from siting.capacity import write_capacity
    from siting.fleet import write_fleet
    from siting.outputs import atomic_folder, manifest
    from siting.report import write_report
    from siting.selection import write_selection

    study = results.study
    with atomic_folder(Path(out)) as folder:
        files = {}
        for name, writer, result in (
            ("capacity", write_capacity, results.capacity),
            ("selection", write_selection, results.selection),
            ("simulation", write_fleet, results.fleet),
        ):
            if result is not None:
                (folder / name).mkdir()
                files[name] = writer(result, folder / name)
        source = Path(study.source)
        record = manifest(
            inputs={
                "study": source if source.is_file() else study.source,
                "grid": results.grid.source,
                **{f"file {p.name}": p for p in results.grid.files},
                **{f"layer {k}": p for k, p in study.layers.items()},
                **({"demand": study.demand} if study.demand else {}),
            },
            settings=study_summary(study),
            results={**results.headline, "stage_files": files},
            started=results.started,
        )
        write_report(report_inputs(results, record), folder)


def run_study(
    study: Study,
    out: Path,
    progress: Progress | None = None,
    capacity: CapacityStudy | None = None,
    grid: Grid | None = None,
) -> dict[str, object]:
    """Run every stage and write the report folder ``out``; returns the headline numbers."""
    results = compute_study(study, progress, capacity, grid)
    (progress or (lambda _message: None))("[4/4] writing the report")
    write_study(results, out)
    return results.headline


def _points(table: pd.DataFrame) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs=WGS84)


def _headline(study, grid, capacity, selection, fleet, factor) -> dict[str, object]:
    table = capacity.table
    joint = selection.joint.set_index("set")
    headline: dict[str, object] = {
        "study": study.name,
        "grid": grid.name,
        "operating_point": capacity.operating_point,
        "substations": len(table),
        "firm_capacity_mw": float(table["hc_n1_mw"].sum()) if study.capacity.n1 else None,
        "unused_share_at_peak": capacity.unused_share_at_peak,
        "sites": len(selection.sites),
        "total_mw": float(selection.sites["size_mw"].sum()),
        "joint_check_passes": bool(joint.at["selected", "passes"]),
        "naive_violations": int(joint.at["naive top-K", "violations"])
        if "naive top-K" in joint.index
        else None,
        "load_scale": factor,
    }
    if fleet is not None:
        for row in fleet.summary.itertuples():
            headline[f"{row.policy}_served_share"] = row.served_share
            headline[f"{row.policy}_violations"] = row.violations
            headline[f"{row.policy}_violation_hours"] = row.violation_hours
            headline[f"{row.policy}_energy_mwh"] = row.energy_mwh
    return headline
