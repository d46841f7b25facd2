"""Named contingencies a planner defines: each one or more branches taken out together.

Three formats, each giving ``{name: ((table, index), …)}`` with ``table`` "line" or "trafo"
and ``index`` the element's index in the net:

- CSV: ``contingency`` (the name; rows with the same name are one contingency) and either
  ``element`` (a line or transformer name) or ``from_bus``, ``to_bus`` and optionally
  ``circuit`` (the n-th parallel branch between the two buses, 1 by default);
- MATPOWER change tables (``contab_*.m``): rows ``label prob CT_TBRCH row BR_STATUS CT_REP 0``,
  the row counting branches of the MATPOWER case the net was read from;
- PSS/E ``.con``: ``CONTINGENCY name`` … ``OPEN BRANCH FROM BUS i TO BUS j [CIRCUIT c]`` … ``END``.

Bus numbers are the case's own (PSS/E ``I``, MATPOWER ``BUS_I``), mapped to the net's buses by
``siting.sources.grid.bus_index_of_number``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandapower.auxiliary import pandapowerNet

from siting.errors import UsageError

Outage = tuple[str, int]


@dataclass(frozen=True)
class Contingencies:
    """A planner's named contingencies, each one or more branches taken out together.

    Parameters
    ----------
    names : tuple of str
        The contingency names, as outputs show them.
    outages : tuple of tuple of (str, int)
        Per contingency, the ``("line" | "trafo", index)`` elements it opens.
    file : str
        The file they were read from.
    """

    names: tuple[str, ...]
    outages: tuple[tuple[Outage, ...], ...]
    file: str = ""

    def record(self) -> dict[str, object]:
        """The set as plain data, for manifests."""
        return {
            "file": self.file,
            "contingencies": len(self.names),
            "multi_element": sum(len(outage) > 1 for outage in self.outages),
        }


def load_contingencies(path: Path, net: pandapowerNet, files: tuple[Path, ...] = ()) -> Contingencies:
    """The contingencies of ``path`` for a grid read from ``files``.

    A MATPOWER change table counts the branch rows of its case: the case among ``files``.
    """
    case = next((f for f in files if f.suffix.lower() == ".m"), None)
    found = read_contingencies(Path(path), net, case=case)
    return Contingencies(tuple(found), tuple(found.values()), str(path))


_CON_BRANCH = re.compile(
    r"^\s*OPEN\s+BRANCH\s+FROM\s+BUS\s+(\d+)\s+TO\s+BUS\s+(\d+)(?:\s+CIRCUIT\s+'?\s*(\w+)\s*'?)?",
    re.IGNORECASE,
)
_CONTAB_ROW = re.compile(r"^\s*(\d+)\s+[\d.eE+-]+\s+CT_TBRCH\s+(\d+)\s+BR_STATUS\s+CT_REP\s+0\s*;?")


def read_contingencies(
    path: Path, net: pandapowerNet, case: Path | None = None
) -> dict[str, tuple[Outage, ...]]:
    """The file's contingencies by name (module notes); bad or unknown elements refused by line.

    ``case`` is the MATPOWER case a change table (``contab``) refers to by branch row.
    """
    if not path.exists():
        raise UsageError(f"{path}: contingency file not found")
    suffix = path.suffix.lower()
    branches = _Branches(net)
    if suffix == ".csv":
        found = _csv(path, net, branches)
    elif suffix == ".m":
        found = _contab(path, branches, case)
    elif suffix == ".con":
        found = _con(path, branches)
    else:
        raise UsageError(
            f"{path}: unknown contingency file type (use .csv, a MATPOWER contab .m, or PSS/E .con)"
        )
    if not found:
        raise UsageError(f"{path}: no contingencies in the file")
    return found


class _Branches:
    """The net's lines and transformers by end-bus numbers and n-th parallel (lines first, as MATPOWER)."""

    def __init__(self, net: pandapowerNet) -> None:
        from siting.sources.grid import bus_index_of_number  # grid imports this module

        rows = []
        for table, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
            a, b = (net[table][end].to_numpy(int) for end in ends)
            rows.append(pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "table": table,
                                      "index": net[table].index.to_numpy(int)}))  # fmt: skip
        frame = pd.concat(rows, ignore_index=True)
        frame["k"] = frame.groupby(["a", "b"]).cumcount() + 1
        self.by_ends = pd.Series(
            list(zip(frame["table"], frame["index"], strict=True)),
            index=pd.MultiIndex.from_frame(frame[["a", "b", "k"]]),
        )
        self.bus_of_number = bus_index_of_number(net)

    def find(self, i: int, j: int, circuit: int, where: str) -> Outage:
        """Branch ``circuit`` between the buses numbered ``i`` and ``j``; a UsageError if none."""
        a, b = (int(self.bus_of_number.get(number, -1)) for number in (i, j))
        key = (min(a, b), max(a, b), circuit)
        if key not in self.by_ends.index:
            raise UsageError(f"{where}: no branch {circuit} between buses {i} and {j} in the model")
        table, index = self.by_ends.loc[key]
        return str(table), int(index)


def _circuit(text: str | None) -> int:
    """The n-th parallel branch: PSS/E circuit ids are usually '1', '2', …; others count as 1."""
    return int(text) if text and str(text).strip().isdigit() else 1


def _csv(path: Path, net: pandapowerNet, branches: _Branches) -> dict[str, tuple[Outage, ...]]:
    table = pd.read_csv(path, dtype=str)
    if "contingency" not in table:
        raise UsageError(f"{path}: needs a 'contingency' column naming each contingency")
    names: dict[str, tuple[str, int]] = {}
    for table_name in ("line", "trafo"):
        for index, name in net[table_name]["name"].astype(str).items():
            names.setdefault(name, (table_name, int(index)))
    found: dict[str, list[Outage]] = {}
    for row, record in table.iterrows():
        where = f"{path}: row {row + 2}"
        name = str(record["contingency"]).strip()
        if not name or name == "nan":
            raise UsageError(f"{where}: a contingency without a name")
        element = str(record.get("element", "") or "").strip()
        if element and element != "nan":
            if element not in names:
                raise UsageError(
                    f"{where}: contingency '{name}' names '{element}', no line or transformer of the model"
                )
            outage = names[element]
        elif {"from_bus", "to_bus"} <= set(table.columns):
            try:
                i, j = int(record["from_bus"]), int(record["to_bus"])
            except (TypeError, ValueError):
                raise UsageError(f"{where}: contingency '{name}' has no element and no end buses") from None
            outage = branches.find(i, j, _circuit(record.get("circuit")), where)
        else:
            raise UsageError(f"{where}: give 'element' or 'from_bus' and 'to_bus'")
        found.setdefault(name, []).append(outage)
    return {name: tuple(outages) for name, outages in found.items()}


def _contab(path: Path, branches: _Branches, case: Path | None) -> dict[str, tuple[Outage, ...]]:
    if case is None:
        raise UsageError(f"{path}: a MATPOWER change table counts branches of its case; give that case too")
    ends = _case_branch_ends(case)
    found: dict[str, list[Outage]] = {}
    seen: dict[tuple[int, int], int] = {}
    key_of_row = []
    for i, j in ends:
        pair = (min(i, j), max(i, j))
        seen[pair] = seen.get(pair, 0) + 1
        key_of_row.append((pair[0], pair[1], seen[pair]))
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        match = _CONTAB_ROW.match(line)
        if not match:
            continue
        label, row = match.group(1), int(match.group(2))
        if not 1 <= row <= len(key_of_row):
            raise UsageError(
                f"{path}: line {number}: branch row {row} is not in {case.name} ({len(key_of_row)} rows)"
            )
        a, b, k = key_of_row[row - 1]
        found.setdefault(f"contab {label}", []).append(branches.find(a, b, k, f"{path}: line {number}"))
    return {name: tuple(outages) for name, outages in found.items()}


def _case_branch_ends(case: Path) -> list[tuple[int, int]]:
    """From- and to-bus numbers of each row of a MATPOWER case's ``mpc.branch`` matrix."""
    text = case.read_text(errors="replace")
    start = text.find("mpc.branch = [")
    if start < 0:
        raise UsageError(f"{case}: no mpc.branch matrix")
    block = text[start : text.index("];", start)].splitlines()[1:]
    rows = [line.split("%")[0].replace(";", " ").split() for line in block]
    return [(int(float(r[0])), int(float(r[1]))) for r in rows if len(r) >= 2]


def _con(path: Path, branches: _Branches) -> dict[str, tuple[Outage, ...]]:
    found: dict[str, list[Outage]] = {}
    current = None
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.split("/")[0].strip()
        if not text:
            continue
        word = text.split()[0].upper()
        if word == "CONTINGENCY":
            current = text.split(None, 1)[1].strip() if len(text.split()) > 1 else f"contingency {number}"
            found[current] = []
        elif word == "END":
            if current is not None and not found[current]:
                raise UsageError(f"{path}: line {number}: contingency '{current}' opens nothing")
            current = None
        elif current is not None:
            match = _CON_BRANCH.match(text)
            if not match:
                raise UsageError(
                    f"{path}: line {number}: only OPEN BRANCH FROM BUS … TO BUS … [CIRCUIT …] is read"
                )
            i, j = int(match.group(1)), int(match.group(2))
            found[current].append(branches.find(i, j, _circuit(match.group(3)), f"{path}: line {number}"))
    return {name: tuple(outages) for name, outages in found.items()}
