"""OpenDSS feeders as balanced (positive-sequence) pandapower models, built from OpenDSS's own solution.

The master file is compiled and solved by the OpenDSS engine (DSS-Extensions), so every
valid master file is understood the way OpenDSS understands it. The balanced model is then
built from the solved circuit's own element data:

* **Lines** from each line's primitive admittance matrix (``Yprim``, siemens): the series
  impedance matrix ``Z`` (neutrals Kron-reduced) of an ``n``-phase line becomes the
  equivalent ``Z_eq = 3/n · (Zs − (n−1)/2 · Zm)`` with ``Zs``/``Zm`` the mean self/mutual
  impedance. For three phases this is the positive-sequence impedance; for a one- or
  two-phase lateral it keeps the lateral's series losses and per-unit voltage drop when its
  load, carried by ``n`` phases in the real circuit, is spread over three in the balanced
  one (a third of the current per phase for a single phase, hence three times the
  impedance). The rating scales the same way (``normamps · n/3``), so loading percent is the
  real phase current over its rating. Shunt capacitance scales by ``n/3``.
* **Switches** (``switch=yes`` lines, or lines with a negligible impedance) are bus-bus
  switches, open where OpenDSS has the line open or disabled.
* **Transformers** (including regulators) at OpenDSS's solved taps; single-phase units
  between the same two buses are one equivalent unit with their summed rating. A
  centre-tapped (split-phase) unit is its primary-to-whole-secondary equivalent
  ``z1 + (z2 + z3)/4`` (star impedances), which is the drop seen by 240 V load and by 120 V
  load shared equally by both halves. Phase shifts are dropped (radial feeders, one source).
  A near-ideal regulator at an off-nominal tap behind a weak network (far out on a feeder)
  gets a larger impedance, so that Newton-Raphson solves the model from a flat start
  (``_Builder.solvable_taps``).
* **Loads** at their solved power, each keeping its voltage dependence (OpenDSS model 1
  constant power, 2 constant impedance, 5 constant current, 3 constant-P/quadratic-Q,
  4 exponential by its CVR exponents as the constant-current/impedance mix with the same
  sensitivity); the nominal power is set so that the balanced model draws exactly the solved
  power at the solved voltage.
* **Capacitors and shunt reactors** at their solved state (after capacitor controls), as
  shunts; **generators, PV and storage** as static generators at their solved power.
* **Sources** (``Vsource``) are external grids at the source bus, held at the bus's solved
  voltage magnitude (the source impedance is behind them).

What cannot be represented is listed element by element in ``DssCircuit.unrepresented``;
the solved control states (taps, capacitor steps) are recorded in ``DssCircuit.states``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
from pandapower.auxiliary import pandapowerNet
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from siting.errors import GridError, UsageError

# Regulators are often given a near-zero impedance (IEEE 123: 0.001 %); with an off-nominal tap
# such a branch makes Newton-Raphson diverge, so short-circuit impedances are at least this.
MIN_VK_PERCENT = 0.1
SWITCH_OHM = 1e-3  # a line with a smaller positive-sequence impedance is a switch
# An off-nominal tap on a near-ideal regulator puts a term of 2·(t − 1)²/z (per unit) into the
# flat-start Jacobian that cancels the short-circuit stiffness 1/Z_sc of the network feeding it
# (IEEE 9500's vreg3: 97 % of it, and Newton-Raphson diverges). Regulator impedances are raised
# until the term is at most this share of the stiffness (see _Builder.solvable_taps); a quarter,
# as the terms of regulators in series add up (IEEE 9500 still diverges with two at 65 %).
FLAT_START_SHARE = 0.25
# A transformer from above this to a primary voltage at or below it (and at least PRIMARY_KV)
# is a distribution substation (kV, line to line): 35 kV is where US sub-transmission ends.
DISTRIBUTION_KV = 35.0
PRIMARY_KV = 1.0
# A planar coordinate map is stored as lon/lat degrees around (0, 0): one model unit = this many degrees.
PLANAR_DEGREES_PER_UNIT = 1.0 / 111_320.0
PHASE_NODES = (1, 2, 3)
MAX_STRAY_COORDINATES = 0.05  # share of a coordinate file's rows that may name unknown buses
# Load shapes carry no calendar: they become profiles of a year without 29 February (8760 hours).
PROFILE_YEAR = 2021


@dataclass(frozen=True)
class DssCircuit:
    """A solved OpenDSS circuit and its balanced pandapower equivalent.

    ``bus_names`` holds the OpenDSS bus name of each ``net.bus`` row; ``load_names`` of each
    ``net.load`` row. ``unrepresented`` lists (element, reason); ``states`` the solved taps
    and capacitor steps (element, kind, value). ``coordinates`` is ``"geographic"``,
    ``"planar"`` or ``"none"``.
    """

    master: Path
    net: pandapowerNet
    bus_names: tuple[str, ...]
    load_names: tuple[str, ...]
    unrepresented: pd.DataFrame
    states: pd.DataFrame
    coordinates: str
    placed: int  # buses without coordinates of their own, placed at a neighbour's
    vm_pu: pd.DataFrame  # OpenDSS's solution per net.bus row: mean, min, max phase-to-neutral pu
    head_p_mw: float  # OpenDSS's solution: power into the circuit at the sources
    head_q_mvar: float
    losses_mw: float
    profiles: pd.DataFrame | None = None
    files: tuple[Path, ...] = field(default=())


def describe(circuit: DssCircuit) -> str:
    """One line: what the balanced model is and what it leaves out."""
    net = circuit.net
    text = (
        f"OpenDSS circuit {net.name} ({circuit.master.name}), balanced equivalent: {len(net.bus)} buses, "
        f"{len(net.line)} lines, {len(net.trafo)} transformers, {len(net.load)} loads; "
        f"coordinates {circuit.coordinates}"
        + (f" ({circuit.placed} buses placed at a neighbour's)" if circuit.placed else "")
    )
    if len(circuit.unrepresented):
        text += f"; {len(circuit.unrepresented)} element(s) not or approximately represented"
    return text


def dss_engine():
    """The OpenDSS engine (DSS-Extensions' OpenDSSDirect.py), imported on first use."""
    import opendssdirect

    return opendssdirect


def compile_circuit(master: Path) -> None:
    """Compile and solve ``master`` in OpenDSS; OpenDSS's own message if it refuses."""
    dss = dss_engine()
    if not master.exists():
        raise UsageError(f"{master}: OpenDSS master file not found")
    dss.Text.Command("clear")
    cwd = os.getcwd()  # OpenDSS's compile moves the process into the master's folder
    try:
        dss.Text.Command(f'compile "{master.resolve()}"')
    except Exception as err:  # DSSException: OpenDSS's message names file and line
        raise GridError(f"{master}: OpenDSS refused the circuit: {_one_line(err)}") from err
    finally:
        os.chdir(cwd)
    if dss.Circuit.Name() == "" or dss.Vsources.Count() == 0:
        raise GridError(f"{master}: the circuit has no source (no Vsource); define 'New Circuit.<name>'")
    try:
        dss.Text.Command("solve")
    except Exception as err:
        raise GridError(f"{master}: OpenDSS could not solve the circuit: {_one_line(err)}") from err
    if not dss.Solution.Converged():
        raise GridError(
            f"{master}: the OpenDSS power flow does not converge "
            f"(after {dss.Solution.Iterations()} iterations); check the circuit in OpenDSS"
        )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] or type(err).__name__


def read_opendss(master: Path, year: int | None = None) -> DssCircuit:
    """Compile and solve ``master`` in OpenDSS and build its balanced pandapower model.

    With ``year``, each load's yearly (else daily, else duty) load shape becomes its hourly
    profile for that year; a shape shorter than the year is refused.
    """
    compile_circuit(master)
    dss = dss_engine()
    files = _model_files(master)
    stray = _check_coordinate_files(master, files, set(dss.Circuit.AllBusNames()))
    total = dss.Circuit.TotalPower()  # kW, kvar (negative: delivered into the circuit)
    losses = dss.Circuit.Losses()  # W, var
    net = pp.create_empty_network(name=dss.Circuit.Name(), f_hz=dss.Solution.Frequency())
    builder = _Builder(dss, net)
    builder.buses()
    builder.sources()
    builder.lines()
    builder.transformers()
    builder.loads()
    builder.shunts()
    builder.series_branches()
    builder.solvable_taps()
    builder.generators()
    builder.others()
    builder.mark_substations()
    builder.unrepresented.extend(stray)
    coordinates = builder.coordinates()
    net["coordinates"] = coordinates  # "planar" maps refuse GIS layers (refuse_gis_layers)
    profiles = builder.profiles(master, year) if year is not None and builder.has_shapes() else None
    unrepresented = pd.DataFrame(builder.unrepresented, columns=["element", "reason"])
    states = pd.DataFrame(builder.states, columns=["element", "kind", "value"])
    # kept with the net, so whoever holds only the Grid (inspect, reports) can list them
    net["opendss_unrepresented"] = unrepresented
    net["opendss_states"] = states
    return DssCircuit(
        master=master,
        net=net,
        bus_names=tuple(builder.bus_names),
        load_names=tuple(builder.load_names),
        unrepresented=unrepresented,
        states=states,
        coordinates=coordinates,
        placed=builder.placed,
        vm_pu=builder.phase_pu,
        head_p_mw=-total[0] / 1e3,
        head_q_mvar=-total[1] / 1e3,
        losses_mw=losses[0] / 1e6,
        profiles=profiles,
        files=tuple(path for path, _ in files),
    )


def _model_files(master: Path) -> list[tuple[Path, str]]:
    """The master file and every file it redirects to, compiles or reads coordinates from.

    Each with the command that names it (``"master"`` for the master file itself).
    """
    seen = [(master.resolve(), "master")]
    for path, _ in seen:
        if path.suffix.lower() not in (".dss", ".txt") and path != master.resolve():
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.strip().split(None, 1)
            command = words[0].lower() if words else ""
            if len(words) == 2 and command in ("redirect", "compile", "buscoords", "latlongcoords"):
                target = (path.parent / words[1].split("!")[0].strip().strip('"')).resolve()
                if target.exists() and target not in [p for p, _ in seen]:
                    seen.append((target, command))
    return seen


def _check_coordinate_files(
    master: Path, files: list[tuple[Path, str]], buses: set[str]
) -> list[tuple[str, str]]:
    """Coordinate rows naming buses the circuit does not have (OpenDSS ignores them silently).

    More than ``MAX_STRAY_COORDINATES`` of a file is a file for another circuit: refused. A few
    stray rows (real feeders have some) are returned as notes, one per file.
    """
    notes = []
    for path, command in files:
        if command not in ("buscoords", "latlongcoords"):
            continue
        names = []
        for line in path.read_text(errors="replace").splitlines():
            text = line.split("!")[0].strip()
            if text and not text.startswith("//"):
                names.append(text.replace(",", " ").split()[0].lower())
        unknown = [name for name in names if name not in buses]
        if len(unknown) > MAX_STRAY_COORDINATES * max(len(names), 1):
            raise GridError(
                f"{path.name}: {len(unknown)} of {len(names)} coordinate rows name buses the circuit "
                f"({master.name}) does not have, e.g. '{unknown[0]}'; is it this circuit's coordinate file?"
            )
        if unknown:
            notes.append(
                (
                    f"{command} {path.name}",
                    f"{len(unknown)} rows name unknown buses (ignored), e.g. {unknown[0]}",
                )
            )
    return notes


def _bus_of(terminal: str) -> str:
    return terminal.split(".")[0].lower()


class _Builder:
    """Walks the solved OpenDSS circuit once per element class and fills the pandapower net."""

    def __init__(self, dss, net: pandapowerNet) -> None:
        self.dss = dss
        self.net = net
        self.bus_names: list[str] = []
        self.bus_index: dict[str, int] = {}
        self.base_kv_ln: dict[str, float] = {}
        self.vm_pu: dict[str, float] = {}
        self.load_names: list[str] = []
        self.unrepresented: list[tuple[str, str]] = []
        self.states: list[tuple[str, str, float]] = []
        self.source_buses: list[str] = []
        self.series: list[tuple] = []
        self.placed = 0  # buses without coordinates placed at a neighbour's

    # -- buses -----------------------------------------------------------------------------
    def buses(self) -> None:
        dss = self.dss
        names = dss.Circuit.AllBusNames()
        node_names = dss.Circuit.AllNodeNames()
        node_pu = np.asarray(dss.Circuit.AllBusMagPu())
        node_kv = np.asarray(dss.Circuit.AllBusVMag()) / 1e3
        node_bus = [name.rsplit(".", 1)[0].lower() for name in node_names]
        node_phase = np.array([name.rsplit(".", 1)[1] in ("1", "2", "3") for name in node_names])
        frame = pd.DataFrame({"bus": node_bus, "pu": node_pu, "kv": node_kv, "phase": node_phase})
        phase = frame[frame["phase"]].groupby("bus")
        mean_pu = phase["pu"].mean()
        spread = pd.DataFrame({"mean": mean_pu, "min": phase["pu"].min(), "max": phase["pu"].max()})
        self.phase_pu = spread.reindex([n.lower() for n in names]).reset_index(drop=True)
        mean_kv = phase["kv"].mean()
        vn = []
        for name in names:
            dss.Circuit.SetActiveBus(name)
            base = dss.Bus.kVBase()
            key = name.lower()
            if base <= 0:
                # no voltage base: use the solved phase-to-neutral voltage as the base
                base = float(mean_kv.get(key, 0.0)) or 1.0
                self.vm_pu[key] = 1.0
            else:
                self.vm_pu[key] = float(mean_pu.get(key, 1.0))
            self.base_kv_ln[key] = base
            vn.append(base * math.sqrt(3))
        index = pp.create_buses(self.net, len(names), vn_kv=np.array(vn), name=[n.lower() for n in names])
        self.net.bus["phases"] = (
            phase["pu"].count().reindex([n.lower() for n in names]).fillna(0).astype(int).to_numpy()
        )
        self.bus_names = [n.lower() for n in names]
        self.bus_index = dict(zip(self.bus_names, index.tolist(), strict=True))

    def coordinates(self) -> str:
        """Bus coordinates into ``net.bus.geo``: lon/lat as given, or a planar map (see module)."""
        from siting.sources.geo import set_bus_lonlat

        dss = self.dss
        x = np.full(len(self.bus_names), np.nan)
        y = np.full(len(self.bus_names), np.nan)
        for position, name in enumerate(self.bus_names):
            dss.Circuit.SetActiveBus(name)
            if dss.Bus.Coorddefined():
                x[position], y[position] = dss.Bus.X(), dss.Bus.Y()
        have = np.isfinite(x)
        if not have.any():
            return "none"
        geographic = bool(
            (np.abs(x[have]) <= 180).all() and (np.abs(y[have]) <= 90).all() and np.ptp(x[have]) < 5
        )
        if not geographic:
            x = (x - np.nanmin(x)) * PLANAR_DEGREES_PER_UNIT
            y = (y - np.nanmin(y)) * PLANAR_DEGREES_PER_UNIT
        x, y = _spread_coordinates(self.net, x, y)
        set_bus_lonlat(self.net, x, y)
        self.net.bus.loc[~np.isfinite(x), "geo"] = None
        self.placed = int(np.isfinite(x).sum() - have.sum())
        return "geographic" if geographic else "planar"

    # -- sources ---------------------------------------------------------------------------
    def sources(self) -> None:
        dss = self.dss
        index = dss.Vsources.First()
        while index:
            name = dss.Vsources.Name()
            if dss.CktElement.Enabled():
                bus = _bus_of(dss.CktElement.BusNames()[0])
                self.source_buses.append(bus)
                pp.create_ext_grid(
                    self.net,
                    self.bus_index[bus],
                    vm_pu=self.vm_pu[bus],
                    va_degree=dss.Vsources.AngleDeg(),
                    name=f"vsource.{name}",
                )
            index = dss.Vsources.Next()

    # -- lines and switches ----------------------------------------------------------------
    def lines(self) -> None:
        dss = self.dss
        rows = []
        switches = []
        index = dss.Lines.First()
        while index:
            name = f"line.{dss.Lines.Name()}"
            bus1, bus2 = (_bus_of(b) for b in dss.CktElement.BusNames()[:2])
            enabled = dss.CktElement.Enabled()
            closed = enabled and not (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0))
            n = dss.CktElement.NumPhases()
            if bus1 == bus2:
                self.unrepresented.append((name, "both ends on the same bus"))
            elif dss.Lines.IsSwitch() or not enabled:
                switches.append((bus1, bus2, closed, name))
            else:
                row = self._series_branch(name)
                if abs(row[2]) < SWITCH_OHM:
                    switches.append((bus1, bus2, closed, name))
                else:
                    rows.append(row)
                    if n < 3:
                        self.states.append((name, "phases", float(n)))
            index = dss.Lines.Next()
        self.series = rows
        if switches:
            bus1, bus2, closed, name = zip(*switches, strict=True)
            pp.create_switches(
                self.net,
                buses=[self.bus_index[b] for b in bus1],
                elements=[self.bus_index[b] for b in bus2],
                et="b",
                closed=list(closed),
                name=list(name),
            )

    def _series_branch(self, name: str) -> tuple:
        """(bus1, bus2, Z_eq ohm, B_eq S, rating kA, closed, name) of the active line or series reactor."""
        dss = self.dss
        bus1, bus2 = (_bus_of(b) for b in dss.CktElement.BusNames()[:2])
        n = dss.CktElement.NumPhases()
        closed = not (dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0))
        z, y_shunt = _line_matrices(dss, n)
        z_eq = _equivalent(z, n) * 3 / n
        b_eq = _equivalent(y_shunt, n).imag * n / 3 * 2  # both ends, siemens
        amps = dss.CktElement.NormalAmps()
        return (bus1, bus2, z_eq, b_eq, amps * n / 3 / 1e3, closed, name)

    def series_branches(self) -> None:
        """Lines and series reactors as pandapower lines of 1 km carrying the equivalent impedance."""
        rows = self.series
        if rows:
            frame = pd.DataFrame(rows, columns=["b1", "b2", "z", "b", "ika", "closed", "name"])
            omega = 2 * math.pi * self.net.f_hz
            pp.create_lines_from_parameters(
                self.net,
                from_buses=frame["b1"].map(self.bus_index).to_numpy(),
                to_buses=frame["b2"].map(self.bus_index).to_numpy(),
                length_km=1.0,
                r_ohm_per_km=np.maximum(frame["z"].map(np.real).to_numpy(), 0.0),
                x_ohm_per_km=frame["z"].map(np.imag).to_numpy(),
                c_nf_per_km=np.maximum(frame["b"].to_numpy(), 0.0) / omega * 1e9,
                max_i_ka=np.where(frame["ika"] > 0, frame["ika"], np.inf),
                in_service=frame["closed"].to_numpy(),
                name=frame["name"].to_numpy(),
            )

    def solvable_taps(self) -> None:
        """Raise the impedance of transformers whose off-nominal tap defeats a flat start.

        At a flat start (every bus at the source voltage) a transformer of per-unit impedance
        ``z`` and off-nominal ratio ``t`` carries a circulating current that OpenDSS's solution
        does not have, and Newton-Raphson's Jacobian there has, to first order in ``t − 1``,
        ``2·(t − 1)²/|z|`` taken off the short-circuit stiffness ``1/|Z_sc|`` with which the
        network holds the transformer's terminals. A regulator modelled as near-ideal (IEEE
        9500: 0.1 % on 10 MVA per phase) far out on a feeder, where ``|Z_sc|`` is large, brings
        the Jacobian close to singular, and the first step throws the voltages far off. Such a
        transformer's impedance is raised (its X/R kept) until the term is at most
        ``FLAT_START_SHARE`` of the stiffness, ``|z| ≥ 2·(t − 1)²·|Z_sc|/FLAT_START_SHARE``:
        the series impedance grows by at most ``8·(t − 1)²`` of the network's in front of it
        (IEEE 9500's vreg3, tap offset 2.8 %: 0.1 → 0.41 %, 0.6 % of the 0.022 pu before it).
        """
        net = self.net
        trafo = net.trafo
        if trafo.empty:
            return
        vn = net.bus["vn_kv"]
        ratio = (trafo["vn_hv_kv"].to_numpy() / vn.loc[trafo["hv_bus"]].to_numpy()) / (
            trafo["vn_lv_kv"].to_numpy() / vn.loc[trafo["lv_bus"]].to_numpy()
        )
        z_pu = trafo["vk_percent"].to_numpy() / 100 * net.sn_mva / trafo["sn_mva"].to_numpy()
        z_source = pd.Series(_source_impedance_pu(net), index=net.bus.index)
        # the terminal on the source side is the one the network holds (the other is behind z)
        z_sc = np.fmin(z_source.loc[trafo["hv_bus"]].to_numpy(), z_source.loc[trafo["lv_bus"]].to_numpy())
        needed = 2 * (ratio - 1) ** 2 * z_sc / FLAT_START_SHARE
        for k in np.flatnonzero(needed > z_pu):
            row = trafo.index[k]
            vk = float(trafo.at[row, "vk_percent"])
            raised = needed[k] / z_pu[k] * vk
            net.trafo.at[row, "vkr_percent"] *= raised / vk
            net.trafo.at[row, "vk_percent"] = raised
            self.unrepresented.append(
                (
                    str(trafo.at[row, "name"]),
                    f"approximated: impedance {vk:.4g} % raised to {raised:.3g} % (off-nominal tap "
                    f"{ratio[k]:.4f}, {z_sc[k]:.3g} pu from the source: solvable from a flat start)",
                )
            )

    # -- transformers ----------------------------------------------------------------------
    def transformers(self) -> None:
        dss = self.dss
        units = []
        index = dss.Transformers.First()
        while index:
            name = f"transformer.{dss.Transformers.Name()}"
            if not dss.CktElement.Enabled():
                index = dss.Transformers.Next()
                continue
            unit = self._transformer_unit(name)
            if isinstance(unit, str):
                self.unrepresented.append((name, unit))
            else:
                units.append(unit)
            index = dss.Transformers.Next()
        if not units:
            return
        frame = pd.DataFrame(
            units, columns=["hv", "lv", "sn", "t_hv", "t_lv", "vk", "vkr", "pfe", "i0", "name"]
        )
        groups = frame.groupby(["hv", "lv"], sort=False)
        weight = frame["sn"] / groups["sn"].transform("sum")
        for column in ("t_hv", "t_lv", "vk", "vkr", "i0"):
            frame[column] = frame[column] * weight
        merged = groups.agg(
            sn=("sn", "sum"),
            t_hv=("t_hv", "sum"),
            t_lv=("t_lv", "sum"),
            vk=("vk", "sum"),
            vkr=("vkr", "sum"),
            pfe=("pfe", "sum"),
            i0=("i0", "sum"),
            name=("name", " + ".join),
        ).reset_index()
        hv = merged["hv"].map(self.bus_index).to_numpy()
        lv = merged["lv"].map(self.bus_index).to_numpy()
        vn = self.net.bus["vn_kv"]
        pp.create_transformers_from_parameters(
            self.net,
            hv_buses=hv,
            lv_buses=lv,
            sn_mva=merged["sn"].to_numpy(),
            vn_hv_kv=vn.loc[hv].to_numpy() * merged["t_hv"].to_numpy(),
            vn_lv_kv=vn.loc[lv].to_numpy() * merged["t_lv"].to_numpy(),
            vk_percent=merged["vk"].to_numpy(),
            vkr_percent=merged["vkr"].to_numpy(),
            pfe_kw=merged["pfe"].to_numpy(),
            i0_percent=merged["i0"].to_numpy(),
            name=merged["name"].to_numpy(),
        )

    def _transformer_unit(self, name: str) -> tuple | str:
        """(hv bus, lv bus, MVA, hv and lv ratio to bus base, vk %, vkr %, name), or why not."""
        dss = self.dss
        tr = dss.Transformers
        windings = tr.NumWindings()
        terminals = dss.CktElement.BusNames()
        conductors = dss.CktElement.NumConductors()
        nodes = dss.CktElement.NodeOrder()
        phases = dss.CktElement.NumPhases()
        buses = [_bus_of(t) for t in terminals]
        kv, kva, r_pct, ratio = [], [], [], []
        for w in range(windings):
            tr.Wdg(w + 1)
            kv.append(tr.kV())
            kva.append(tr.kVA())
            r_pct.append(tr.R())
            winding_nodes = [n for n in nodes[w * conductors : (w + 1) * conductors] if n in PHASE_NODES]
            line_to_line = phases == 3 or (phases == 1 and len(winding_nodes) == 2)
            connected_kv = self.base_kv_ln[buses[w]] * (math.sqrt(3) if line_to_line else 1.0)
            ratio.append(tr.kV() * tr.Tap() / connected_kv)
            self.states.append((name, f"tap winding {w + 1}", tr.Tap()))
        base = kva[0]
        r = [r_pct[w] * base / kva[w] for w in range(windings)]  # % on winding 1's kVA base
        if windings == 2:
            x_pct, r_eq = tr.Xhl(), r[0] + r[1]
        elif windings == 3 and buses[1] == buses[2]:
            xhl, xht, xlt = tr.Xhl(), tr.Xht(), tr.Xlt()
            x1, x2, x3 = (xhl + xht - xlt) / 2, (xhl + xlt - xht) / 2, (xht + xlt - xhl) / 2
            x_pct, r_eq = x1 + (x2 + x3) / 4, r[0] + (r[1] + r[2]) / 4
            ratio[1] = (ratio[1] + ratio[2]) / 2
        else:
            return f"{windings}-winding transformer on separate buses (not two-winding or centre-tapped)"
        if buses[0] == buses[1]:
            return "both windings on the same bus"
        vk = math.hypot(x_pct, r_eq)
        if vk < MIN_VK_PERCENT:
            self.unrepresented.append(
                (
                    name,
                    f"approximated: impedance {vk:.4g} % raised to {MIN_VK_PERCENT:g} % (solvable)",
                )
            )
            r_eq, vk = r_eq * MIN_VK_PERCENT / vk, MIN_VK_PERCENT
        no_load = _property(dss, name, "%noloadloss")
        magnetising = _property(dss, name, "%imag")
        i0 = math.hypot(no_load, magnetising)
        return (buses[0], buses[1], base / 1e3, ratio[0], ratio[1], vk, r_eq, base * no_load / 100, i0, name)

    # -- loads, shunts, generation ---------------------------------------------------------
    def loads(self) -> None:
        dss = self.dss
        rows = []
        index = dss.Loads.First()
        while index:
            name = f"load.{dss.Loads.Name()}"
            if dss.CktElement.Enabled():
                bus = _bus_of(dss.CktElement.BusNames()[0])
                p, q = _terminal_power(dss)
                z_p, i_p, z_q, i_q, note = _zip_of(dss.Loads)
                if note:
                    self.unrepresented.append((name, note))
                v = self.vm_pu[bus]
                rows.append((bus, p / _zip(v, z_p, i_p), q / _zip(v, z_q, i_q), z_p, i_p, z_q, i_q, name))
            index = dss.Loads.Next()
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=["bus", "p", "q", "zp", "ip", "zq", "iq", "name"])
        pp.create_loads(
            self.net,
            buses=frame["bus"].map(self.bus_index).to_numpy(),
            p_mw=frame["p"].to_numpy(),
            q_mvar=frame["q"].to_numpy(),
            const_z_p_percent=frame["zp"].to_numpy() * 100,
            const_i_p_percent=frame["ip"].to_numpy() * 100,
            const_z_q_percent=frame["zq"].to_numpy() * 100,
            const_i_q_percent=frame["iq"].to_numpy() * 100,
            name=frame["name"].to_numpy(),
        )
        self.load_names = frame["name"].tolist()

    def shunts(self) -> None:
        dss = self.dss
        for cls in ("Capacitor", "Reactor"):
            dss.Circuit.SetActiveClass(cls)
            index = dss.ActiveClass.First()
            while index:
                name = dss.CktElement.Name().lower()
                terminals = dss.CktElement.BusNames()
                buses = {_bus_of(t) for t in terminals}
                if dss.CktElement.NumTerminals() > 1 and len(buses) > 1:
                    if dss.CktElement.Enabled():
                        self.series.append(self._series_branch(name))
                elif dss.CktElement.Enabled():
                    bus = _bus_of(terminals[0])
                    _, q = _terminal_power(dss)
                    if cls == "Capacitor":
                        self.states.append((name, "steps in service", float(sum(dss.Capacitors.States()))))
                    # a shunt's reactive power scales with |V|²: its rating at 1 pu of the bus base
                    pp.create_shunt(self.net, self.bus_index[bus], q_mvar=q / self.vm_pu[bus] ** 2, name=name)
                index = dss.ActiveClass.Next()

    def generators(self) -> None:
        dss = self.dss
        for cls in ("Generator", "PVSystem", "Storage"):
            dss.Circuit.SetActiveClass(cls)
            index = dss.ActiveClass.First()
            while index:
                name = dss.CktElement.Name().lower()
                if dss.CktElement.Enabled():
                    bus = _bus_of(dss.CktElement.BusNames()[0])
                    p, q = _terminal_power(dss)
                    pp.create_sgen(self.net, self.bus_index[bus], p_mw=-p, q_mvar=-q, name=name)
                    self.states.append((name, "solved p_mw", -p))
                index = dss.ActiveClass.Next()

    def others(self) -> None:
        """Power-carrying elements the balanced model has no place for, named one by one."""
        known = {
            "line",
            "transformer",
            "load",
            "capacitor",
            "reactor",
            "generator",
            "pvsystem",
            "storage",
            "vsource",
        }
        for name in self.dss.Circuit.AllElementNames():
            kind = name.split(".")[0].lower()
            if kind not in known and not _is_control(kind):
                self.unrepresented.append((name.lower(), f"{kind} elements are not represented"))

    def mark_substations(self) -> None:
        """Substations: transformers at a source's voltage zone or stepping down to a primary.

        Each comes with the buses at its ends. The source zone is what a source reaches through
        lines and switches alone. Without such a transformer the source bus itself (with any
        regulator it feeds) is the station.
        A step-down from above ``DISTRIBUTION_KV`` to a primary voltage at or below it (the
        IEEE 9500 feeder's three 69/12.47 kV substations behind its 115/69 kV one) is a station
        of its own, named after the transformer.
        """
        net = self.net
        zone = _reach(net, [self.bus_index[b] for b in self.source_buses])
        trafo = net.trafo
        at_source = trafo["hv_bus"].isin(zone) | trafo["lv_bus"].isin(zone)
        net.bus["substation"] = None
        net.trafo["substation"] = None
        for bus in self.source_buses:
            station = f"substation {bus}" if len(self.source_buses) > 1 else "substation"
            own_zone = _reach(net, [self.bus_index[bus]])
            own = trafo.index[at_source & (trafo["hv_bus"].isin(own_zone) | trafo["lv_bus"].isin(own_zone))]
            if len(own):
                self._station(own, station)
            else:
                net.bus.loc[self.bus_index[bus], "substation"] = station
        hv_kv = net.bus.loc[trafo["hv_bus"], "vn_kv"].to_numpy()
        lv_kv = net.bus.loc[trafo["lv_bus"], "vn_kv"].to_numpy()
        step_down = (hv_kv > DISTRIBUTION_KV) & (lv_kv <= DISTRIBUTION_KV) & (lv_kv >= PRIMARY_KV)
        for row in trafo.index[step_down & trafo["substation"].isna().to_numpy()]:
            self._station([row], str(trafo.at[row, "name"]).removeprefix("transformer."))

    def _station(self, rows: Sequence[int] | pd.Index, station: str) -> None:
        """Transformers ``rows`` and the buses at their ends make up ``station``."""
        net = self.net
        net.trafo.loc[rows, "substation"] = station
        ends = np.concatenate([net.trafo.loc[rows, "hv_bus"], net.trafo.loc[rows, "lv_bus"]])
        net.bus.loc[ends, "substation"] = station

    # -- profiles --------------------------------------------------------------------------
    def has_shapes(self) -> bool:
        dss = self.dss
        index = dss.Loads.First()
        while index:
            if dss.CktElement.Enabled() and (dss.Loads.Yearly() or dss.Loads.Daily() or dss.Loads.Duty()):
                return True
            index = dss.Loads.Next()
        return False

    def profiles(self, master: Path, year: int) -> pd.DataFrame:
        """Hourly p_mw/q_mvar of every load for ``year`` from its OpenDSS load shape."""
        dss = self.dss
        hours = pd.date_range(f"{year}-01-01", periods=8760, freq="h", name="time")
        names: list[str] = []
        p_mults = [np.ones(len(hours))]  # position 0: loads without a shape stay at their power
        q_mults = [np.ones(len(hours))]
        which = []
        index = dss.Loads.First()
        while index:
            if dss.CktElement.Enabled():
                shape = (dss.Loads.Yearly() or dss.Loads.Daily() or dss.Loads.Duty()).lower()
                if shape and shape not in names:
                    names.append(shape)
                    p_mult, q_mult = _shape_hours(dss, shape, len(hours), master)
                    p_mults.append(p_mult)
                    q_mults.append(q_mult)
                    dss.Loads.Name(dss.Loads.Name())  # re-activate the load after reading the shape
                which.append(names.index(shape) + 1 if shape else 0)
            index = dss.Loads.Next()
        loads = self.net.load
        p = pd.DataFrame(
            np.asarray(p_mults)[which].T * loads["p_mw"].to_numpy(), index=hours, columns=loads.index
        )
        q = pd.DataFrame(
            np.asarray(q_mults)[which].T * loads["q_mvar"].to_numpy(), index=hours, columns=loads.index
        )
        profiles = pd.concat({("load", "p_mw"): p, ("load", "q_mvar"): q}, axis=1)
        profiles.columns.names = ["element", "variable", "index"]
        return profiles


def _shape_hours(dss, shape: str, hours: int, master: Path) -> tuple[np.ndarray, np.ndarray]:
    """A load shape as ``hours`` hourly P and Q multipliers (a daily shape repeats)."""
    dss.LoadShape.Name(shape)
    p = np.asarray(dss.LoadShape.PMult(), dtype=float)
    q = np.asarray(dss.LoadShape.QMult(), dtype=float)
    interval_h = dss.LoadShape.HrInterval()
    if interval_h <= 0:  # shape given with explicit hours
        raise GridError(f"{master}: load shape '{shape}' has variable time steps; give it at hourly steps")
    if not math.isclose(interval_h, 1.0):
        per_hour = round(1.0 / interval_h)
        p = p[: len(p) // per_hour * per_hour].reshape(-1, per_hour).mean(axis=1)
        q = q[: len(q) // per_hour * per_hour].reshape(-1, per_hour).mean(axis=1) if len(q) else q
    if len(q) != len(p):
        q = p
    if len(p) == 24:
        p, q = np.tile(p, hours // 24 + 1)[:hours], np.tile(q, hours // 24 + 1)[:hours]
    if len(p) < hours:
        raise GridError(
            f"{master}: load shape '{shape}' has {len(p)} hourly points, shorter than the "
            f"{hours} hours of the year asked for"
        )
    return p[:hours], q[:hours]


def _property(dss, element: str, prop: str) -> float:
    """A numeric property of an element, as OpenDSS reports it."""
    dss.Text.Command(f"? {element}.{prop}")
    try:
        return float(dss.Text.Result())
    except ValueError:
        return 0.0


def _is_control(kind: str) -> bool:
    return kind in {
        "regcontrol",
        "capcontrol",
        "energymeter",
        "monitor",
        "fuse",
        "recloser",
        "relay",
        "swtcontrol",
        "invcontrol",
        "expcontrol",
        "storagecontroller",
        "gencontrol",
    }


def _spread_coordinates(net: pandapowerNet, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give a bus without coordinates those of the nearest bus (in branches) that has them.

    Models place primary buses but seldom the low-voltage side of each transformer or a
    switch's far end; those sit where their neighbour is.
    """
    x, y = x.copy(), y.copy()
    position = pd.Series(np.arange(len(net.bus)), index=net.bus.index)
    switches = net.switch[net.switch["et"] == "b"]
    a = position.loc[np.concatenate([net.line["from_bus"], net.trafo["hv_bus"], switches["bus"]])].to_numpy()
    b = position.loc[
        np.concatenate([net.line["to_bus"], net.trafo["lv_bus"], switches["element"]])
    ].to_numpy()
    while True:
        known = np.isfinite(x)
        grow = np.concatenate(
            [np.flatnonzero(known[a] & ~known[b]), -1 - np.flatnonzero(known[b] & ~known[a])]
        )
        if not len(grow):
            return x, y
        for k in grow:
            src, dst = (a[k], b[k]) if k >= 0 else (b[-1 - k], a[-1 - k])
            if not np.isfinite(x[dst]):
                x[dst], y[dst] = x[src], y[src]


def _reach(net: pandapowerNet, start: list[int]) -> set[int]:
    """Buses reached from ``start`` through in-service lines and closed switches."""
    edges: dict[int, list[int]] = {}
    lines = net.line[net.line["in_service"].astype(bool)]
    switches = net.switch[(net.switch["et"] == "b") & net.switch["closed"].astype(bool)]
    for a, b in zip(
        np.concatenate([lines["from_bus"], switches["bus"]]),
        np.concatenate([lines["to_bus"], switches["element"]]),
        strict=True,
    ):
        edges.setdefault(int(a), []).append(int(b))
        edges.setdefault(int(b), []).append(int(a))
    seen = set(start)
    todo = list(start)
    while todo:
        for other in edges.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def _source_impedance_pu(net: pandapowerNet) -> np.ndarray:
    """Per ``net.bus`` row: the impedance (per unit on ``net.sn_mva``) between the bus and a source.

    The smallest sum of branch impedance magnitudes over a path of in-service lines and
    transformers (series impedance; parallel branches combined) to an external grid, through
    closed bus-bus switches at no impedance: a radial feeder's short-circuit impedance (a
    little more where X/R changes along the path), an upper bound on a meshed one's. Infinite
    where no source is reached.
    """
    n = len(net.bus)
    position = pd.Series(np.arange(n), index=net.bus.index)
    switches = net.switch[(net.switch["et"] == "b") & net.switch["closed"].astype(bool)]
    fused = coo_matrix(
        (np.ones(len(switches)), (position[switches["bus"]], position[switches["element"]])), shape=(n, n)
    )
    _, node = connected_components(fused, directed=False)  # one node per group of switched buses
    line = net.line[net.line["in_service"].astype(bool)]
    trafo = net.trafo[net.trafo["in_service"].astype(bool)]
    z_line = (line["r_ohm_per_km"] + 1j * line["x_ohm_per_km"]) * line["length_km"] / line["parallel"]
    z_line = z_line * net.sn_mva / net.bus["vn_kv"].loc[line["from_bus"]].to_numpy() ** 2
    vk, vkr = trafo["vk_percent"] / 100, trafo["vkr_percent"] / 100
    z_trafo = (vkr + 1j * np.sqrt(np.maximum(vk**2 - vkr**2, 0))) * net.sn_mva / trafo["sn_mva"]
    a = node[np.concatenate([position[line["from_bus"]], position[trafo["hv_bus"]]])]
    b = node[np.concatenate([position[line["to_bus"]], position[trafo["lv_bus"]]])]
    branches = pd.DataFrame(
        {
            "a": np.minimum(a, b),
            "b": np.maximum(a, b),
            "y": 1 / np.concatenate([z_line.to_numpy(), z_trafo.to_numpy()]),
        }
    )
    pairs = branches[branches["a"] != branches["b"]].groupby(["a", "b"])["y"].sum()
    a, b = pairs.index.get_level_values(0), pairs.index.get_level_values(1)
    m = int(node.max()) + 1
    # a zero weight would be no edge at all in a sparse graph: a negligible one instead
    graph = coo_matrix((np.maximum(np.abs(1 / pairs.to_numpy()), 1e-12), (a, b)), shape=(m, m))
    in_service = net.ext_grid["in_service"].astype(bool)
    sources = np.unique(node[position[net.ext_grid.loc[in_service, "bus"]]])
    if not len(sources):
        return np.full(n, np.inf)
    return dijkstra(graph.tocsr(), directed=False, indices=sources, min_only=True)[node]


def _line_matrices(dss, phases: int) -> tuple[np.ndarray, np.ndarray]:
    """Series impedance (ohm) and one end's shunt admittance (S) matrices of the active line."""
    conductors = dss.CktElement.NumConductors()
    flat = np.asarray(dss.CktElement.YPrim())
    y = (flat[0::2] + 1j * flat[1::2]).reshape(2 * conductors, 2 * conductors)
    y_series = -y[:conductors, conductors:]
    z = np.linalg.inv(y_series)
    shunt = y[:conductors, :conductors] + y[:conductors, conductors:]
    if conductors > phases:  # explicit neutrals, grounded at both ends: Kron-reduce them out
        p, n = slice(0, phases), slice(phases, conductors)
        z = z[p, p] - z[p, n] @ np.linalg.solve(z[n, n], z[n, p])
        shunt = shunt[p, p]
    return z, shunt


def _equivalent(matrix: np.ndarray, phases: int) -> complex:
    """``Zs − (n−1)/2 · Zm``: the per-phase value of ``n`` phases carrying balanced currents."""
    self_mean = np.mean(np.diag(matrix))
    if phases == 1:
        return complex(self_mean)
    off = matrix[~np.eye(phases, dtype=bool)]
    return complex(self_mean - (phases - 1) / 2 * np.mean(off))


def _terminal_power(dss) -> tuple[float, float]:
    """P and Q (MW, Mvar) into the active element's first terminal."""
    powers = np.asarray(dss.CktElement.Powers())
    conductors = dss.CktElement.NumConductors()
    first = powers[: 2 * conductors]
    return float(first[0::2].sum()) / 1e3, float(first[1::2].sum()) / 1e3


def _zip_of(loads) -> tuple[float, float, float, float, str]:
    """Constant-impedance and constant-current shares of P and Q for the active load."""
    model = loads.Model()
    if model == 1:
        return 0.0, 0.0, 0.0, 0.0, ""
    if model == 2:
        return 1.0, 0.0, 1.0, 0.0, ""
    if model == 5:
        return 0.0, 1.0, 0.0, 1.0, ""
    if model == 3:
        return 0.0, 0.0, 1.0, 0.0, ""
    if model == 4:
        zp, ip = _exponent_mix(loads.CVRwatts())
        zq, iq = _exponent_mix(loads.CVRvars())
        return zp, ip, zq, iq, ""
    return 0.0, 0.0, 0.0, 0.0, f"load model {model} held at its solved power (constant P and Q)"


def _exponent_mix(exponent: float) -> tuple[float, float]:
    """Constant-Z and constant-I shares with the voltage sensitivity of ``P ∝ V**exponent``."""
    e = min(max(exponent, 0.0), 2.0)
    return (e - 1.0, 2.0 - e) if e > 1.0 else (0.0, e)


def _zip(v: float, z: float, i: float) -> float:
    return z * v * v + i * v + (1.0 - z - i)


def refuse_gis_layers(grid) -> None:
    """GIS layers need lon/lat: a feeder whose coordinates are a local planar map refuses them."""
    if grid.net.get("coordinates") == "planar":
        raise UsageError(
            f"{grid.name}: its bus coordinates are a local planar map (the model's x/y, not lon/lat), "
            "so GIS layers cannot be placed on it; study it without geography layers"
        )


def feeder_candidates(grid, min_kv: float = PRIMARY_KV):
    """Three-phase primary buses at or above ``min_kv`` (line-to-line kV) as connection points.

    Returns a table with the columns of ``grid.substations`` (one row per bus), so that
    ``siting.capacity.substation_capacity`` studies them as it studies substations.
    """
    import geopandas as gpd

    from siting.sources.geo import WGS84, bus_lonlat
    from siting.sources.substations import SUBSTATION_COLUMNS, voltage_level

    net = grid.net
    if "phases" not in net.bus.columns:
        raise UsageError(f"{grid.name}: not an OpenDSS feeder (its buses have no phase count)")
    bus = net.bus[
        (net.bus["phases"] >= 3) & (net.bus["vn_kv"] >= min_kv) & net.bus["in_service"].astype(bool)
    ]
    sources = set(net.ext_grid["bus"].astype(int))
    bus = bus[~bus.index.isin(list(sources))]
    coords = bus_lonlat(net).loc[bus.index]
    bus = bus[coords["lon"].notna().to_numpy()]
    coords = coords.loc[bus.index]
    if bus.empty:
        raise UsageError(f"{grid.name}: no three-phase bus at or above {min_kv:g} kV with coordinates")
    loads = net.load[net.load["in_service"].astype(bool)]
    load_mw = (loads["p_mw"] * loads["scaling"]).groupby(loads["bus"]).sum()
    load_mvar = (loads["q_mvar"] * loads["scaling"]).groupby(loads["bus"]).sum()
    table = pd.DataFrame(
        {
            "id": np.arange(len(bus)),
            "name": bus["name"].to_numpy(),
            "bus": bus.index.to_numpy(),
            "bus_name": bus["name"].to_numpy(),
            "vn_kv": bus["vn_kv"].to_numpy(),
            "voltage_level": [voltage_level(v) for v in bus["vn_kv"]],
            "load_mw": load_mw.reindex(bus.index, fill_value=0.0).to_numpy(),
            "load_mvar": load_mvar.reindex(bus.index, fill_value=0.0).to_numpy(),
            "n_transformers": 0,
            "transformer_mva": np.nan,
            "firm_transformer_mva": np.nan,
            "rule": "three-phase primary bus",
            "lon": coords["lon"].to_numpy(),
            "lat": coords["lat"].to_numpy(),
        }
    )
    geometry = gpd.points_from_xy(table["lon"], table["lat"])
    return gpd.GeoDataFrame(table[SUBSTATION_COLUMNS], geometry=geometry, crs=WGS84)
