"""Load a network model from any source the toolkit knows into a ``Grid``."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandapower as pp
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import GridError, UsageError
from siting.sources.catalog import GRIDS_DIR, read_catalog
from siting.sources.substations import find_substations

MODEL_SUFFIXES = (".json", ".m", ".mat", ".dss")


@dataclass(frozen=True)
class Grid:
    """A network model with its substations and, when the source has them, time-series profiles.

    ``profiles`` has a DatetimeIndex and columns ``(element, variable, index)``, e.g.
    ``("load", "p_mw", 12)``: the absolute value of that pandapower table column for that
    element at each time step (MW, Mvar).
    """

    name: str
    source: str
    description: str
    net: pandapowerNet
    substations: gpd.GeoDataFrame
    profiles: pd.DataFrame | None = None
    files: tuple[Path, ...] = ()  # model files read (for manifests); none for package data


def load_grid(source: str | Path) -> Grid:
    """Load ``simbench:<code>``, ``pandapower:<name>``, a .json/.m/.mat/.dss file, or a catalog name."""
    text = str(source)
    if text.lower().endswith(".dss"):
        return _opendss(Path(text))
    with _quiet():
        if text.startswith("simbench:"):
            name, description, net, profiles = _simbench(text.removeprefix("simbench:"))
        elif text.startswith("pandapower:"):
            name, description, net, profiles = _pandapower_builtin(text.removeprefix("pandapower:"))
        elif isinstance(source, Path) or text.lower().endswith(MODEL_SUFFIXES) or "/" in text:
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


def check_network(net: pandapowerNet, source: str) -> None:
    """Refuse models that no power flow can use, naming what is missing."""
    if len(net.bus) == 0:
        raise GridError(f"{source}: the model has no buses")
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
            f"unknown grid '{name}': use simbench:<code>, pandapower:<name>, a .json/.m/.mat/.dss "
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


def simbench_profiles(net: pandapowerNet) -> pd.DataFrame:
    """A SimBench net's one-year profiles as absolute values per element (MW, Mvar)."""
    import simbench

    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    time = pd.to_datetime(net.profiles["load"]["time"], format="%d.%m.%Y %H:%M")
    frames = {}
    for (element, variable), frame in sorted(absolute.items()):
        if frame.shape[1]:
            frames[(element, variable)] = frame.set_axis(pd.DatetimeIndex(time), axis=0)
    profiles = pd.concat(frames, axis=1, names=["element", "variable", "index"]).sort_index(axis=1)
    profiles.index.name = "time"
    return profiles


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
    else:
        raise UsageError(f"{path}: unknown model file type (use .json, .m or .mat)")
    return path.stem, f"{kind} {path.name}", net, None


def _read_pandapower_json(path: Path) -> pandapowerNet:
    try:
        net = pp.from_json(str(path))
    except Exception as err:  # pandapower raises many kinds for a bad file
        raise GridError(f"{path}: not a readable pandapower JSON network ({_first_line(err)})") from err
    if not isinstance(net, pandapowerNet):
        raise GridError(f"{path}: the JSON does not hold a pandapower network")
    return net


def read_matpower(path: Path, f_hz: float = 60.0) -> pandapowerNet:
    """A MATPOWER case (.m or .mat) as a pandapower net, transformers kept as transformers."""
    from pandapower.converter.matpower import from_mpc

    try:
        net = from_mpc(str(path), f_hz=f_hz)
    except Exception as err:  # parser and converter raise many kinds for a bad case
        raise GridError(f"{path}: not a readable MATPOWER case ({_first_line(err)})") from err
    if len(net.bus) == 0 or not np.isfinite(net.bus["vn_kv"]).all():
        raise GridError(f"{path}: the MATPOWER bus matrix is empty or has bad base kV values")
    _impedances_to_transformers(net)
    _name_branches(net)
    return net


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
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
