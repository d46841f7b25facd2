"""A grid with the user's own data: profiles, bus coordinates, substations, candidates, contingencies.

One function, ``with_own_data``, shared by the CLI (``--profiles``, ``--bus-coords``,
``--substation-list``, ``--candidates``, ``--contingencies``) and the study runner (top-level
keys); the grid passed in is not changed.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from siting.errors import UsageError
from siting.sources.contingencies import load_contingencies
from siting.sources.grid import Grid
from siting.sources.substations import find_substations
from siting.sources.user_profiles import DISPATCH_RULES

CANDIDATE_KINDS = ("substations", "buses", "feeder")


def with_own_data(
    grid: Grid,
    *,
    profiles: Path | None = None,
    time_zone: str | None = None,
    bus_coords: Path | None = None,
    substation_list: Path | None = None,
    list_mode: str = "replace",
    candidates: str = "substations",
    min_kv: float = 0.0,
    contingencies: Path | None = None,
    dispatch: str | None = None,
) -> Grid:
    """``grid`` with the files given read in (each checked, one-line errors naming the file).

    Parameters
    ----------
    profiles : Path, optional
        Load profiles (CSV or Parquet; time × load name, bus, substation or ``Bus 1001 #1 MW``);
        they replace the grid's own.
    time_zone : str, optional
        The zone of the profile times when the file gives none (e.g. ``US/Central``).
    bus_coords : Path, optional
        Bus coordinates (bus number or name, lon, lat); substations are found again after.
    substation_list : Path, optional
        Substations (name, bus, lon/lat or a point, optional firm rating) that ``list_mode``
        ``"replace"`` uses alone or ``"augment"`` adds to the automatic ones.
    candidates : str
        ``"substations"`` (default), ``"buses"``: every in-service bus at or above ``min_kv`` (kV) is
        a candidate connection point, as transmission POI studies do, or ``"feeder"``: the
        three-phase primary buses of an OpenDSS feeder.
    min_kv : float
        With ``candidates="buses"`` or ``"feeder"``: the lowest candidate voltage (kV).
    contingencies : Path, optional
        The contingencies to study (CSV, MATPOWER ``contab`` or PSS/E ``.con``, see
        ``siting.sources.contingencies``) instead of every single line and transformer outage.
    dispatch : str, optional
        How generation meets the loads of ``profiles``: ``"load-following"`` (every in-service
        generator's MW in proportion to the total load) or ``"case"`` (the case's dispatch).
        Default: load-following for a case with voltage-controlled generators, case otherwise.
    """
    if candidates not in CANDIDATE_KINDS:
        raise UsageError(
            f"--candidates {candidates}: use substations, buses or feeder (or give --substation-list)"
        )
    if list_mode not in ("replace", "augment"):
        raise UsageError(f"--substation-list-mode {list_mode}: use replace or augment")
    if dispatch is not None and dispatch not in DISPATCH_RULES:
        raise UsageError(f"--dispatch {dispatch}: use {' or '.join(DISPATCH_RULES)}")
    if dispatch is not None and profiles is None:
        raise UsageError(f"--dispatch {dispatch}: applies to your load profiles; give --profiles FILE")
    if not any((profiles, bus_coords, substation_list, contingencies)) and candidates == "substations":
        return grid
    from siting.sources.user_profiles import default_dispatch, follow_load, read_profiles
    from siting.sources.user_substations import (
        bus_candidates,
        read_bus_coords,
        read_substation_list,
        substations_from_list,
    )

    for flag, path in (
        ("--profiles", profiles),
        ("--bus-coords", bus_coords),
        ("--substation-list", substation_list),
        ("--contingencies", contingencies),
    ):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    net = copy.deepcopy(grid.net)
    substations = grid.substations
    files = list(grid.files)
    if bus_coords is not None:
        read_bus_coords(Path(bus_coords), net)
        substations = find_substations(net, grid.source)
        files.append(Path(bus_coords))
    if substation_list is not None:
        listed = read_substation_list(Path(substation_list), net)
        substations = substations_from_list(net, listed, substations, list_mode)
        files.append(Path(substation_list))
    elif candidates == "buses":
        substations = bus_candidates(net, min_kv)
    elif candidates == "feeder":
        from siting.sources.opendss import feeder_candidates

        if "opendss_states" not in net:
            raise UsageError(f"--candidates feeder: {grid.name} is not an OpenDSS feeder; use buses")
        substations = feeder_candidates(dataclasses.replace(grid, net=net), max(min_kv, 1.0))
    own_profiles, rule = grid.profiles, grid.dispatch
    if profiles is not None:
        own_profiles = read_profiles(Path(profiles), net, time_zone, substations)
        rule = dispatch or default_dispatch(net)
        if rule == "load-following":
            own_profiles = follow_load(net, own_profiles)
        files.append(Path(profiles))
    own_contingencies = grid.contingencies
    if contingencies is not None:
        own_contingencies = load_contingencies(Path(contingencies), net, grid.files)
        files.append(Path(contingencies))
    return dataclasses.replace(
        grid,
        net=net,
        substations=substations,
        profiles=own_profiles,
        files=tuple(files),
        contingencies=own_contingencies,
        dispatch=rule,
    )
