"""Load a network model from any source the toolkit knows into a ``Grid``."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandapower as pp
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import GridError, UsageError
from siting.sources.catalog import GRIDS_DIR, MODEL_SUFFIXES, model_file, read_catalog
from siting.sources.contingencies import Contingencies
from siting.sources.substations import find_substations


@dataclass(frozen=True)
class Grid:
    """A network model with its substations and, when the source has them, time-series profiles.

    Parameters
    ----------
    name : str
        Short name (catalog name, SimBench code or file stem).
    source : str
        Where it was loaded from, as ``load_grid`` was given it.
    description : str
        One line about the model.
    net : pandapowerNet
        The network model.
    substations : GeoDataFrame
        One row per candidate substation (see ``siting.sources.substations``), EPSG:4326 points.
    profiles : DataFrame, optional
        A DatetimeIndex and columns ``(element, variable, index)``, e.g. ``("load", "p_mw", 12)``:
        the absolute value of that pandapower table column for that element at each time step
        (MW, Mvar). None when the source has none.
    files : tuple of Path
        Model files read, for manifests; none for package data.
    contingencies : Contingencies, optional
        The planner's contingency set; None studies every single line and transformer outage.
    dispatch : str, optional
        How generation follows the user's profiles (``siting.sources.user_profiles``), when given.
    """

    name: str
    source: str
    description: str
    net: pandapowerNet
    substations: gpd.GeoDataFrame
    profiles: pd.DataFrame | None = None
    files: tuple[Path, ...] = ()  # model files read (for manifests); none for package data
    contingencies: Contingencies | None = None
    dispatch: str | None = None

    def require_profiles(self, purpose: str) -> pd.DataFrame:
        """``profiles``; a UsageError naming the grid and ``purpose`` (e.g. "to scale") if it has none."""
        if self.profiles is None:
            raise UsageError(f"{self.name}: has no time-series profiles {purpose}")
        return self.profiles

    def inputs(self) -> dict[str, object]:
        """The grid as a manifest names it: its source and every model file read (hashed)."""
        rule = {"dispatch": self.dispatch} if self.dispatch else {}
        return {"grid": self.source, **{f"file {path.name}": path for path in self.files}, **rule}


def load_grid(source: str | Path) -> Grid:
    """Load a network model and find its substations.

    Parameters
    ----------
    source : str or Path
        ``simbench:<code>``, ``pandapower:<name>``, a .json/.m/.mat/.raw/.dss file, or a name
        from the grid catalog (``siting grids`` lists them).

    Returns
    -------
    Grid
        The model, its substations and its profiles (SimBench, the catalog's TAMU cases and
        OpenDSS load shapes have them).

    Raises
    ------
    UsageError
        An unknown source, or a file that cannot be read.
    GridError
        A model no power flow can use (no buses, duplicate indices, missing numbers).
    """
    text = str(source)
    if text.lower().endswith(".dss"):
        return _opendss(Path(text))
    with _quiet():
        if text.startswith("simbench:"):
            name, description, net, profiles = _simbench(text.removeprefix("simbench:"))
        elif text.startswith("pandapower:"):
            name, description, net, profiles = _pandapower_builtin(text.removeprefix("pandapower:"))
        elif model_file(source):
            name, description, net, profiles = _model_file(Path(text))
        else:
            return _catalog_grid(text)
    files = (Path(text),) if Path(text).suffix.lower() in MODEL_SUFFIXES else ()
    return _finish(name, text, description, net, profiles, files)


def _opendss(path: Path) -> Grid:
    """An OpenDSS master file: solved by OpenDSS, converted to its balanced model (see sources.opendss)."""
    from siting.sources.opendss import PROFILE_YEAR, describe, read_opendss

    with _quiet():
        circuit = read_opendss(path, year=PROFILE_YEAR)
    return _finish(path.stem, str(path), describe(circuit), circuit.net, circuit.profiles, circuit.files)


def _finish(
    name: str,
    source: str,
    description: str,
    net: pandapowerNet,
    profiles: pd.DataFrame | None,
    files: tuple[Path, ...] = (),
) -> Grid:
    check_network(net, source)
    substations = find_substations(net, source)
    return Grid(name, source, description, net, substations, profiles, files)


# Element columns that must hold finite numbers wherever an element has them.
NUMERIC_COLUMNS = {
    "bus": ("vn_kv",),
    "load": ("p_mw", "q_mvar", "scaling"),
    "sgen": ("p_mw", "q_mvar", "scaling"),
    "gen": ("p_mw", "vm_pu"),
    "ext_grid": ("vm_pu", "va_degree"),
    "line": ("length_km", "r_ohm_per_km", "x_ohm_per_km", "max_i_ka", "parallel"),
    "trafo": ("sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent", "vkr_percent"),
}
POSITIVE_COLUMNS = {"bus": ("vn_kv",), "line": ("length_km",), "trafo": ("sn_mva", "vn_hv_kv", "vn_lv_kv")}


def check_network(net: pandapowerNet, source: str) -> None:
    """Refuse models that no power flow can use, naming the table, element and what to fix."""
    if len(net.bus) == 0:
        raise GridError(f"{source}: the model has no buses")
    for table in (
        "bus",
        "line",
        "trafo",
        "trafo3w",
        "load",
        "sgen",
        "gen",
        "ext_grid",
        "switch",
        "impedance",
    ):
        if table in net and net[table].index.has_duplicates:
            twice = net[table].index[net[table].index.duplicated()][0]
            raise GridError(
                f"{source}: {table} index {twice} occurs more than once; give each element its own"
            )
    for table, columns in NUMERIC_COLUMNS.items():
        frame = net.get(table)
        if frame is None or not len(frame):
            continue
        for column in columns:
            if column not in frame:
                continue
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
            if column in POSITIVE_COLUMNS.get(table, ()):
                bad |= values <= 0
            if bad.any():
                where = frame.index[bad.to_numpy()][0]
                rule = "a positive number" if column in POSITIVE_COLUMNS.get(table, ()) else "a finite number"
                raise GridError(
                    f"{source}: {table} {where}: {column} is {_shown(frame.at[where, column])}, not {rule} "
                    f"({int(bad.sum())} {table} row(s) so)"
                )
            if not pd.api.types.is_float_dtype(frame[column]) and not pd.api.types.is_integer_dtype(
                frame[column]
            ):
                frame[column] = values.astype(float)
    for table, ends in (
        ("line", ("from_bus", "to_bus")),
        ("trafo", ("hv_bus", "lv_bus")),
        ("load", ("bus",)),
    ):
        for end in ends:
            if table in net and len(net[table]) and not net[table][end].isin(net.bus.index).all():
                row = net[table].index[~net[table][end].isin(net.bus.index)][0]
                raise GridError(
                    f"{source}: {table} {row}: {end} {net[table].at[row, end]} is not a bus of the model"
                )
    has_slack = net.ext_grid["in_service"].astype(bool).any() or (
        "slack" in net.gen and (net.gen["slack"].astype(bool) & net.gen["in_service"]).any()
    )
    if not has_slack:
        raise GridError(f"{source}: the model has no in-service external grid or slack generator")


def _catalog_grid(name: str) -> Grid:
    catalog = read_catalog()
    entry = catalog.get(name)
    if entry is None:
        known = ", ".join(sorted(catalog.entries))
        raise UsageError(
            f"unknown grid '{name}': use simbench:<code>, pandapower:<name>, a .json/.m/.mat/.raw/.dss "
            f"file, or a catalog name ({known}); 'siting grids' lists them"
        )
    if entry.source is not None:
        source = entry.source
        if not source.startswith(("simbench:", "pandapower:")):
            source = str(GRIDS_DIR / source)
        grid = load_grid(source)
        return Grid(
            name, grid.source, entry.description, grid.net, grid.substations, grid.profiles, grid.files
        )
    from siting.sources.activsg import load_activsg

    with _quiet():
        net, profiles = load_activsg(entry)
    files = tuple(path for path in (entry.case, entry.bus_coords, entry.area_loads) if path is not None)
    return _finish(name, name, entry.description, net, profiles, files)


def _simbench(code: str) -> tuple[str, str, pandapowerNet, pd.DataFrame]:
    import simbench

    if code not in simbench.collect_all_simbench_codes():
        raise UsageError(
            f"simbench:{code}: not a SimBench code; codes look like 1-HV-mixed--0-sw "
            "(simbench.collect_all_simbench_codes() lists all)"
        )
    net = simbench.get_simbench_net(code)
    return code, f"SimBench {code}", net, simbench_profiles(net)


# The (element, variable) pairs simbench.get_absolute_values computes from a net's profiles.
SIMBENCH_ABSOLUTE = (
    ("load", "p_mw"),
    ("load", "q_mvar"),
    ("sgen", "p_mw"),
    ("gen", "p_mw"),
    ("storage", "p_mw"),
)


# elements whose absolute profiles are computed at once: simbench holds three arrays of them
# (steps × elements) while it does, 72 MB each on a year of 15-minute steps
SIMBENCH_ELEMENTS_AT_ONCE = 256


def simbench_profiles(net: pandapowerNet, absolute: dict | None = None) -> pd.DataFrame:
    """A SimBench net's one-year profiles as absolute values per element (MW, Mvar).

    ``absolute``: simbench's ``get_absolute_values`` of the net, if already at hand (it is
    emptied: each frame is let go once copied); by default simbench computes them a few hundred
    elements at a time, straight into the year's array.
    """
    import simbench

    if absolute is None:
        sizes = {key: len(net[key[0]]) for key in SIMBENCH_ABSOLUTE}
        generators: list[pd.DataFrame] = []

        def relative(element: str) -> pd.DataFrame:
            if element in ("load", "storage"):
                return net.profiles[element]
            if not generators:  # simbench's own join: a power plant's or a renewable's profile
                generators.append(
                    simbench.merge_dataframes([net.profiles[n] for n in ("powerplants", "renewables")])
                )
            return generators[0]

        def parts(key: tuple[str, str]) -> Iterator[pd.DataFrame]:
            element, variable = key
            table, shapes = net[element], relative(element)
            labels = np.sort(table.index.to_numpy(), kind="stable")
            for start in range(0, len(labels), SIMBENCH_ELEMENTS_AT_ONCE):
                part = table.loc[labels[start : start + SIMBENCH_ELEMENTS_AT_ONCE]]
                # the function reads only the element's table from the net it is given
                yield simbench.get_absolute_profiles_from_relative_profiles(
                    {element: part}, element, variable, relative_profiles=shapes
                )
    else:
        sizes = {key: frame.shape[1] for key, frame in absolute.items()}

        def parts(key: tuple[str, str]) -> Iterator[pd.DataFrame]:
            yield absolute.pop(key)

    time = pd.to_datetime(net.profiles["load"]["time"], format="%d.%m.%Y %H:%M")
    time = pd.DatetimeIndex(time, name="time")
    # One array, filled a part at a time and each part freed once copied: pandas' concat and
    # column sort of the year held five copies of it at once (8.5 GB on the default study's
    # 35,136 steps × 5,145 columns, whose profiles take 1.45 GB).
    # Laid out columns × steps, the layout of the single block a DataFrame keeps its floats in.
    keys = [key for key in sorted(sizes) if sizes[key]]
    values = np.empty((sum(sizes[key] for key in keys), len(time)))
    elements, variables, indices = [], [], []
    start = 0
    for key in keys:
        for frame in parts(key):
            order = np.argsort(frame.columns.to_numpy(), kind="stable")
            stop = start + len(order)
            np.take(frame.to_numpy(float).T, order, axis=0, out=values[start:stop], mode="clip")
            elements += [key[0]] * len(order)
            variables += [key[1]] * len(order)
            indices.append(frame.columns.to_numpy()[order])
            start = stop
            del frame
    columns = pd.MultiIndex.from_arrays(
        [elements, variables, np.concatenate(indices) if indices else np.zeros(0, np.int64)],
        names=["element", "variable", "index"],
    )
    return pd.DataFrame(values.T, index=time, columns=columns, copy=False)


def _pandapower_builtin(name: str) -> tuple[str, str, pandapowerNet, None]:
    import pandapower.networks as networks

    factory = getattr(networks, name, None)
    if not callable(factory) or name.startswith("_"):
        raise UsageError(
            f"pandapower:{name}: not a pandapower network (see pandapower.networks, "
            "e.g. mv_oberrhein, case33bw)"
        )
    try:
        net = factory()
    except TypeError as err:
        raise UsageError(f"pandapower:{name}: not a network factory ({err})") from err
    if not isinstance(net, pandapowerNet):
        raise UsageError(f"pandapower:{name}: did not return a pandapower network")
    return name, f"pandapower built-in network {name}", net, None


def _model_file(path: Path) -> tuple[str, str, pandapowerNet, None]:
    if not path.exists():
        raise UsageError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        net = _read_pandapower_json(path)
        kind = "pandapower JSON"
    elif suffix in (".m", ".mat"):
        net = read_matpower(path)
        kind = "MATPOWER case"
    elif suffix == ".raw":
        from siting.sources.psse import read_psse

        net = read_psse(path)
        kind = "PSS/E RAW case"
    else:
        raise UsageError(f"{path}: unknown model file type (use .json, .m, .mat or .raw)")
    return path.stem, f"{kind} {path.name}", net, None


# A pandapower JSON names the classes it is made of; pandapower imports each named module
# before any check, so a file naming any other module is refused before pandapower sees it.
JSON_MODULES = ("pandapower", "pandas", "numpy", "geopandas", "shapely", "networkx")


def _read_pandapower_json(path: Path) -> pandapowerNet:
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise GridError(f"{path}: not a readable pandapower JSON network ({_first_line(err)})") from err
    foreign = _foreign_module(document)
    if foreign is not None:
        raise GridError(
            f"{path}: names the Python module {foreign!r}; a pandapower network names only "
            f"{', '.join(JSON_MODULES)} classes, so the file is refused unread"
        )
    try:
        net = pp.from_json_string(text, convert=True)  # old formats brought up to date, as from_json does
    except Exception as err:  # pandapower raises many kinds for a bad file
        raise GridError(f"{path}: not a readable pandapower JSON network ({_first_line(err)})") from err
    if not isinstance(net, pandapowerNet):
        raise GridError(f"{path}: the JSON does not hold a pandapower network")
    return net


def _shown(value: object) -> str:
    """A model value as a person reads it: numbers plainly, text in quotes."""
    return repr(value.item() if hasattr(value, "item") else value)


def _foreign_module(document: object) -> str | None:
    """The first ``_module`` value in a JSON document that is not one of JSON_MODULES."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module = item.get("_module")
            if module is not None and (
                not isinstance(module, str) or module.split(".")[0] not in JSON_MODULES
            ):
                return str(module)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and '"_module"' in item:
            try:  # pandapower nests tables as JSON text inside the JSON
                stack.append(json.loads(item))
            except ValueError:
                continue
    return None


def bus_index_of_number(net: pandapowerNet) -> pd.Series:
    """The model's bus index for each bus number of its case (MATPOWER ``BUS_I``, PSS/E ``I``).

    pandapower reads a MATPOWER case's bus *i* as index *i* − 1 (``read_matpower`` keeps the
    number in ``net.bus.bus_number``); other sources number buses by their index.
    """
    numbers = net.bus["bus_number"] if "bus_number" in net.bus else net.bus.index.to_series()
    return pd.Series(net.bus.index, index=numbers.astype(int).to_numpy())


def read_matpower(path: Path, f_hz: float = 60.0) -> pandapowerNet:
    """A MATPOWER case (.m or .mat) as a pandapower net, transformers kept as transformers."""
    from pandapower.converter.matpower import from_mpc

    try:
        net = from_mpc(str(path), f_hz=f_hz)
    except Exception as err:  # parser and converter raise many kinds for a bad case
        raise GridError(f"{path}: not a readable MATPOWER case ({_first_line(err)})") from err
    if len(net.bus) == 0 or not np.isfinite(net.bus["vn_kv"]).all():
        raise GridError(f"{path}: the MATPOWER bus matrix is empty or has bad base kV values")
    net.bus["bus_number"] = net.bus.index + 1  # what the case and its users call the bus
    area = _bus_areas(path)
    if area is not None and len(area) == len(net.bus):  # pandapower keeps ZONE, not BUS_AREA
        net.bus["area"] = area.astype(int)
    _impedances_to_transformers(net)
    _name_branches(net)
    return net


def _bus_areas(path: Path) -> np.ndarray | None:
    """BUS_AREA of each bus row of a MATPOWER case, so that profiles keyed 'area <n>' find them."""
    try:
        if path.suffix.lower() == ".m":
            from matpowercaseframes import CaseFrames

            return CaseFrames(str(path)).bus["BUS_AREA"].to_numpy()
        from scipy.io import loadmat

        return np.asarray(loadmat(str(path), squeeze_me=True, struct_as_record=False)["mpc"].bus)[:, 6]
    except Exception:  # a case pandapower reads but this does not simply has no areas
        return None


def _name_branches(net: pandapowerNet) -> None:
    """MATPOWER branches have no names: call each by its end buses, so results can say where."""
    for table, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
        frame = net[table]
        unnamed = frame["name"].isna() | (frame["name"].astype(str) == "")
        bus_name = net.bus["name"].astype(str)
        labels = (
            bus_name.loc[frame[ends[0]]].to_numpy()
            + " – "
            + bus_name.loc[frame[ends[1]]].to_numpy()
            + " #"
            + frame.index.astype(str).to_numpy()
        )
        frame.loc[unnamed, "name"] = labels[unnamed.to_numpy()]


def _impedances_to_transformers(net: pandapowerNet) -> None:
    """Turn from_mpc's impedance elements between voltage levels back into transformers.

    pandapower's MATPOWER converter keeps a branch with tap ratio 0 or 1 that joins two
    voltage levels as an ``impedance``, which has no thermal loading; it is a transformer
    with nominal ratio, and as such it gets a rating (MATPOWER RATE_A) and a loading.
    """
    imp = net.impedance
    vn = net.bus["vn_kv"]
    from_kv = vn.loc[imp["from_bus"]].to_numpy()
    to_kv = vn.loc[imp["to_bus"]].to_numpy()
    symmetric = np.isclose(imp["rft_pu"], imp["rtf_pu"]) & np.isclose(imp["xft_pu"], imp["xtf_pu"])
    shunts = [c for c in ("gf_pu", "bf_pu", "gt_pu", "bt_pu") if c in imp]
    no_shunt = (imp[shunts].fillna(0.0).abs() < 1e-12).all(axis=1) if shunts else True
    rated = imp["sn_mva"] > 0
    convert = (from_kv != to_kv) & symmetric & no_shunt & rated
    if not convert.any():
        return
    rows = imp[convert]
    hv_first = from_kv[convert] > to_kv[convert]
    hv_bus = np.where(hv_first, rows["from_bus"], rows["to_bus"])
    lv_bus = np.where(hv_first, rows["to_bus"], rows["from_bus"])
    z_pu = np.hypot(rows["rft_pu"], rows["xft_pu"])
    pp.create_transformers_from_parameters(
        net,
        hv_buses=hv_bus,
        lv_buses=lv_bus,
        sn_mva=rows["sn_mva"].to_numpy(),
        vn_hv_kv=vn.loc[hv_bus].to_numpy(),
        vn_lv_kv=vn.loc[lv_bus].to_numpy(),
        vk_percent=(np.sign(rows["xft_pu"]) * z_pu * 100).to_numpy(),
        vkr_percent=(rows["rft_pu"] * 100).to_numpy(),
        pfe_kw=0.0,
        i0_percent=0.0,
        max_loading_percent=100.0,
        in_service=rows["in_service"].to_numpy(),
        name=rows["name"].to_numpy(),
    )
    net.impedance = imp[~convert]


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


@contextlib.contextmanager
def _quiet():
    """Silence library chatter (warnings, prints, log lines) while a model loads."""
    logger = logging.getLogger("pandapower")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # our own one-line message says what is wrong
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
