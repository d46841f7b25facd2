"""PSS/E RAW cases (v33–v35) as pandapower nets, read by pypowsybl and converted element by element.

pypowsybl (PowSyBl's PSS/E importer) parses the file into its IIDM network; this module turns
IIDM's tables into pandapower elements itself, because pandapower's ``from_pypowsybl`` (3.5.6)
is both slow and wrong on ACTIVSg2000 (0.790 pu minimum, 1,804 MW losses against 0.972 pu and
1,629 MW for the same grid as a MATPOWER case). The conventions that matter:

- **Buses**: one pandapower bus per PSS/E bus (IIDM bus-breaker bus ``B<number>``), indexed by
  the PSS/E bus number; ``vn_kv`` is the voltage level's nominal voltage (BASKV); ``area``,
  ``zone`` and ``owner`` come from the RAW bus records.
- **Lines**: IIDM gives ohms and siemens per end; a pandapower line of 1 km carries the series
  impedance and the mean end susceptance, and any difference between the two ends (PSS/E line
  shunts) becomes a bus shunt.
- **Two-winding transformers**: IIDM puts an ideal ratio ρ at side 1 and the series impedance
  (ohms at side 2) behind it, so in per unit the off-nominal ratio is τ = ρ·V₁ₙ/V₂ₙ. pandapower
  puts the ideal ratio on the high-voltage side and the impedance on the low-voltage side; the
  same circuit results with tap ratio 1/τ on side 1 (``tap_side`` is whichever side side 1
  is) and ``vk_percent`` = |Z|·S/V₂ₙ², because pandapower refers a low-side tap's impedance
  through the tap. The magnetising admittance, at the internal node behind the ideal ratio,
  is a bus shunt of τ²·Y at side 1. Ratings are the permanent current limit as MVA at nominal
  voltage (PSS/E's RATEA); the impedance is expressed on that rating.
- **Three-winding transformers**: IIDM's star model, one leg per winding from its bus to a star
  bus at the rated star voltage (marked ``net.bus.star_point``, so it is never a substation);
  each leg is a two-winding transformer as above.
- **Shunts** (fixed and switched) at their present section count; switched shunts do not
  switch in the power flow (PSS/E's "lock switched shunts").
- **Generators**: the swing generator (IIDM slack terminal) is the external grid at its
  set-point and the RAW angle; voltage-regulating generators are ``gen`` at the set-point in
  per unit of the regulated bus, held at their own bus (pandapower has no remote regulation; how
  many regulate a remote bus is logged); the others are ``sgen`` at their P and Q.
- **Zero-impedance branches** (PSS/E jumpers below THRSHZ, system switching devices) are closed
  bus-bus switches, which pandapower fuses.

- **Substation blocks** (v35): each block becomes a model substation (its buses carry its name,
  placed at its LATI/LONG), read by ``siting.sources.psse_substations``; the power flow is the
  bus-branch case of the bus records, and a block whose switches split or join buses is refused.

What the toolkit cannot solve is refused by name: DC lines, FACTS devices and static var
compensators, GNE devices and induction machines.
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import GridError
from siting.sources.geo import set_bus_lonlat
from siting.sources.psse_substations import RawSubstation, read_substation_blocks

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (32, 33, 35)  # what pypowsybl 1.16 reads
MISSING_RATING_KA = 99999.0  # no rating in the case: as pandapower's MATPOWER converter does
MISSING_RATING_MVA = 99999.0
SQRT3 = np.sqrt(3.0)

# RAW sections in file order (after the case identification and, in v35, system-wide data)
_AFTER_TRANSFORMERS = [
    "area", "two-terminal DC", "VSC DC", "impedance correction", "multi-terminal DC",
    "multi-section line", "zone", "inter-area transfer", "owner", "FACTS device", "switched shunt",
]  # fmt: skip
_SECTIONS = {
    32: ["bus", "load", "fixed shunt", "generator", "branch", "transformer", *_AFTER_TRANSFORMERS],
    33: ["bus", "load", "fixed shunt", "generator", "branch", "transformer", *_AFTER_TRANSFORMERS],
    35: ["bus", "load", "fixed shunt", "generator", "branch", "system switching device", "transformer",
         *_AFTER_TRANSFORMERS],
}  # fmt: skip
_BINIT_FIELD = {32: 9, 33: 9, 35: 11}  # position of BINIT in a switched shunt record
# sections of devices the balanced AC model has no element for, refused by line before import
_NOT_MODELLED = ("two-terminal DC", "VSC DC", "multi-terminal DC", "FACTS device")
_REFUSED = {
    "get_hvdc_lines": "DC line",
    "get_static_var_compensators": "static var compensator / FACTS device",
    "get_dangling_lines": "dangling line",
}


@dataclass(frozen=True)
class RawBus:
    """The fields of a RAW bus record the toolkit keeps."""

    number: int
    name: str
    base_kv: float
    kind: int  # IDE: 1 load, 2 generator, 3 swing, 4 isolated
    area: int
    zone: int
    owner: int


def read_psse(path: Path) -> pandapowerNet:
    """A PSS/E RAW case (v33–v35) as a pandapower net; see the module notes for conventions.

    Raises
    ------
    GridError
        For an unsupported version, a truncated or malformed file (naming the line), duplicate
        bus numbers, a branch or device at a bus that does not exist, and elements the toolkit
        cannot model (DC lines, FACTS, GNE devices, induction machines), and a substation block
        whose switches split or join buses.
    """
    buses = scan_raw(path)
    import pypowsybl

    with tempfile.TemporaryDirectory(prefix="siting-raw-") as folder:
        readable = _bus_branch_copy(path, buses.attrs["substation_lines"], Path(folder))
        try:
            network = pypowsybl.network.load(str(readable))
        except Exception as err:  # the Java importer raises one generic error type
            raise GridError(f"{path}: pypowsybl cannot read this PSS/E case ({_first_line(err)})") from err
    net = iidm_to_pandapower(network, buses, str(path), f_hz=buses.attrs["f_hz"])
    _place_substations(net, buses.attrs["substations"])
    return net


def _bus_branch_copy(path: Path, block: tuple[int, int] | None, folder: Path) -> Path:
    """The case without its substation records (lines ``block``, 1-based), or ``path`` itself.

    pypowsybl 1.16.1 turns substation blocks into node-breaker voltage levels, and refuses the
    file ("Not supported in a bus breaker topology") when told to ignore them; siting reads the
    blocks itself (``siting.sources.psse_substations``) and hands the importer the bus-branch case.
    """
    if block is None:
        return path
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    copy = folder / path.name
    copy.write_text("".join(lines[: block[0] - 1] + lines[block[1] :]))
    return copy


def _place_substations(net: pandapowerNet, substations: tuple[RawSubstation, ...]) -> None:
    """Name the buses of each v35 substation block after it and place them at its LATI/LONG."""
    if not substations:
        return
    net.bus["substation"] = None
    lon = pd.Series(np.nan, index=net.bus.index)
    lat = pd.Series(np.nan, index=net.bus.index)
    for station in substations:
        buses = list(station.buses)
        net.bus.loc[buses, "substation"] = station.name
        lon[buses], lat[buses] = station.lon, station.lat
    if lon.notna().any():
        set_bus_lonlat(net, lon.to_numpy(), lat.to_numpy())
        net.bus.loc[lon.isna().to_numpy(), "geo"] = None  # GeoJSON cannot hold NaN


def scan_raw(path: Path) -> pd.DataFrame:
    """Check the RAW file's structure and read its bus records (number, name, area, zone, owner).

    The importer's own messages name neither the line nor the record, so the checks a user
    needs to fix a file are made here first: version, truncation, duplicate buses, and branch,
    transformer, load, shunt and generator records at buses that do not exist.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as err:
        raise GridError(f"{path}: cannot read the file ({err})") from err
    # v35 files may open with "@!" column-name comments before the case identification
    head = next((i for i, line in enumerate(lines) if not line.lstrip().startswith("@!")), len(lines))
    version = _version(path, lines[head:], head)
    start = head + 3
    if version >= 35:  # system-wide data, ended by its own "0 /" line
        start = _section_end(path, lines, start, "system-wide") + 1
    sections = _SECTIONS[version]
    records: dict[str, list[tuple[int, list[str]]]] = {}
    row = start
    for section in sections:
        end = _section_end(path, lines, row, section)
        records[section] = [
            (number + 1, _fields(lines[number]))
            for number in range(row, end)
            if lines[number].strip() and not lines[number].lstrip().startswith("@!")
        ]
        row = end + 1
    for section in _NOT_MODELLED:
        if records[section]:
            raise GridError(
                f"{path}: line {records[section][0][0]}: {section} data; siting cannot model DC lines or "
                "FACTS devices — remove the section's records or replace each by its P/Q injections"
            )
    buses = _bus_records(path, records["bus"])
    known = set(buses.index)
    substations: tuple[RawSubstation, ...] = ()
    block = None
    if version >= 35 and _more_sections(lines, row):
        substations, block, row = _v35_tail(path, lines, row, known)
    if not any(line.strip().upper().startswith("Q") for line in lines[row:]):
        _check_tail(path, lines, row)
    for section in ("load", "fixed shunt", "generator"):
        for line, fields in records[section]:
            _check_bus(path, line, section, fields[0], known)
    for line, fields in records["branch"] + records.get("system switching device", []):
        for value in fields[:2]:
            _check_bus(path, line, "branch", value, known)
    _check_transformers(path, records["transformer"], known)
    buses.attrs["f_hz"] = _frequency(lines[head])
    buses.attrs["switched_shunt_mvar"] = _switched_shunts(path, records["switched shunt"], version)
    buses.attrs["substations"] = substations
    buses.attrs["substation_lines"] = block
    return buses


def _more_sections(lines: list[str], row: int) -> bool:
    """Whether records follow ``row`` before the closing 'Q' (v35 files may stop after the shunts)."""
    for line in lines[row:]:
        text = line.strip()
        if text.upper() == "Q":
            return False
        if text and not text.startswith("@!"):
            return True
    return False


def _v35_tail(
    path: Path, lines: list[str], row: int, known: set[int]
) -> tuple[tuple[RawSubstation, ...], tuple[int, int] | None, int]:
    """v35's GNE and induction machine sections (refused when not empty), then its substations.

    Returns the substations, the first and last line (1-based) of their records when there are
    any, and the position after the substation section.
    """
    for section in ("GNE device", "induction machine"):
        end = _section_end(path, lines, row, section)
        used = [number + 1 for number in range(row, end) if lines[number].strip()
                and not lines[number].lstrip().startswith("@!")]  # fmt: skip
        if used:
            raise GridError(
                f"{path}: line {used[0]}: {section} data; siting cannot model {section}s — remove the "
                "section's records or replace each by its P/Q injections"
            )
        row = end + 1
    records = [
        (number + 1, _fields(lines[number]))
        for number in range(row, len(lines))
        if lines[number].strip() and not lines[number].lstrip().startswith("@!")
        and lines[number].strip().upper() != "Q"
    ]  # fmt: skip
    if not records:
        return (), None, row
    substations, last = read_substation_blocks(path, records, known)
    block = (records[0][0], last - 1) if substations else None
    return tuple(substations), block, last


def _switched_shunts(path: Path, records: list[tuple[int, list[str]]], version: int) -> dict[str, float]:
    """BINIT (Mvar at 1 pu) of each switched shunt, by the importer's id ``B<bus>-SwSH<id>``.

    The importer rounds a switched shunt to its nearest block combination; the solved case
    holds BINIT, which may lie between blocks (continuous mode), so the RAW value is used.
    """
    field = _BINIT_FIELD[version]
    count: dict[int, int] = {}
    binit = {}
    for line, fields in records:
        bus = int(fields[0])
        count[bus] = count.get(bus, 0) + 1
        ident = fields[1] if version >= 35 else str(count[bus])
        try:
            binit[f"B{bus}-SwSH{ident}"] = float(fields[field])
        except (IndexError, ValueError):
            raise GridError(f"{path}: line {line}: switched shunt record has no BINIT value") from None
    return binit


def _version(path: Path, lines: list[str], head: int = 0) -> int:
    """REV of the case identification record, ``lines[0]`` (line ``head`` + 1 of the file)."""
    if len(lines) < 3:
        raise GridError(f"{path}: not a PSS/E RAW case (fewer than three lines)")
    fields = _fields(lines[0].split("/")[0])
    try:
        version = int(float(fields[2]))
    except (IndexError, ValueError):
        raise GridError(
            f"{path}: line {head + 1} is not a PSS/E case identification record (IC, SBASE, REV, …)"
        ) from None
    if version not in SUPPORTED_VERSIONS:
        raise GridError(
            f"{path}: PSS/E version {version} is not supported (read: "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); save the case from PSS/E as v33 or v35"
        )
    return version


def _frequency(record: str) -> float:
    """BASFRQ, the sixth field of the case identification record (60 Hz when absent)."""
    fields = _fields(record.split("/")[0])
    try:
        return float(fields[5]) or 60.0
    except (IndexError, ValueError):
        return 60.0


def _section_end(path: Path, lines: list[str], start: int, section: str) -> int:
    """Position of the "0 / END OF …" line closing a section that starts at ``start``."""
    for number in range(start, len(lines)):
        text = lines[number].strip()
        if text == "0" or re.match(r"^0\s*/", text) or text.upper() == "Q":
            if text.upper() == "Q":
                break
            return number
    last = len(lines)
    raise GridError(
        f"{path}: line {last}: the file ends inside the {section} data (truncated?); "
        "a complete RAW case closes every section with a '0 /' line and ends with 'Q'"
    )


def _check_tail(path: Path, lines: list[str], row: int) -> None:
    """After the sections read here, the file must still close with 'Q' (or simply end cleanly)."""
    tail = [line.strip() for line in lines[row:] if line.strip()]
    if tail and not re.match(r"^0(\s*/.*)?$", tail[-1]):
        raise GridError(
            f"{path}: line {len(lines)}: the file ends inside a record (truncated?); "
            "a complete RAW case ends with a '0 /' line and 'Q'"
        )


def _fields(line: str) -> list[str]:
    body = line.split("/")[0] if "'" not in line.split("/")[0] else line
    row = next(csv.reader([body], quotechar="'", skipinitialspace=True))
    return [field.strip() for field in row]


def _bus_records(path: Path, records: list[tuple[int, list[str]]]) -> pd.DataFrame:
    rows = []
    seen: dict[int, int] = {}
    for line, fields in records:
        if len(fields) < 7:
            raise GridError(
                f"{path}: line {line}: bus record has {len(fields)} fields, needs at least 7 "
                "(I, NAME, BASKV, IDE, AREA, ZONE, OWNER) — truncated?"
            )
        try:
            bus = RawBus(
                int(fields[0]), fields[1], float(fields[2]), int(fields[3]),
                int(fields[4]), int(fields[5]), int(fields[6]),
            )  # fmt: skip
        except ValueError:
            raise GridError(f"{path}: line {line}: bus record has a non-numeric field") from None
        if bus.number in seen:
            raise GridError(
                f"{path}: line {line}: bus number {bus.number} is already used at line "
                f"{seen[bus.number]}; bus numbers must be unique"
            )
        seen[bus.number] = line
        rows.append(bus.__dict__)
    return pd.DataFrame(rows, columns=list(RawBus.__dataclass_fields__)).set_index("number")


def _check_bus(path: Path, line: int, section: str, value: str, known: set[int]) -> None:
    try:
        number = abs(int(value))
    except ValueError:
        raise GridError(f"{path}: line {line}: {section} record does not start with a bus number") from None
    if number != 0 and number not in known:
        raise GridError(
            f"{path}: line {line}: {section} record names bus {number}, which is not in the bus data"
        )


def _check_transformers(path: Path, records: list[tuple[int, list[str]]], known: set[int]) -> None:
    """Transformer records are four lines (five with a third winding)."""
    position = 0
    while position < len(records):
        line, fields = records[position]
        if len(fields) < 3:
            raise GridError(
                f"{path}: line {line}: transformer record has {len(fields)} fields, needs I, J, K"
            )
        for value in fields[:3]:
            _check_bus(path, line, "transformer", value, known)
        size = 5 if fields[2] not in ("0", "") else 4
        if position + size > len(records):
            raise GridError(
                f"{path}: line {line}: transformer record ends after {len(records) - position} of its "
                f"{size} lines (truncated?)"
            )
        position += size


def iidm_to_pandapower(network, buses: pd.DataFrame, source: str, f_hz: float = 60.0) -> pandapowerNet:
    """Pypowsybl's network as a pandapower net, element by element (module notes).

    ``buses`` are the RAW bus records (``scan_raw``), which carry the area, zone and owner that
    IIDM does not keep per bus; ``f_hz`` the case's base frequency (IIDM keeps none).
    """
    _refuse_unsupported(network, source)
    net = pp.create_empty_network(name=Path(source).stem, f_hz=f_hz, sn_mva=100.0)
    levels = network.get_voltage_levels(all_attributes=True)
    view = network.get_bus_breaker_view_buses(all_attributes=True)
    number = _bus_numbers(view, source)
    raw = buses.reindex(number.to_numpy())
    missing = raw["name"].isna().to_numpy()
    if missing.any():
        raise GridError(f"{source}: bus {view.index[missing][0]} of the importer is not in the RAW bus data")
    vn_kv = levels.loc[view["voltage_level_id"], "nominal_v"].to_numpy(float)
    pp.create_buses(
        net,
        len(view),
        vn_kv=vn_kv,
        name=raw["name"].to_numpy(),
        index=number.to_numpy(),
        zone=raw["zone"].to_numpy(),
        in_service=raw["kind"].to_numpy() != 4,
        min_vm_pu=_per_unit(levels.loc[view["voltage_level_id"], "low_voltage_limit"], vn_kv),
        max_vm_pu=_per_unit(levels.loc[view["voltage_level_id"], "high_voltage_limit"], vn_kv),
    )
    net.bus["area"] = raw["area"].to_numpy()
    net.bus["owner"] = raw["owner"].to_numpy()
    bus_of = pd.Series(number.to_numpy(), index=view.index)
    vm_angle = pd.Series(view["v_angle"].to_numpy(float), index=number.to_numpy())
    raw.index = number.to_numpy()
    _switches(net, network, bus_of)
    _lines(net, network, bus_of, levels)
    _two_winding(net, network, bus_of, levels)
    _three_winding(net, network, bus_of, levels)
    _shunts(net, network, bus_of, levels, buses.attrs.get("switched_shunt_mvar", {}))
    _loads(net, network, bus_of)
    _generators(net, network, bus_of, levels, vm_angle, raw["kind"], source)
    for table in ("line", "trafo", "load", "gen", "sgen", "ext_grid", "shunt", "switch"):
        # the importer's ids keep the padding of PSS/E's quoted circuit and device ids
        net[table]["name"] = net[table]["name"].astype(str).str.strip()
    return net


def _refuse_unsupported(network, source: str) -> None:
    for getter, what in _REFUSED.items():
        frame = getattr(network, getter)()
        if len(frame):
            names = ", ".join(map(str, frame.index[:3]))
            raise GridError(
                f"{source}: the case has {len(frame)} {what}(s) ({names}); siting cannot model them — "
                "remove them or replace each by its P/Q injections"
            )
    levels = network.get_voltage_levels(all_attributes=True)
    node_breaker = levels.index[levels["topology_kind"] != "BUS_BREAKER"]
    if len(node_breaker):
        raise GridError(
            f"{source}: {len(node_breaker)} voltage level(s) are in node-breaker topology "
            f"({', '.join(node_breaker[:3])}); read the file with read_psse, which takes substation "
            "blocks itself"
        )


def _bus_numbers(view: pd.DataFrame, source: str) -> pd.Series:
    numbers = view.index.to_series().str.extract(r"^B(\d+)$")[0]
    if numbers.isna().any():
        raise GridError(
            f"{source}: the importer's bus {numbers.index[numbers.isna()][0]} has no PSS/E number"
        )
    return numbers.astype(int)


def _per_unit(kv: pd.Series, vn_kv: np.ndarray) -> np.ndarray:
    return kv.to_numpy(float) / vn_kv


def _connected(frame: pd.DataFrame, *sides: str) -> np.ndarray:
    on = np.ones(len(frame), dtype=bool)
    for side in sides:
        on &= frame[f"connected{side}"].to_numpy(bool) & (frame[f"bus{side}_id"].to_numpy(str) != "")
    return on


def _permanent_limits(network, kind: str) -> pd.DataFrame:
    """Permanent current limit (A) per element and side, NaN where the case gives none."""
    limits = network.get_operational_limits(all_attributes=True).reset_index()
    limits = limits[
        (limits["element_type"] == kind)
        & (limits["type"] == "CURRENT")
        & (limits["acceptable_duration"] == -1)
    ]
    if "selected" in limits:
        limits = limits[limits["selected"].astype(bool)]
    return limits.pivot_table(index="element_id", columns="side", values="value", aggfunc="min")


def _switches(net: pandapowerNet, network, bus_of: pd.Series) -> None:
    switches = network.get_switches(all_attributes=True)
    if not len(switches):
        return
    pp.create_switches(
        net,
        buses=bus_of.loc[switches["bus_breaker_bus1_id"]].to_numpy(),
        elements=bus_of.loc[switches["bus_breaker_bus2_id"]].to_numpy(),
        et="b",
        closed=~switches["open"].to_numpy(bool),
        name=switches.index.to_numpy(),
    )


def _lines(net: pandapowerNet, network, bus_of: pd.Series, levels: pd.DataFrame) -> None:
    lines = network.get_lines(all_attributes=True)
    if not len(lines):
        return
    on = _connected(lines, "1", "2")
    from_bus = bus_of.loc[lines["bus_breaker_bus1_id"]].to_numpy()
    to_bus = bus_of.loc[lines["bus_breaker_bus2_id"]].to_numpy()
    zero = (lines["r"].to_numpy() == 0) & (lines["x"].to_numpy() == 0)
    if zero.any():  # zero-impedance ties: pandapower fuses buses joined by closed switches
        pp.create_switches(
            net, buses=from_bus[zero], elements=to_bus[zero], et="b", closed=on[zero],
            name=lines.index[zero].to_numpy(),
        )  # fmt: skip
    keep = ~zero
    lines, on, from_bus, to_bus = lines[keep], on[keep], from_bus[keep], to_bus[keep]
    b1, b2 = lines["b1"].to_numpy(float), lines["b2"].to_numpy(float)
    g1, g2 = lines["g1"].to_numpy(float), lines["g2"].to_numpy(float)
    limits = _permanent_limits(network, "LINE").reindex(lines.index)
    max_i_ka = limits.min(axis=1).to_numpy(float) / 1000.0
    no_rating = ~(max_i_ka > 0)
    if no_rating.any():
        log.warning(
            "%d line(s) have no rating; given %g kA (never binding)", no_rating.sum(), MISSING_RATING_KA
        )
    pp.create_lines_from_parameters(
        net,
        from_buses=from_bus,
        to_buses=to_bus,
        length_km=1.0,
        r_ohm_per_km=lines["r"].to_numpy(float),
        x_ohm_per_km=lines["x"].to_numpy(float),
        c_nf_per_km=(b1 + b2) / (2 * np.pi * net.f_hz) * 1e9,
        g_us_per_km=(g1 + g2) * 1e6,
        max_i_ka=np.where(no_rating, MISSING_RATING_KA, max_i_ka),
        max_loading_percent=100.0,
        in_service=on,
        name=lines.index.to_numpy(),
    )
    # the part of each end's admittance that is not the mean of the two (PSS/E line shunts)
    vn = levels.loc[lines["voltage_level1_id"], "nominal_v"].to_numpy(float)
    vn2 = levels.loc[lines["voltage_level2_id"], "nominal_v"].to_numpy(float)
    half_g, half_b = (g1 - g2) / 2, (b1 - b2) / 2
    asymmetric = on & ((np.abs(half_b) > 0) | (np.abs(half_g) > 0))
    if asymmetric.any():
        for bus, sign, kv in ((from_bus, 1.0, vn), (to_bus, -1.0, vn2)):
            _create_shunts(
                net, bus[asymmetric], sign * half_g[asymmetric], sign * half_b[asymmetric], kv[asymmetric],
                [f"{name} end shunt" for name in lines.index[asymmetric]],
            )  # fmt: skip


def _create_shunts(net, buses, g_s, b_s, vn_kv, names, in_service=True) -> None:
    """Shunts of admittance G + jB (siemens) at nominal voltage: P = G·V², Q = −B·V²."""
    pp.create_shunts(
        net,
        buses=np.asarray(buses),
        p_mw=np.asarray(g_s) * np.asarray(vn_kv) ** 2,
        q_mvar=-np.asarray(b_s) * np.asarray(vn_kv) ** 2,
        vn_kv=np.asarray(vn_kv),
        name=list(names),
        in_service=in_service,
    )


def _two_winding(net: pandapowerNet, network, bus_of: pd.Series, levels: pd.DataFrame) -> None:
    frame = network.get_2_windings_transformers(all_attributes=True)
    if not len(frame):
        return
    limits = _permanent_limits(network, "TWO_WINDINGS_TRANSFORMER").reindex(frame.index)
    vn1 = levels.loc[frame["voltage_level1_id"], "nominal_v"].to_numpy(float)
    vn2 = levels.loc[frame["voltage_level2_id"], "nominal_v"].to_numpy(float)
    rating = _rating_mva(limits, vn1, vn2)
    _create_transformers(
        net,
        names=frame.index.to_numpy(),
        bus1=bus_of.loc[frame["bus_breaker_bus1_id"]].to_numpy(),
        bus2=bus_of.loc[frame["bus_breaker_bus2_id"]].to_numpy(),
        vn1=vn1,
        vn2=vn2,
        rho=frame["rho"].to_numpy(float),
        alpha=frame["alpha"].to_numpy(float),
        r=frame["r_at_current_tap"].to_numpy(float),
        x=frame["x_at_current_tap"].to_numpy(float),
        g=frame["g_at_current_tap"].to_numpy(float),
        b=frame["b_at_current_tap"].to_numpy(float),
        rating=rating,
        on=_connected(frame, "1", "2"),
    )


def _rating_mva(limits: pd.DataFrame, vn1: np.ndarray, vn2: np.ndarray) -> np.ndarray:
    """The winding rating as MVA at nominal voltage, from the current limit of either side."""
    mva = np.full(len(limits), np.nan)
    for side, vn in (("TWO", vn2), ("ONE", vn1)):
        if side in limits:
            value = SQRT3 * vn * limits[side].to_numpy(float) / 1000.0
            mva = np.where(np.isnan(value), mva, value)
    missing = ~(mva > 0)
    if missing.any():
        log.warning(
            "%d transformer(s) have no rating; given %g MVA (never binding)",
            missing.sum(),
            MISSING_RATING_MVA,
        )
    return np.where(missing, MISSING_RATING_MVA, mva)


def _create_transformers(net, names, bus1, bus2, vn1, vn2, rho, alpha, r, x, g, b, rating, on) -> None:
    """IIDM transformers (ideal ratio ρ·e^{jα} at side 1, impedance in ohms at side 2) in pandapower."""
    tau = rho * vn1 / vn2  # off-nominal ratio in per unit
    ratio = 1.0 / tau - 1.0  # pandapower tap on side 1, whichever voltage it is
    side1_hv = vn1 >= vn2
    z_base = vn2**2 / rating  # ohm, the rating as base
    vk = np.hypot(r, x) / z_base * 100.0
    vkr = r / z_base * 100.0
    pp.create_transformers_from_parameters(
        net,
        hv_buses=np.where(side1_hv, bus1, bus2),
        lv_buses=np.where(side1_hv, bus2, bus1),
        sn_mva=rating,
        vn_hv_kv=np.maximum(vn1, vn2),
        vn_lv_kv=np.where(side1_hv, vn2, vn1),
        vk_percent=np.sign(x) * vk,
        vkr_percent=vkr,
        pfe_kw=0.0,
        i0_percent=0.0,
        shift_degree=np.where(side1_hv, -alpha, alpha),
        tap_side=np.where(side1_hv, "hv", "lv"),
        tap_neutral=0,
        tap_min=-1,
        tap_max=1,
        tap_pos=np.sign(ratio).astype(int),
        tap_step_percent=np.abs(ratio) * 100.0,
        tap_step_degree=0.0,
        tap_changer_type="Ratio",
        max_loading_percent=100.0,
        in_service=on,
        name=names,
    )
    magnetising = on & ((g != 0) | (b != 0))
    if magnetising.any():
        # IIDM's Y sits behind the ideal ratio (side-2 ohms); seen from bus 1 it is τ²·Y in pu
        scale = (tau**2 * vn2**2 / vn1**2)[magnetising]
        _create_shunts(
            net, bus1[magnetising], g[magnetising] * scale, b[magnetising] * scale, vn1[magnetising],
            [f"{name} magnetising" for name in names[magnetising]],
        )  # fmt: skip


def _three_winding(net: pandapowerNet, network, bus_of: pd.Series, levels: pd.DataFrame) -> None:
    frame = network.get_3_windings_transformers(all_attributes=True)
    if not len(frame):
        return
    star = np.arange(len(frame)) + int(net.bus.index.max()) + 1
    star_kv = frame["rated_u0"].to_numpy(float)
    pp.create_buses(net, len(frame), vn_kv=star_kv, name=[f"{n} star" for n in frame.index], index=star)
    net.bus.loc[star, "area"] = -1
    net.bus["star_point"] = net.bus.index.isin(star)  # not a place to connect (sources.substations)
    limits = _permanent_limits(network, "THREE_WINDINGS_TRANSFORMER").reindex(frame.index)
    for leg, side in (("1", "ONE"), ("2", "TWO"), ("3", "THREE")):
        vn = levels.loc[frame[f"voltage_level{leg}_id"], "nominal_v"].to_numpy(float)
        amps = limits[side].to_numpy(float) if side in limits else np.full(len(frame), np.nan)
        rating = SQRT3 * vn * amps / 1000.0
        rating = np.where(rating > 0, rating, MISSING_RATING_MVA)
        _create_transformers(
            net,
            names=np.array([f"{n} winding {leg}" for n in frame.index]),
            bus1=bus_of.loc[frame[f"bus_breaker_bus{leg}_id"]].to_numpy(),
            bus2=star,
            vn1=vn,
            vn2=star_kv,
            rho=frame[f"rho{leg}"].to_numpy(float),
            alpha=frame[f"alpha{leg}"].to_numpy(float),
            r=frame[f"r{leg}_at_current_tap"].to_numpy(float),
            x=frame[f"x{leg}_at_current_tap"].to_numpy(float),
            g=frame[f"g{leg}_at_current_tap"].to_numpy(float),
            b=frame[f"b{leg}_at_current_tap"].to_numpy(float),
            rating=rating,
            on=frame[f"connected{leg}"].to_numpy(bool),
        )


def _shunts(
    net: pandapowerNet, network, bus_of: pd.Series, levels: pd.DataFrame, binit: dict[str, float]
) -> None:
    frame = network.get_shunt_compensators(all_attributes=True)
    if not len(frame):
        return
    vn = levels.loc[frame["voltage_level_id"], "nominal_v"].to_numpy(float)
    b = frame["b"].to_numpy(float)
    solved = frame.index.isin(list(binit))
    b[solved] = np.array([binit[i] for i in frame.index[solved]]) / vn[solved] ** 2
    _create_shunts(
        net,
        bus_of.loc[frame["bus_breaker_bus_id"]].to_numpy(),
        frame["g"].to_numpy(float),
        b,
        vn,
        frame.index.to_numpy(),
        in_service=frame["connected"].to_numpy(bool),
    )


def _loads(net: pandapowerNet, network, bus_of: pd.Series) -> None:
    frame = network.get_loads(all_attributes=True)
    if not len(frame):
        return
    bus = bus_of.loc[frame["bus_breaker_bus_id"]].to_numpy()
    pp.create_loads(
        net,
        buses=bus,
        p_mw=frame["p0"].to_numpy(float),
        q_mvar=frame["q0"].to_numpy(float),
        name=frame.index.to_numpy(),
        in_service=frame["connected"].to_numpy(bool),
    )
    net.load["psse_id"] = frame.index.str.extract(r"-L(.*)$")[0].fillna("").to_numpy()


def _generators(
    net: pandapowerNet,
    network,
    bus_of: pd.Series,
    levels: pd.DataFrame,
    angle: pd.Series,
    kind: pd.Series,
    source: str,
) -> None:
    """Swing generator → ext_grid; generators at PV buses (IDE 2) → gen; others → sgen.

    A generator at a PV bus whose reactive range is a single value (QT = QB) stays a ``gen``
    with that range, as in the MATPOWER form of a PSS/E case: a power flow that enforces
    reactive limits holds its Q there, one that does not holds its voltage set-point (the
    importer turns its regulation off, which would decide that choice for every solver).
    """
    frame = network.get_generators(all_attributes=True)
    bus = bus_of.loc[frame["bus_breaker_bus_id"]].to_numpy()
    is_slack = _swing_generators(frame, bus, kind, source)
    regulated_kv = levels.loc[
        network.get_bus_breaker_view_buses().loc[frame["regulated_bus_breaker_bus_id"], "voltage_level_id"],
        "nominal_v",
    ].to_numpy(float)
    vm_pu = frame["target_v"].to_numpy(float) / regulated_kv
    on = frame["connected"].to_numpy(bool)
    remote = (frame["regulated_bus_breaker_bus_id"] != frame["bus_breaker_bus_id"]).to_numpy() & on
    if remote.any():
        log.warning(
            "%s: %d generator(s) regulate a remote bus; each holds that set-point at its own bus",
            source, int(remote.sum()),
        )  # fmt: skip
    for position in np.flatnonzero(is_slack):
        pp.create_ext_grid(
            net,
            bus[position],
            vm_pu=vm_pu[position],
            va_degree=float(angle.loc[bus[position]]),
            name=frame.index[position],
            min_q_mvar=float(frame["min_q"].iloc[position]),
            max_q_mvar=float(frame["max_q"].iloc[position]),
            min_p_mw=float(frame["min_p"].iloc[position]),
            max_p_mw=float(frame["max_p"].iloc[position]),
        )
    pv_bus = kind.loc[bus].to_numpy() >= 2
    regulating = (frame["voltage_regulator_on"].to_numpy(bool) | pv_bus) & ~is_slack
    fixed = ~regulating & ~is_slack
    if regulating.any():
        pp.create_gens(
            net,
            buses=bus[regulating],
            p_mw=frame["target_p"].to_numpy(float)[regulating],
            vm_pu=vm_pu[regulating],
            min_q_mvar=frame["min_q"].to_numpy(float)[regulating],
            max_q_mvar=frame["max_q"].to_numpy(float)[regulating],
            min_p_mw=frame["min_p"].to_numpy(float)[regulating],
            max_p_mw=frame["max_p"].to_numpy(float)[regulating],
            name=frame.index[regulating].to_numpy(),
            in_service=on[regulating],
        )
    if fixed.any():
        pp.create_sgens(
            net,
            buses=bus[fixed],
            p_mw=frame["target_p"].to_numpy(float)[fixed],
            q_mvar=frame["target_q"].fillna(0.0).to_numpy(float)[fixed],
            name=frame.index[fixed].to_numpy(),
            in_service=on[fixed],
        )


def _swing_generators(frame: pd.DataFrame, bus: np.ndarray, kind: pd.Series, source: str) -> np.ndarray:
    """One in-service generator per swing bus (IDE 3), the largest, holds the slack.

    The importer's slack terminal may sit on a load at that bus, so the RAW bus type decides.
    """
    on = frame["connected"].to_numpy(bool)
    candidates = on & (kind.loc[bus].to_numpy() == 3)
    if not candidates.any():
        raise GridError(f"{source}: the case has no swing bus (a bus of type 3 with an in-service generator)")
    size = pd.Series(np.where(candidates, frame["max_p"].to_numpy(float), -np.inf))
    first = size.groupby(bus).idxmax().to_numpy()
    is_slack = np.zeros(len(frame), dtype=bool)
    is_slack[first[candidates[first]]] = True
    return is_slack


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
