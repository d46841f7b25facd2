"""A siting study from one TOML file: capacity → selection → simulation → report.

The file's tables and keys (every one optional except ``grid``; see data/studies/README.md):
``name``, ``grid``, ``out``; ``[limits]``, ``[capacity]``, ``[selection]`` (+ ``[selection.layers]``),
``[workload]``, ``[power]``, ``[simulation]``, and ``[[scenario]]`` (load-growth scenarios run
side by side). Relative paths are relative to the study file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from siting.capacity import CapacitySettings, CapacityStudy
from siting.engine.flow import Balance, EngineOptions
from siting.errors import SettingError, SitingError, UsageError, check_number
from siting.fleet import FleetResult, FleetSettings, PowerModes
from siting.geography import GeoRules
from siting.limits import StudyLimits
from siting.outputs import check_output_folder, safe_name
from siting.power import PowerModel, load_gpu_curve
from siting.progress import Progress, indented, silent
from siting.report import headline_numbers
from siting.screening import Screening, ScreeningSettings
from siting.selection import Selection, SelectionSettings
from siting.sources.grid import Grid
from siting.sources.profiles import PEAK_CASE
from siting.sources.user_profiles import DISPATCH_RULES

if TYPE_CHECKING:
    import numpy as np

STUDIES_DIR = Path(__file__).resolve().parent.parent / "data" / "studies"
DEFAULT_STUDY = STUDIES_DIR / "default.toml"

KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {
        "name": str,
        "grid": str,
        "out": str,
        "description": str,
        "profiles": str,
        "profiles_tz": str,
        "dispatch": str,
        "bus_coords": str,
        "substation_list": str,
        "substation_list_mode": str,
        "candidates": str,
        "min_kv": (int, float),
        "contingencies": str,
    },
    "limits": {
        "vmin_pu": (int, float),
        "vmax_pu": (int, float),
        "contingency_vmin_pu": (int, float),
        "contingency_vmax_pu": (int, float),
        "emergency_percent": (int, float),
        "pre_existing": str,
        "worsening_pu": (int, float),
        "worsening_percent": (int, float),
        "contribution_df": (int, float),
    },
    "capacity": {
        "at": str,
        "n1": bool,
        "n1_hops": int,
        "cap_mw": (int, float),
        "pf": (int, float),
        "year": bool,
        "deviation_limit_pu": (int, float),
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
    "screening": {
        "step_limit_pu": (int, float),
        "step_hops": int,
        "system_loss_limit_mw": (int, float),
        "min_scr": (int, float),
        "fault_hops": int,
        "ride_through_pu": (int, float),
        "deviation_limit_pu": (int, float),
        "ext_grid_sc_mva": (int, float),
        "sc_min_share": (int, float),
        "gen_xdss_pu": (int, float),
        "sgen_k": (int, float),
        "line_endtemp_degree": (int, float),
        "peak_policy": str,
    },
    "report": {"pdf": bool},
    "engine": {"enforce_q_lims": bool, "balance": str, "weights": dict},
    "flex_curve": {"levels": list, "sizing": str},
    "power": {"pue": (int, float), "aux_fraction": (int, float), "host_w_per_gpu": (int, float)},
    "simulation": {
        "policies": list,
        "load_scale": (int, float, str),
        "step_minutes": (int, float),
        "max_delay_minutes": (int, float),
        "latency_km": (int, float),
        "power_cap": bool,
        "min_cap_w": (int, float),
        "shutdown": bool,
        "wake_minutes": (int, float),
        "warm_reserve": (int, float),
        "flex_depth": (int, float),
        "flex_hours": (int, float),
        "backup_hours": (int, float),
    },
}
# One [[scenario]] entry: the study's stages run once per scenario, with its loads.
SCENARIO_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "load_scale": (int, float),
}


@dataclass(frozen=True)
class Scenario:
    """A load level the whole study runs at: every load (model values and profiles) × ``load_scale``.

    Capacity, selection, the simulated year and the screening all see the grown loads, so the
    operating point (a study case, the net-load peak of the grown profiles) moves with them.
    """

    name: str  # names the scenario's sub-folder: a file name
    load_scale: float = 1.0  # factor on every load (MW and Mvar), > 0
    description: str = ""  # what the level stands for and its source

    def record(self) -> dict[str, object]:
        """The scenario as plain data, for manifests."""
        return {"name": self.name, "load_scale": self.load_scale, "description": self.description}


@dataclass(frozen=True)
class Study:
    """A validated study: every stage's settings.

    Parameters
    ----------
    name : str
        Study name: the report's title and folder name.
    grid : str
        Grid source, as ``load_grid`` takes it.
    source : str
        The study file, or ``study`` for a dict.
    limits : StudyLimits
        Limits where the model has none, shared by every stage.
    capacity, selection, fleet : CapacitySettings, SelectionSettings, FleetSettings
        Each stage's settings.
    layers : dict of str to Path
        GIS layer files by kind.
    load_scale : float or str
        Factor on every load profile, or ``peak-case`` (see ``load_scale_factor``).
    step_minutes : float or None
        Simulation step (min), a multiple of the profiles' own; None keeps theirs.
    demand : Path or None
        A demand CSV (tokens/s) replacing the workload model.
    out : Path or None
        Report folder the file asks for.
    description : str
        A line under the report's title.
    screening : ScreeningSettings or None
        Interconnection screening of the picked sites; None: none.
    screening_peak_policy : str
        Whose simulated peaks (MW) trip in the screening's fleet trip.
    pdf : bool
        Also write report.pdf.
    flex_levels : tuple of str
        Levels of the flexibility curve (firm, peak, flex-<percent>); empty: no curve.
    flex_sizing : str
        How the curve sizes a level's sites: ``each`` candidate at its own capacity, or picked
        ``joint``-ly by the selection stage under the level's criterion.
    own_data : dict
        Keywords of ``siting.sources.own.with_own_data``: the user's profiles, coordinates,
        substations.
    """

    name: str
    grid: str
    source: str  # the study file, or "study" for a dict
    limits: StudyLimits = field(default_factory=StudyLimits)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    layers: dict[str, Path] = field(default_factory=dict)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    load_scale: float | str = 1.0
    step_minutes: float | None = None
    demand: Path | None = None
    out: Path | None = None
    description: str = ""
    screening: ScreeningSettings | None = None  # None: no interconnection screening
    screening_peak_policy: str = "grid-aware"  # whose simulated peaks trip in the fleet trip
    pdf: bool = False
    flex_levels: tuple[str, ...] = ()  # the flexibility curve's levels; () computes none
    flex_sizing: str = "each"  # each candidate at its own capacity, or "joint": picked together
    own_data: dict[str, Any] = field(default_factory=dict)  # siting.sources.own.with_own_data keywords
    scenarios: tuple[Scenario, ...] = ()  # () runs the study once, at the grid's own loads
    scenario: Scenario | None = None  # set on the study one scenario runs: its loads are grown


def read_study(path: Path | None = None) -> Study:
    """Read and check a study file.

    Parameters
    ----------
    path : Path, optional
        A study TOML file; relative paths in it are relative to the file (default: the
        shipped default study).

    Returns
    -------
    Study
        Every stage's settings, checked.

    Raises
    ------
    UsageError
        A missing or malformed file, an unknown key, or a value a setting cannot take (naming
        the file and key).
    """
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
    """Validate a study's tables into a :class:`Study`; errors name the key and the source.

    Every path the study names is checked to exist here, before anything is computed.
    """
    _check_keys(data, source)
    if "grid" not in data:
        raise UsageError(f'{source}: needs a grid, e.g. grid = "simbench:1-HV-mixed--0-sw"')
    base = base or Path.cwd()
    name = safe_name(data.get("name") or Path(source).stem, f"{source}: name")
    selection_data = dict(data.get("selection", {}))
    workload = data.get("workload", {})
    simulation = data.get("simulation", {})
    limits_data = dict(data.get("limits", {}))
    if "emergency_percent" in limits_data:
        limits_data["emergency_factor"] = limits_data.pop("emergency_percent") / 100
    limits = _settings(StudyLimits, "limits", source, **limits_data)
    engine = _engine_options(data.get("engine", {}), source)
    capacity = _settings(
        CapacitySettings, "capacity", source, limits=limits, engine=engine, **data.get("capacity", {})
    )
    layers = {
        kind: _existing(resolve_path(base, path), f"selection.layers.{kind}", source)
        for kind, path in selection_data.pop("layers", {}).items()
    }
    geo_keys = {k: selection_data.pop(k) for k in list(selection_data) if k in _fields(GeoRules)}
    geo = _settings(GeoRules, "selection", source, **geo_keys)
    power = _settings(PowerModel, "power", source, curve=load_gpu_curve(), **data.get("power", {}))
    mode_keys = {key: simulation[key] for key in MODE_KEYS if key in simulation}
    modes = _settings(PowerModes, "simulation", source, **{MODE_KEYS[k]: v for k, v in mode_keys.items()})
    selection = _settings(
        SelectionSettings,
        "selection",
        source,
        geo=geo,
        pf=capacity.pf,
        n1_hops=capacity.n1_hops,
        flex_floor=modes.lowest_share(power),  # a flexible site curtails down to what its modes reach
        limits=limits,
        engine=engine,
        **selection_data,
    )
    fleet_keys = {"peak_utilisation": workload.get("utilisation", 0.9), "seed": workload.get("seed", 0)}
    fleet = _settings(
        FleetSettings,
        "simulation",
        source,
        policies=tuple(simulation.get("policies", FleetSettings().policies)),
        power=power,
        max_delay_minutes=simulation.get("max_delay_minutes", 15.0),
        latency_km=simulation.get("latency_km"),
        pf=capacity.pf,
        limits=limits,
        modes=modes,
        engine=engine,
        **fleet_keys,
    )
    load_scale = simulation.get("load_scale", 1.0)
    if load_scale != PEAK_CASE:
        _checked(source, "simulation.load_scale", check_number, "load_scale", load_scale, above=0)
    step_minutes = simulation.get("step_minutes")
    if step_minutes is not None:
        _checked(source, "simulation.step_minutes", check_number, "step_minutes", step_minutes, above=0)
    demand = workload.get("demand")
    screening = None
    screening_data = dict(data.get("screening", {})) if "screening" in data else None
    peak_policy = "grid-aware"
    if screening_data is not None:
        peak_policy = screening_data.pop("peak_policy", peak_policy)
        if peak_policy not in fleet.policies:
            raise UsageError(
                f"{source}: screening.peak_policy = {peak_policy!r}: use one of the simulated policies "
                f"({', '.join(fleet.policies)})"
            )
        screening = _settings(
            ScreeningSettings, "screening", source, pf=capacity.pf, limits=limits, **screening_data
        )
    return Study(
        name=name,
        grid=data["grid"],
        source=source,
        limits=limits,
        capacity=capacity,
        selection=selection,
        layers=layers,
        fleet=fleet,
        load_scale=load_scale,
        step_minutes=step_minutes,
        demand=_existing(resolve_path(base, demand), "workload.demand", source) if demand else None,
        out=resolve_path(base, data["out"]) if "out" in data else None,
        description=data.get("description", ""),
        screening=screening,
        screening_peak_policy=peak_policy,
        pdf=bool(data.get("report", {}).get("pdf", False)),
        own_data=_own_data(data, base, source),
        flex_levels=_flex_levels(data.get("flex_curve", {}).get("levels", []), capacity, source),
        flex_sizing=_flex_sizing(data.get("flex_curve", {}).get("sizing", "each"), source),
        scenarios=_scenarios(data.get("scenario"), source),
    )


def _scenarios(entries: list | None, source: str) -> tuple[Scenario, ...]:
    """The ``[[scenario]]`` entries (already type-checked by ``_check_keys``) as Scenarios."""
    if entries is None:
        return ()
    scenarios: list[Scenario] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{source}: scenario[{number}]"
        if "name" not in entry:
            raise UsageError(f'{where}: needs a name, e.g. name = "growth-2029"')
        name = safe_name(entry["name"], f"{where}.name =")
        if any(other.name == name for other in scenarios):
            raise UsageError(f"{where}.name = {name!r}: another scenario has this name; name each one apart")
        load_scale = entry.get("load_scale", 1.0)
        _checked(source, f"scenario[{number}].load_scale =", check_number, "load_scale", load_scale, above=0)
        scenarios.append(Scenario(name, float(load_scale), entry.get("description", "")))
    return tuple(scenarios)


OWN_FILES = {
    "profiles": "profiles",
    "bus_coords": "bus_coords",
    "substation_list": "substation_list",
    "contingencies": "contingencies",
}
OWN_VALUES = {
    "profiles_tz": "time_zone",
    "substation_list_mode": "list_mode",
    "candidates": "candidates",
    "min_kv": "min_kv",
    "dispatch": "dispatch",
}


def _own_data(data: dict, base: Path, source: str) -> dict[str, Any]:
    own: dict[str, Any] = {
        field: _existing(resolve_path(base, data[key]), key, source)
        for key, field in OWN_FILES.items()
        if key in data
    }
    own.update({field: data[key] for key, field in OWN_VALUES.items() if key in data})
    if own.get("candidates", "substations") not in ("substations", "buses", "feeder"):
        raise UsageError(f"{source}: candidates = {own['candidates']!r}: use substations, buses or feeder")
    if own.get("dispatch", "case") not in DISPATCH_RULES:
        raise UsageError(f"{source}: dispatch = {own['dispatch']!r}: use {' or '.join(DISPATCH_RULES)}")
    return own


def _engine_options(table: dict, source: str) -> EngineOptions:
    weights = table.get("weights")
    try:
        if weights is not None:
            weights = {int(gen): value for gen, value in weights.items()}
        balance = Balance(mode=table.get("balance", "slack"), weights=weights)
    except (UsageError, ValueError, TypeError) as err:
        raise UsageError(f"{source}: [engine] balance / weights: {err}") from err
    return EngineOptions(enforce_q_lims=table.get("enforce_q_lims", False), balance=balance)


def _flex_levels(levels: list, capacity: CapacitySettings, source: str) -> tuple[str, ...]:
    from siting.flexcurve import level_column

    for level in levels:
        try:
            level_column(level)
        except UsageError as err:
            raise UsageError(f"{source}: flex_curve.levels: {err}") from err
        if level.startswith("flex-") and not capacity.year:
            raise UsageError(f"{source}: flex_curve.levels {level!r} needs capacity.year = true")
        if level == "firm" and not capacity.n1:
            raise UsageError(f"{source}: flex_curve.levels 'firm' needs capacity.n1 = true")
    return tuple(levels)


def _flex_sizing(sizing: str, source: str) -> str:
    if sizing not in FLEX_SIZINGS:
        raise UsageError(f"{source}: flex_curve.sizing {sizing!r}: use {' or '.join(FLEX_SIZINGS)}")
    return sizing


# How the flexibility curve sizes a level's sites: each candidate alone, or picked together.
FLEX_SIZINGS = ("each", "joint")
# The screening numbers a study leads with (the rest is in screening/ and the report).
SCREENING_HEADLINE = (
    "fleet_trip_mw",
    "fleet_trip_mw_pass",
    "worst_fault_mw",
    "worst_fault_bus_name",
    "worst_fault_sites",
)
# Study keys of the fleet's power modes → PowerModes fields.
MODE_KEYS = {
    "power_cap": "cap",
    "min_cap_w": "min_cap_w",
    "shutdown": "shutdown",
    "wake_minutes": "wake_minutes",
    "warm_reserve": "warm_reserve",
    "flex_depth": "max_depth",
    "flex_hours": "max_hours",
    "backup_hours": "backup_hours",
}
# Settings fields whose study key differs from the field name (table → field → key).
STUDY_KEYS = {
    "limits": {"emergency_factor": "emergency_percent"},
    "simulation": {
        "peak_utilisation": "workload.utilisation",
        "seed": "workload.seed",
        **{field: key for key, field in MODE_KEYS.items()},
    },
}


def _settings[T](cls: Callable[..., T], table: str, source: str, **values: object) -> T:
    """``cls(**values)``, a SettingError renamed to the study's key (``file: table.key``)."""
    try:
        return cls(**values)
    except SettingError as err:
        raise _renamed(err, table, source) from err


def _checked(source: str, key: str, check: Callable[..., object], *args: object, **kwargs: object) -> None:
    try:
        check(*args, **kwargs)
    except SettingError as err:
        raise err.named(f"{source}: {key}") from err


def _renamed(err: SettingError, table: str, source: str) -> UsageError:
    key = STUDY_KEYS.get(table, {}).get(err.field, err.field)
    if err.field in ("pf", "n1_hops", "at", "cap_mw"):
        table = "capacity"
    qualified = key if "." in key else f"{table}.{key}"
    value = err.value
    if err.field == "emergency_factor" and isinstance(value, int | float):  # the key is in %
        value = value * 100
    return err.named(f"{source}: {qualified} =", value)


def _existing(path: Path, key: str, source: str) -> Path:
    if not path.exists():
        raise UsageError(f"{source}: {key} = {str(path)!r}: no such file; give the path of an existing file")
    return path


def _check_keys(data: dict, source: str) -> None:
    for key, value in data.items():
        if key == "scenario":
            _check_scenario_keys(value, source)
        elif key in KEYS and key != "":
            if not isinstance(value, dict):
                raise UsageError(f"{source}: [{key}] must be a table")
            _check_table(value, key, source)
        elif key not in KEYS[""]:
            known = ", ".join([*KEYS[""], *(f"[{k}]" for k in KEYS if k), "[[scenario]]"])
            raise UsageError(f"{source}: unknown key '{key}' (known: {known})")
        elif not isinstance(value, KEYS[""][key]):
            raise UsageError(f"{source}: {key} = {value!r}: must be text")


def _check_scenario_keys(entries: object, source: str) -> None:
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UsageError(
            f"{source}: scenario must be one or more [[scenario]] tables, each with a name and a load_scale"
        )
    for number, entry in enumerate(entries, start=1):
        _check_table(entry, f"scenario[{number}]", source, SCENARIO_KEYS)


def _check_table(
    table: dict, name: str, source: str, keys: dict[str, type | tuple[type, ...]] | None = None
) -> None:
    keys = KEYS[name] if keys is None else keys
    for key, value in table.items():
        expected = keys.get(key)
        if expected is None:
            raise UsageError(f"{source}: unknown key '{name}.{key}' (known: {', '.join(keys)})")
        if isinstance(value, bool) and expected is not bool:
            expected_ok = False
        else:
            expected_ok = isinstance(value, expected)
        if not expected_ok:
            kinds = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join(
                {
                    int: "a whole number" if float not in kinds else "a number",
                    float: "a number",
                    str: "text",
                    bool: "true/false",
                    list: "a list",
                    dict: "a table",
                }[k]
                for k in kinds
            )
            raise UsageError(f"{source}: {name}.{key} = {value!r}: must be {wanted}")


def _fields(cls: type[Any]) -> set[str]:
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
        "limits": study.limits.record(),
        "capacity": study.capacity.record(),
        "selection": study.selection.record(),
        "layers": {k: str(v) for k, v in study.layers.items()},
        "fleet": study.fleet.record(),
        "load_scale": study.load_scale,
        "step_minutes": study.step_minutes,
        "demand": str(study.demand) if study.demand else "workload model",
        "screening": study.screening.record() if study.screening is not None else None,
        "screening_peak_policy": study.screening_peak_policy,
        "pdf": study.pdf,
        "flex_curve_levels": list(study.flex_levels),
        "flex_curve_sizing": study.flex_sizing,
        "own_data": {k: str(v) for k, v in study.own_data.items()},
        # only a study with scenarios records them: one without keeps today's manifest
        **({"scenarios": [s.record() for s in study.scenarios]} if study.scenarios else {}),
        **({"scenario": study.scenario.record()} if study.scenario is not None else {}),
    }


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
    screening: Screening | None = None
    flex_curve: pd.DataFrame | None = None  # siting.flexcurve CURVE_COLUMNS, one row per level


def compute_study(
    study: Study,
    progress: Progress | None = None,
    *,
    capacity: CapacityStudy | None = None,
    grid: Grid | None = None,
    keep_grid: bool = True,
) -> StudyResults:
    """Run capacity → selection → simulation.

    Every input the study names is read and checked before the first power flow. ``capacity``
    may come precomputed (a sweep splits it into chunks), ``grid`` preloaded (a notebook that
    changed the model; it is not modified unless ``keep_grid`` is false: then a scenario's
    growth scales its profiles in place, not in a copy). A study that is one scenario
    (``study.scenario``) grows the grid's loads first.
    """
    from siting.fleet import fleet_sites, grid_year, modelled_demand, simulate
    from siting.flexcurve import flex_curve, joint_fleets, level_fleets
    from siting.geography import read_layers
    from siting.screening import screen_sites
    from siting.selection import select_sites
    from siting.sources.peak import operating_point
    from siting.sources.profiles import grow_loads, simulation_year
    from siting.workload import read_demand_csv

    say = progress or silent
    started = datetime.now(UTC)
    layers = read_layers(study.layers)
    if grid is None:
        say(f"loading {study.grid}")
        grid = study_grid(study)
    growth = study.scenario.load_scale if study.scenario is not None else 1.0
    if growth != 1.0:
        grid = grow_loads(grid, growth, in_place=not keep_grid)
    year, factor, demand = None, None, None
    if grid.profiles is not None:
        year, factor = simulation_year(grid, load_scale=study.load_scale, step_minutes=study.step_minutes)
        if study.demand:
            demand = read_demand_csv(study.demand, year.require_profiles("for the demand").index)
    try:
        operating_point(grid, study.capacity.at)
    except SettingError as err:
        raise err.named(f"{study.source}: capacity.at =") from err
    if capacity is None:
        say("[1/4] hosting capacity of every substation")
        capacity = study_capacity(study, grid, progress=indented(say))
    say(f"[2/4] picking up to {study.selection.sites} sites")
    selection = select_sites(
        grid, capacity.table, study.selection, layers=layers, at=study.capacity.at, progress=indented(say)
    )
    if not len(selection.sites):
        raise SitingError(f"{study.source}: {_nothing_picked(selection, study.selection.min_mw)}")
    fleet, curve = None, None
    if year is not None:
        sites = fleet_sites(selection.sites, year, source=f"{study.source}: selected sites")
        if demand is None:
            demand = modelled_demand(year, sites, study.fleet)
        steps = len(year.require_profiles("to simulate"))
        say(f"[3/4] simulating the fleet over {steps:,} steps")
        indented(say)(f"grid alone: {steps:,} steps")
        alone = grid_year(year, study.fleet)  # the fleet and every flexibility level share it
        fleet = simulate(year, sites, demand, study.fleet, progress=indented(say), alone=alone)
        if study.flex_levels:
            say(f"how many MW flexibility buys: {', '.join(study.flex_levels)}")
            if study.flex_sizing == "joint":
                fleets = joint_fleets(
                    grid,
                    capacity.table,
                    study.flex_levels,
                    study.selection,
                    layers=layers,
                    at=study.capacity.at,
                    picked=selection,
                    progress=indented(say),
                )
            else:
                fleets = level_fleets(
                    capacity.table,
                    study.flex_levels,
                    min_mw=study.selection.min_mw,
                    max_mw=study.selection.max_mw,
                )
            curve = flex_curve(year, fleets, study.fleet, progress=indented(say), alone=alone)
    screening = None
    if study.screening is not None:
        say("screening the sites: voltage steps, fleet trip, short circuit, fault ride-through")
        screening = screen_sites(
            grid,
            selection.sites,
            settings=study.screening,
            peak_mw=_site_peaks(fleet, selection, study.screening_peak_policy),
        )
    headline = {"study": study.name, **headline_numbers(grid, capacity, selection, fleet, factor)}
    if study.scenario is not None:
        # load_scale: the simulated year's loads against the grid's own (growth × [simulation] load_scale)
        headline = {
            "study": study.name,
            "scenario": study.scenario.name,
            "load_growth": growth,
            **headline,
            "load_scale": factor * growth if factor is not None else None,
        }
    if screening is not None:
        headline.update(
            {f"screening_{k}": screening.summary[k] for k in SCREENING_HEADLINE if k in screening.summary}
        )
    if curve is not None:
        for row in curve.to_dict("records"):
            headline[f"flex_{row['level']}_mw"] = row["connected_mw"]
            if "blind_violation_steps" in row:
                headline[f"flex_{row['level']}_blind_violation_steps"] = int(row["blind_violation_steps"])
    return StudyResults(study, grid, capacity, selection, fleet, factor, headline, started, screening, curve)


def _nothing_picked(selection: Selection, min_mw: float) -> str:
    """Why no site was picked: the selection's notes and the best candidate's reason."""
    best = selection.candidates.sort_values("capacity_mw", ascending=False, kind="stable").iloc[0]
    parts = [f"no substation can host a site of {min_mw:g} MW", *selection.notes]
    parts.append(
        f"the largest candidate, {best['name']} ({best['capacity_mw']:.1f} MW alone): {best['reason']}"
    )
    return "; ".join(parts)


def _site_peaks(fleet: FleetResult | None, selection: Selection, policy: str) -> np.ndarray | None:
    """Each selected site's highest power (MW) in the simulated year under ``policy``, or None."""
    if fleet is None:
        return None
    power = fleet.site_power[fleet.site_power["policy"] == policy]
    peaks = power.groupby("substation")["p_mw"].max()
    return peaks.reindex(selection.sites["substation"]).fillna(0.0).to_numpy(float)


def study_grid(study: Study) -> Grid:
    """The study's grid with the study's own data (profiles, substations, contingencies) read in."""
    from siting.sources.grid import load_grid
    from siting.sources.own import with_own_data

    return with_own_data(load_grid(study.grid), **study.own_data)


def study_capacity(
    study: Study, grid: Grid, *, substations: list[int] | None = None, progress: Progress | None = None
) -> CapacityStudy:
    """The capacity stage with the study's settings, for all substations or the ids given."""
    from siting.capacity import substation_capacity

    return substation_capacity(grid, study.capacity, substations=substations, progress=progress)


def write_study(results: StudyResults, out: Path) -> None:
    """Write the report folder ``out``, whole or not at all.

    Each stage's tables go in a subfolder of their own, then the report (index.html, figures,
    results.gpkg, Parquet, manifest).
    """
    from siting.outputs import atomic_folder

    with atomic_folder(Path(out)) as folder:
        _write_study_files(results, folder)


def _write_study_files(results: StudyResults, folder: Path) -> None:
    """Write one study's report into ``folder`` (an existing, empty folder)."""
    from siting.capacity import write_capacity
    from siting.fleet import write_fleet
    from siting.outputs import manifest
    from siting.report import report_inputs, write_report_files
    from siting.screening import write_screening
    from siting.selection import write_selection

    study = results.study
    files = {}
    stages: tuple[tuple[str, Callable[[Any, Path], list[str]], object], ...] = (
        ("capacity", write_capacity, results.capacity),
        ("selection", write_selection, results.selection),
        ("simulation", write_fleet, results.fleet),
        ("screening", write_screening, results.screening),
        ("flexibility", _write_flex_curve, results.flex_curve),
    )
    for name, writer, result in stages:
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
    inputs = report_inputs(
        results.grid,
        capacity=results.capacity,
        selection=results.selection,
        fleet=results.fleet,
        title=study.name,
        description=study.description,
        headline=results.headline,
        manifest=record,
        flex_curve=results.flex_curve,
        flex_sizing=study.flex_sizing,
    )
    write_report_files(inputs, folder, screening=results.screening, pdf=study.pdf)


def _write_flex_curve(curve: pd.DataFrame, folder: Path) -> list[str]:
    curve.to_csv(folder / "flex_curve.csv", index=False)
    return ["flex_curve.csv"]


def run_study(
    study: Study,
    out: Path,
    progress: Progress | None = None,
    *,
    capacity: CapacityStudy | None = None,
    grid: Grid | None = None,
) -> dict[str, object]:
    """Run every stage and write the report folder ``out``; returns the headline numbers.

    ``out`` is checked before anything is computed (see ``siting.outputs.check_output_folder``).
    A study with scenarios runs them one after another (see :func:`run_scenarios`).

    Parameters
    ----------
    study : Study
        The study, e.g. from ``read_study``.
    out : Path
        The report folder, written whole or not at all.
    progress : callable, optional
        Called with a line of text as each part starts.
    capacity : CapacityStudy, optional
        The capacity stage's result, if already computed with the study's settings.
    grid : Grid, optional
        The grid, if already loaded (it is not modified).

    Returns
    -------
    dict
        The headline numbers (MW, shares, counts), as in the report's summary and manifest.

    Raises
    ------
    UsageError
        ``out`` is not a folder siting may write, or an input the study names is missing.
    SitingError
        No substation can host a site of the minimum size, or a stage fails on the grid.
    """
    what = f"{study.source}: out" if study.out == out else "--out"
    check_output_folder(out, what)
    if study.scenarios:
        if capacity is not None:
            raise UsageError(
                f"{study.source}: [[scenario]] computes capacity at each scenario's loads; "
                "it cannot take capacity computed beforehand"
            )
        return flat_headline(run_scenarios(study, out, progress, grid=grid, what=what))
    results = compute_study(study, progress, capacity=capacity, grid=grid)
    (progress or silent)("[4/4] writing the report")
    write_study(results, out)
    return results.headline


def scenario_studies(study: Study) -> list[Study]:
    """One study per scenario of ``study``: the same settings, its own name, description and loads.

    Parameters
    ----------
    study : Study
        A study with ``[[scenario]]`` entries.

    Returns
    -------
    list of Study
        In the scenarios' order; each has ``scenario`` set, so ``compute_study`` grows its loads.
    """
    return [
        dataclasses.replace(
            study,
            name=f"{study.name} · {scenario.name}",
            description=scenario.description or study.description,
            scenarios=(),
            scenario=scenario,
        )
        for scenario in study.scenarios
    ]


def run_scenarios(
    study: Study,
    out: Path,
    progress: Progress | None = None,
    *,
    grid: Grid | None = None,
    what: str = "--out",
) -> dict[str, dict[str, object]]:
    """Run every scenario of ``study`` and write ``out`` whole or not at all.

    ``out`` gets one sub-folder per scenario (named after it, a full study report each) and,
    beside them, ``index.html`` (the scenarios side by side, linking to their reports),
    ``scenarios.csv`` (one row of headline numbers per scenario), ``report.pdf`` when the
    study asks for PDFs, and ``manifest.json``. The grid is loaded once; the scenarios run one
    after another, each holding its results in memory only until they are written.

    Parameters
    ----------
    study : Study
        A study with ``[[scenario]]`` entries.
    out : Path
        The report folder.
    progress : callable, optional
        Called with a line of text as each part starts.
    grid : Grid, optional
        The grid, if already loaded (it is not modified).
    what : str
        How messages name ``out`` (``--out`` or the study file's ``out``).

    Returns
    -------
    dict
        Scenario name → its headline numbers (``compute_study``'s: MW, hours, shares).

    Raises
    ------
    UsageError
        ``out`` is not a folder siting may write.
    SitingError
        A scenario's stage fails on the grid; nothing is written.
    """
    from siting.outputs import atomic_folder, manifest, write_json
    from siting.report import scenario_table, scenarios_page

    check_output_folder(out, what)
    say = progress or silent
    started = datetime.now(UTC)
    loaded = grid is None
    if grid is None:
        # loaded once: each scenario grows its own copy of the loads, the last one (no other
        # needs them after it) the loaded profiles themselves
        say(f"loading {study.grid}")
        grid = study_grid(study)
    headlines: dict[str, dict[str, object]] = {}
    studies = scenario_studies(study)
    with atomic_folder(Path(out), what) as folder:
        for number, (scenario, sub) in enumerate(zip(study.scenarios, studies, strict=True), start=1):
            say(f"scenario {number}/{len(studies)}: {scenario.name} (loads × {scenario.load_scale:g})")
            last = number == len(studies)
            results = compute_study(sub, indented(say), grid=grid, keep_grid=not (loaded and last))
            indented(say)("[4/4] writing its report")
            (folder / scenario.name).mkdir()
            _write_study_files(results, folder / scenario.name)
            headlines[scenario.name] = results.headline
            del results  # one scenario's results in memory at a time
        say("the scenarios side by side")
        table = scenario_table(headlines)
        rows = [{"scenario": name, **headline} for name, headline in headlines.items()]
        pd.DataFrame(rows).to_csv(folder / "scenarios.csv", index=False)
        (folder / "index.html").write_text(
            scenarios_page(
                study.name,
                study.description,
                table,
                {s.name: s.description for s in study.scenarios},
                headlines,
            ),
            encoding="utf-8",
        )
        files = ["index.html", "scenarios.csv", *(f"{s.name}/index.html" for s in study.scenarios)]
        if study.pdf:
            from siting.pdf import write_scenarios_pdf

            write_scenarios_pdf(study.name, study.description, table, folder / "report.pdf")
            files.append("report.pdf")
        source = Path(study.source)
        record = manifest(
            inputs={"study": source if source.is_file() else study.source, **grid.inputs()},
            settings=study_summary(study),
            results={"scenarios": headlines},
            started=started,
        )
        write_json(folder / "manifest.json", {**record, "report_files": [*files, "manifest.json"]})
    return headlines


def flat_headline(headlines: dict[str, dict[str, object]]) -> dict[str, object]:
    """Scenario headlines as one flat dict, the form ``run_study`` returns.

    Parameters
    ----------
    headlines : dict of str to dict
        Scenario name → its headline numbers.

    Returns
    -------
    dict
        ``"<scenario>.<key>"`` → value, scenarios in order (their names and the study's left out).
    """
    return {
        f"{name}.{key}": value
        for name, headline in headlines.items()
        for key, value in headline.items()
        if key not in ("study", "scenario")
    }
