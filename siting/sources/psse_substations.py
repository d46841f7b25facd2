"""PSS/E v35 substation data: each substation block becomes a substation with its buses and place.

A v35 block gives the substation (IS, 'NAME', LATI, LONG, SGR), its nodes (NI, 'NAME', I,
STATUS, …: the bus I each node belongs to), its switching devices (NI, NJ, 'CKT', 'NAME', TYPE,
STATUS, …) and the node of each equipment terminal (I, NI, 'TYPE', …). siting studies the
bus-branch case the file holds; a block gives that case's buses a substation name and, where
LATI/LONG are not both zero, a place. Where a block's switch states say that a bus is split, or
that two buses are one, the bus-branch case is not the circuit the block describes, and the file
is refused naming the substation, bus and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scipy.cluster.hierarchy import DisjointSet

from siting.errors import GridError


@dataclass(frozen=True)
class RawSubstation:
    """A substation block: number IS, name, place (degrees; NaN when not given), buses, first line."""

    number: int
    name: str
    lat: float
    lon: float
    buses: tuple[int, ...]
    line: int


@dataclass
class _Block:
    number: int
    name: str
    lat: float
    lon: float
    line: int
    nodes: dict[int, tuple[int, bool, int]] = field(default_factory=dict)  # NI: (bus, in service, line)
    # NI, NJ, name, closed, line
    switches: list[tuple[int, int, str, bool, int]] = field(default_factory=list)
    terminals: list[tuple[int, int, int]] = field(default_factory=list)  # bus, NI, line


_PARTS = ("node", "switching device", "equipment terminal")


def read_substation_blocks(
    path: Path, records: list[tuple[int, list[str]]], known: set[int]
) -> tuple[list[RawSubstation], int]:
    """The substations of a v35 substation data section, checked against the bus data.

    ``records`` are the lines from the section's first record on, as (line number, fields),
    "0 /" lines included: each block is a substation record followed by three lists, each
    closed by a "0" record; a "0" record where a substation record is due closes the section.
    Returns the substations and the line number of that closing record.
    """
    blocks: list[_Block] = []
    part = None  # index into _PARTS while inside a block
    for line, fields in records:
        if fields and fields[0] == "0":
            if part is None:
                return _checked(path, blocks), line
            part = None if part == len(_PARTS) - 1 else part + 1
            continue
        if part is None:
            blocks.append(_station(path, line, fields))
            part = 0
        elif part == 0:
            bus = _integer(path, line, fields, 2, "node")
            if bus not in known:
                raise GridError(
                    f"{path}: line {line}: substation node names bus {bus}, which is not in the bus data"
                )
            status = _integer(path, line, fields, 3, "node") if len(fields) > 3 else 1
            blocks[-1].nodes[_integer(path, line, fields, 0, "node")] = (bus, status == 1, line)
        elif part == 1:
            closed = _integer(path, line, fields, 5, "switching device") == 1
            name = fields[3] if len(fields) > 3 else ""
            first, second = (_integer(path, line, fields, k, "switching device") for k in (0, 1))
            blocks[-1].switches.append((first, second, name, closed, line))
        else:
            bus, node = (_integer(path, line, fields, k, "equipment terminal") for k in (0, 1))
            blocks[-1].terminals.append((bus, node, line))
    inside = f"substation {blocks[-1].name!r}'s {_PARTS[part]}" if part is not None else "the substation"
    raise GridError(
        f"{path}: line {records[-1][0] if records else 0}: the file ends inside {inside} data "
        "(truncated?); a complete RAW case closes every section with a '0 /' line and ends with 'Q'"
    )


def _station(path: Path, line: int, fields: list[str]) -> _Block:
    if len(fields) < 4:
        raise GridError(
            f"{path}: line {line}: substation record has {len(fields)} fields, needs IS, NAME, LATI, LONG"
        )
    try:
        lat, lon = float(fields[2]), float(fields[3])
    except ValueError:
        raise GridError(f"{path}: line {line}: substation record's LATI/LONG are not numbers") from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise GridError(
            f"{path}: line {line}: substation {fields[1]!r} is at latitude {lat:g}, longitude {lon:g}; "
            "LATI must lie in −90…90 and LONG in −180…180 degrees"
        )
    if lat == 0.0 and lon == 0.0:  # PSS/E's default: no place given
        lat = lon = float("nan")
    return _Block(_integer(path, line, fields, 0, "substation"), fields[1], lat, lon, line)


def _integer(path: Path, line: int, fields: list[str], position: int, record: str) -> int:
    try:
        return int(fields[position])
    except (IndexError, ValueError):
        raise GridError(
            f"{path}: line {line}: {record} record has no integer in field {position + 1}"
        ) from None


def _checked(path: Path, blocks: list[_Block]) -> list[RawSubstation]:
    named: dict[str, int] = {}
    home: dict[int, str] = {}
    for block in blocks:
        if block.name in named:
            raise GridError(
                f"{path}: line {block.line}: substation name {block.name!r} is already used at line "
                f"{named[block.name]}; substation names must be unique"
            )
        named[block.name] = block.line
        for bus, _, line in block.nodes.values():
            if home.setdefault(bus, block.name) != block.name:
                raise GridError(
                    f"{path}: line {line}: bus {bus} has nodes in substations {home[bus]!r} "
                    f"and {block.name!r}"
                )
        _check_topology(path, block)
    located = [block for block in blocks if block.lat == block.lat]
    if located and len(located) < len(blocks):
        bare = next(block for block in blocks if block.lat != block.lat)
        raise GridError(
            f"{path}: line {bare.line}: substation {bare.name!r} has no place (LATI, LONG 0, 0) where "
            f"{len(located)} other substation(s) have one; give every substation its place, or none"
        )
    return [
        RawSubstation(
            block.number,
            block.name,
            block.lat,
            block.lon,
            tuple(sorted({bus for bus, _, _ in block.nodes.values()})),
            block.line,
        )
        for block in blocks
        if block.nodes
    ]


def _check_topology(path: Path, block: _Block) -> None:
    """The block's closed switches must join each bus's terminals into one part and no two buses."""
    where = f"{path}: line {block.line}: substation {block.name!r}"
    joined = DisjointSet([node for node, (_, live, _) in block.nodes.items() if live])
    for first, second, name, closed, line in block.switches:
        for node in (first, second):
            if node not in block.nodes:
                raise GridError(
                    f"{path}: line {line}: switching device {name!r} names node {node}, "
                    f"which is not a node of {block.name!r}"
                )
        if closed and first in joined and second in joined:
            joined.merge(first, second)
    for part in joined.subsets():
        buses = sorted({block.nodes[node][0] for node in part})
        if len(buses) > 1:
            raise GridError(
                f"{where}: its closed switching devices join buses {buses[0]} and {buses[1]} into one; "
                "siting studies the bus-branch case — merge them in the bus data or open the switches"
            )
    parts: dict[int, dict[int, int]] = {}  # bus: {part's root node: a terminal's line}
    for bus, node, line in block.terminals:
        if node not in block.nodes or block.nodes[node][0] != bus:
            raise GridError(
                f"{path}: line {line}: equipment terminal at bus {bus} names node {node}, "
                f"which is not a node of bus {bus} in {block.name!r}"
            )
        if node not in joined:
            raise GridError(
                f"{path}: line {line}: equipment terminal at bus {bus} sits at node {node}, "
                "which is out of service; siting studies the bus-branch case — take the "
                "equipment out in its own record instead"
            )
        parts.setdefault(bus, {}).setdefault(joined[node], line)
    for bus, roots in parts.items():
        if len(roots) > 1:
            lines = sorted(roots.values())
            raise GridError(
                f"{where}: its open switching devices split bus {bus} in {len(roots)} (terminals at lines "
                f"{lines[0]} and {lines[1]} are not connected); siting studies the bus-branch case — "
                "close the switches, or split the bus in the bus data"
            )
