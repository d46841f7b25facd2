"""Sweeps: many studies (grids × scenarios) run as Dask tasks, gathered into one table.

A sweep file (TOML, see data/sweeps/README.md) names grids, study keys shared by every case
(``[base]``) and either the keys to vary (``[vary]``, cross product) or an explicit list of
cases (``[[case]]``). Each case is one task that loads its grid and runs the whole study on a
worker; inputs travel as text (grid source, study dict), never as pickled networks. A grid
with more than ``chunk_substations`` substations gets its hosting capacity split over
substation chunks, one task each, merged before the rest of the study runs.

Workers return each case's output files as bytes, so only the client writes ``--out`` (whole,
via ``atomic_folder``) and workers need no shared output folder. A case that fails on its
inputs (a grid that does not load, a base case that does not converge) is recorded with its
error; other exceptions are retried by Dask (``retries``), as are tasks lost with a worker.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import numbers
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd

from siting.errors import SitingError, UsageError
from siting.progress import Progress, silent
from siting.sources.catalog import model_file
from siting.study import OWN_FILES, read_toml, resolve_path

if TYPE_CHECKING:
    from distributed import Client, Future, as_completed

    from siting.capacity import CapacityStudy
    from siting.sources.grid import Grid

SWEEP_KEYS = {"name": str, "grids": list, "out": str, "chunk_substations": int, "retries": int}
TOP_KEYS = ("sweep", "base", "vary", "case")
RESERVED = ("name", "grid", "out")  # study keys the sweep itself sets for every case
MAX_NAME = 120  # characters of a case folder name; longer names end in a hash instead
STATUS_OK, STATUS_FAILED = "ok", "failed"
LEAD_COLUMNS = ["case", "grid", "status", "error"]


@dataclass(frozen=True)
class Case:
    """One study of the sweep: its folder name, its full study dict, and what sets it apart."""

    name: str
    study: dict  # a study dict (study_from_dict's keys) with name and grid set
    params: dict[str, object]  # dotted study key → value, the keys the sweep varies


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its cases in a fixed order and how they are scheduled."""

    name: str
    source: str  # the sweep file, for messages and the manifest
    cases: tuple[Case, ...]
    chunk_substations: int = 200  # split hosting capacity above this many substations (0: never)
    retries: int = 2  # Dask re-runs of a task that raised something other than a SitingError
    out: Path | None = None  # output folder the file asks for (relative to the file)


# ---------------------------------------------------------------- reading and expanding


def read_sweep(path: Path) -> Sweep:
    """A sweep file; relative paths in it (demand, layers) are relative to the file."""
    path = Path(path)
    data = read_toml(path, "sweep")
    return sweep_from_dict(data, source=str(path), base=path.parent, default_name=path.stem)


def sweep_from_dict(
    data: dict, source: str = "sweep", base: Path | None = None, default_name: str = "sweep"
) -> Sweep:
    """Validate a sweep's tables and expand them into cases; errors name ``source`` and the key."""
    for key in data:
        if key not in TOP_KEYS:
            raise UsageError(f"{source}: unknown key '{key}' (known: [sweep], [base], [vary], [[case]])")
    settings = _table(data, "sweep", source)
    _check_sweep_keys(settings, source)
    if "vary" in data and "case" in data:
        raise UsageError(f"{source}: give either [vary] (a cross product) or [[case]] (a list), not both")
    grids = settings.get("grids", [])
    if not all(isinstance(g, str) and g for g in grids):
        raise UsageError(f"{source}: 'sweep.grids' must be a list of grid sources (text)")
    base_study = _table(data, "base", source)
    for key in RESERVED:
        if key in base_study:
            raise UsageError(f"{source}: 'base.{key}' is set by the sweep ({_reserved_hint(key)})")
    scenarios: Iterable[tuple[str, dict, str | None]]
    if "case" in data:
        scenarios = _explicit(data["case"], grids, source)
    else:
        if not grids:
            raise UsageError(f"{source}: 'sweep.grids' is missing or empty; name at least one grid")
        scenarios = _cross(_table(data, "vary", source), grids, source)
    folder = base or Path.cwd()
    cases = tuple(_case(base_study, grid, params, name, folder, source) for grid, params, name in scenarios)
    _check_names(cases, source)
    _check_studies(cases, source)
    return Sweep(
        name=settings.get("name", default_name),
        source=source,
        cases=cases,
        chunk_substations=settings.get("chunk_substations", 200),
        retries=settings.get("retries", 2),
        out=resolve_path(folder, settings["out"]) if "out" in settings else None,
    )


def _table(data: dict, key: str, source: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{source}: [{key}] must be a table")
    return value


def _check_sweep_keys(settings: dict, source: str) -> None:
    for key, value in settings.items():
        kind = SWEEP_KEYS.get(key)
        if kind is None:
            raise UsageError(f"{source}: unknown key 'sweep.{key}' (known: {', '.join(SWEEP_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, kind):
            wanted = {str: "text", list: "a list", int: "a whole number"}[kind]
            raise UsageError(f"{source}: 'sweep.{key}' must be {wanted}, not {value!r}")
    if settings.get("chunk_substations", 0) < 0 or settings.get("retries", 0) < 0:
        key = "chunk_substations" if settings.get("chunk_substations", 0) < 0 else "retries"
        raise UsageError(f"{source}: 'sweep.{key}' must be 0 or more")
    if "name" in settings and not _is_safe(settings["name"]):
        raise UsageError(f"{source}: 'sweep.name' {settings['name']!r}: use letters, digits, '.', '_', '-'")


def _reserved_hint(key: str) -> str:
    return {
        "name": "each case is named after its grid and values",
        "grid": "list grids in [sweep] grids",
        "out": "outputs go to --out DIR/cases/<case>",
    }[key]


def _cross(vary: dict, grids: list[str], source: str) -> Iterator[tuple[str, dict, str | None]]:
    """Every grid × every combination of the varied values, grids outermost, keys in file order."""
    varied = _flatten(vary)
    choices: list[list] = []
    for key, values in varied.items():
        if key.split(".")[0] in RESERVED:
            raise UsageError(f"{source}: 'vary.{key}' is set by the sweep ({_reserved_hint(key)})")
        if not isinstance(values, list) or not values:
            raise UsageError(f"{source}: 'vary.{key}' must be a non-empty list of values")
        choices.append(values)
    for grid in grids:
        for combination in itertools.product(*choices):
            yield grid, dict(zip(varied, combination, strict=True)), None


def _explicit(entries: object, grids: list[str], source: str) -> list[tuple[str, dict, str | None]]:
    """Each [[case]] on its own grid, or on every grid of ``sweep.grids`` when it names none."""
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{source}: [[case]] must be a non-empty list of tables")
    scenarios = []
    for number, entry in enumerate(entries, start=1):
        entry = dict(entry)
        name = entry.pop("name", None)
        grid = entry.pop("grid", None)
        if "out" in entry:
            raise UsageError(
                f"{source}: 'case.out' (case {number}) is set by the sweep ({_reserved_hint('out')})"
            )
        if name is not None and (not isinstance(name, str) or not _is_safe(name)):
            raise UsageError(
                f"{source}: 'case.name' {name!r} (case {number}): use letters, digits, '.', '_', '-'"
            )
        if grid is not None and not isinstance(grid, str):
            raise UsageError(f"{source}: 'case.grid' (case {number}) must be text")
        if grid is None and not grids:
            raise UsageError(f"{source}: case {number} has no 'grid' and 'sweep.grids' is empty")
        params = _flatten(entry)
        if grid is not None:
            scenarios.append((grid, params, name))
        else:
            scenarios += [(g, params, None if name is None else f"{_slug(g)}__{name}") for g in grids]
    return scenarios


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    """Nested tables to dotted keys: TOML's ``a.b = 1`` and ``"a.b" = 1`` mean the same here.

    ``selection.layers`` stays one value: it is a table of its own (kind → file).
    """
    flat: dict[str, object] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted != "selection.layers":
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _case(
    base_study: dict, grid: str, params: dict[str, object], name: str | None, folder: Path, source: str
) -> Case:
    study = json.loads(json.dumps(base_study))  # a deep copy of plain TOML data
    for dotted, value in params.items():
        *tables, key = dotted.split(".")
        node = study
        for table in tables:
            node = node.setdefault(table, {})
            if not isinstance(node, dict):
                raise UsageError(f"{source}: '{dotted}': '{table}' is a value in [base], not a table")
        node[key] = value
    name = name or _case_name(grid, params)
    study.update(name=name, grid=_grid_source(grid))
    _resolve_paths(study, folder)
    return Case(name=name, study=study, params=params)


def _case_name(grid: str, params: dict[str, object]) -> str:
    """``<grid>__<key>-<value>__…``: the last part of each dotted key, unless two share it."""
    last = [key.rsplit(".", 1)[-1] for key in params]
    labels = [k if last.count(k) == 1 else dotted for k, dotted in zip(last, params, strict=True)]
    parts = [
        _slug(grid),
        *(f"{label}-{_value_slug(v)}" for label, v in zip(labels, params.values(), strict=True)),
    ]
    name = "__".join(parts)
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 12]}__{digest}"
    return name


def _slug(text: str) -> str:
    """A grid source as a folder-name part: the code or name without its prefix or folders."""
    if model_file(text):
        text = Path(text).stem
    text = text.split(":", 1)[1] if text.startswith(("simbench:", "pandapower:")) else text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "grid"


def _value_slug(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(_value_slug(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}={_value_slug(v)}" for k, v in value.items())
    return _slug(str(value))


def _is_safe(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name)) and len(name) <= MAX_NAME


def _grid_source(grid: str) -> str:
    """Model files as absolute paths, so workers started elsewhere find them (shared file system)."""
    return str(Path(grid).expanduser().resolve()) if model_file(grid) else grid


def _resolve_paths(study: dict, base: Path) -> None:
    """Demand, layer and own-data files made absolute, so that workers in another folder find them.

    In the sweep file they are relative to it, as a study file's are to the study file.
    """
    workload = study.get("workload")
    if isinstance(workload, dict) and isinstance(workload.get("demand"), str):
        workload["demand"] = str(resolve_path(base, workload["demand"]))
    for key in OWN_FILES:
        if isinstance(study.get(key), str):
            study[key] = str(resolve_path(base, study[key]))
    selection = study.get("selection")
    if isinstance(selection, dict) and isinstance(selection.get("layers"), dict):
        selection["layers"] = {
            k: str(resolve_path(base, v)) if isinstance(v, str) else v for k, v in selection["layers"].items()
        }


def _check_names(cases: tuple[Case, ...], source: str) -> None:
    seen: dict[str, int] = {}
    for case in cases:
        seen[case.name] = seen.get(case.name, 0) + 1
    twice = sorted(name for name, count in seen.items() if count > 1)
    if twice:
        raise UsageError(
            f"{source}: case name(s) {', '.join(twice[:3])} occur more than once; "
            'give each [[case]] a name of its own (name = "...")'
        )


def _check_studies(cases: tuple[Case, ...], source: str) -> None:
    """Every case must be a valid study before any task starts (no grid is loaded here)."""
    from siting.study import study_from_dict

    for case in cases:
        study_from_dict(case.study, source=f"{source} (case {case.name})")


# ---------------------------------------------------------------- one case, in this process


def run_case(study: dict, out: str | Path, capacity: CapacityStudy | None = None) -> dict[str, object]:
    """Run one case's study into the folder ``out``; return its row of sweep.csv.

    The row has the status, error, the study's headline numbers and ``run_seconds`` (wall time, s).

    A ``SitingError`` (a grid that does not load, a base case that does not converge, no site
    possible) is the case's result, recorded as failed; anything else is raised (and retried).
    """
    from siting.study import run_study, study_from_dict

    started = time.perf_counter()
    try:
        headline = run_study(
            study_from_dict(study, source=f"case {study['name']}"), Path(out), capacity=capacity
        )
    except SitingError as err:
        return _failed(err, time.perf_counter() - started)
    return {"status": STATUS_OK, "error": "", **headline, "run_seconds": _seconds(started)}


def _failed(error: BaseException | str, seconds: float = 0.0) -> dict[str, object]:
    return {"status": STATUS_FAILED, "error": _one_line(error), "run_seconds": round(seconds, 2)}


def _one_line(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error).strip().splitlines()
    if isinstance(error, SitingError) and text:  # written for people already
        return text[0][:300]
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def _seconds(started: float) -> float:
    return round(time.perf_counter() - started, 2)


# ---------------------------------------------------------------- tasks (run on workers)


@dataclass(frozen=True)
class _Failure:
    """A task's SitingError, returned rather than raised: retrying would fail the same way."""

    error: str


@dataclass(frozen=True)
class _Part:
    """Hosting capacity of one chunk of substations and the seconds it took."""

    capacity: CapacityStudy
    seconds: float
    outages: tuple[str, ...]  # every outage's name in the grid's order, to order merged skips


def _case_task(study: dict, parts: tuple[_Part | _Failure, ...] = ()) -> dict[str, object]:
    """Run a case in a scratch folder; return its row and its files (relative path → bytes)."""
    failure = next((p for p in parts if isinstance(p, _Failure)), None)
    if failure is not None:
        return {"row": _failed(failure.error), "files": {}}
    done = [p for p in parts if isinstance(p, _Part)]  # all of them: none failed
    capacity = merge_capacity([p.capacity for p in done], done[0].outages) if done else None
    with tempfile.TemporaryDirectory(prefix="siting-sweep-") as scratch:
        out = Path(scratch) / "case"
        row = run_case(study, out, capacity)
        row["run_seconds"] = round(cast(float, row["run_seconds"]) + sum(p.seconds for p in done), 2)
        files = {
            path.relative_to(out).as_posix(): path.read_bytes()
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }
    return {"row": row, "files": files}


def _substation_ids(study_data: dict) -> list[int] | _Failure:
    """The substation ids of a case's grid (with its own data) in table order.

    They decide whether the case's capacity is chunked.
    """
    from siting.study import study_from_dict, study_grid

    try:
        study = study_from_dict(study_data, source=f"case {study_data['name']}")
        return [int(i) for i in study_grid(study).substations["id"]]
    except SitingError as err:
        return _Failure(_one_line(err))


def _capacity_task(study_data: dict, ids: list[int]) -> _Part | _Failure:
    """Hosting capacity of substations ``ids`` only, with the study's capacity settings."""
    from siting.study import study_capacity, study_from_dict, study_grid

    started = time.perf_counter()
    try:
        study = study_from_dict(study_data, source=f"case {study_data['name']}")
        grid = study_grid(study)
        capacity = study_capacity(study, grid, substations=ids)
    except SitingError as err:
        return _Failure(_one_line(err))
    return _Part(capacity, _seconds(started), outage_names(grid))


def outage_names(grid: Grid) -> tuple[str, ...]:
    """Every outage the firm criterion studies, named as ``skipped_outages`` names them, in order."""
    from siting.capacity import studied_outages

    _, names, left_out = studied_outages(grid.net, grid.contingencies)
    return (*names, *left_out["outage"])


def merge_capacity(parts: list[CapacityStudy], outages: tuple[str, ...] = ()) -> CapacityStudy:
    """One grid's hosting capacity from its substation chunks, as one run over all would give.

    Rows and headroom columns are concatenated in chunk order; what does not depend on the
    substations (operating point, base violations, load margin) is the first chunk's. Skipped
    outages are the union (with ``n1_hops`` each chunk sees only the outages near its own
    substations), in the order of ``outages`` (``outage_names``) when given. Power flows are
    summed.
    """
    import dataclasses

    first = parts[0]
    skipped = [p.skipped_outages for p in parts if len(p.skipped_outages)]
    if skipped:
        union = pd.concat(skipped, ignore_index=True).drop_duplicates("outage", ignore_index=True)
        if outages:
            rank = {name: position for position, name in enumerate(outages)}
            union = union.sort_values("outage", key=lambda c: c.map(rank), kind="stable", ignore_index=True)
    return dataclasses.replace(
        first,
        table=pd.concat([p.table for p in parts], ignore_index=True),
        headroom=None if first.headroom is None else pd.concat([p.headroom for p in parts], axis=1),
        skipped_outages=union if skipped else first.skipped_outages,
        flows=sum(p.flows for p in parts),
    )


def _grid_key(study: dict) -> str:
    """What makes two cases' grids the same: the source and the user's own data read onto it."""
    from siting.study import OWN_VALUES

    own = {k: study.get(k) for k in (*OWN_FILES, *OWN_VALUES) if k in study}
    return json.dumps([study["grid"], own], sort_keys=True, default=str)


def chunks(ids: list[int], size: int) -> list[list[int]]:
    """``ids`` in consecutive chunks of at most ``size``.

    One chunk if ``size`` is 0 or more than there are ids.
    """
    if size <= 0 or len(ids) <= size:
        return [list(ids)]
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


# ---------------------------------------------------------------- the sweep, on a cluster


def run_sweep(
    sweep: Sweep,
    out: Path,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Run every case as Dask tasks and write ``out`` whole.

    ``out`` gets sweep.csv (one row per case, in the sweep's order), cases/<case>/ (each case's
    study folder) and manifest.json.

    Parameters
    ----------
    sweep : Sweep
        The cases, e.g. from ``read_sweep``.
    out : Path
        The sweep's output folder.
    scheduler : str, optional
        A Dask scheduler address (tcp://host:port); without one a LocalCluster runs here and
        stops after.
    workers : int, optional
        Worker processes of the local cluster (default: one per core, one thread each).
    progress : callable, optional
        Called with a line of text at the start and as each case finishes.

    Returns
    -------
    DataFrame
        The sweep.csv table.

    Raises
    ------
    UsageError
        The scheduler cannot be reached, fewer than one worker, or ``out`` may not be written.
    SitingError
        Every case failed; ``out`` is left as it was and the error names the first failures.
    """
    from siting.outputs import atomic_folder, check_output_folder, manifest, write_json

    say = progress or silent
    started = datetime.now(UTC)
    check_output_folder(out)
    with _connect(scheduler, workers) as (client, where):
        say(f"{len(sweep.cases)} cases on {where}")
        with atomic_folder(Path(out)) as folder:
            rows = _Runner(client, sweep, folder, say).run()
            table = sweep_table(sweep, rows)
            if not (table["status"] == STATUS_OK).any():
                failures = "; ".join(f"{r.case}: {r.error}" for r in table.head(3).itertuples())
                raise SitingError(f"{sweep.source}: every case failed, {out} is left as it was ({failures})")
            table.to_csv(folder / "sweep.csv", index=False)
            write_json(
                folder / "manifest.json",
                manifest(
                    inputs={"sweep": Path(sweep.source) if Path(sweep.source).is_file() else sweep.source},
                    settings={
                        "name": sweep.name,
                        "cluster": where,
                        "chunk_substations": sweep.chunk_substations,
                        "retries": sweep.retries,
                        "cases": {case.name: case.study for case in sweep.cases},
                    },
                    results={
                        "cases": len(table),
                        "ok": int((table["status"] == STATUS_OK).sum()),
                        "failed": int((table["status"] == STATUS_FAILED).sum()),
                    },
                    started=started,
                ),
            )
    return table


CONNECT_TIMEOUT = "30s"


@contextmanager
def _connect(scheduler: str | None, workers: int | None) -> Iterator[tuple[Client, str]]:
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise UsageError(f"--scheduler {scheduler}: cannot connect ({_one_line(err)})") from err
        with client:
            yield client, f"the Dask cluster at {scheduler}"
        return
    if workers is not None and workers < 1:
        raise UsageError(f"workers {workers}: a local cluster needs at least one worker")
    n = workers or _cores()
    # Processes with one task each: the power flows hold the GIL in places, and a worker that
    # crashes takes only its own task down. The batch engine's threads are shared out among
    # them (SITING_THREADS) so that n workers do not each start a thread per core. Dask's own
    # INFO chatter is silenced.
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            env={"SITING_THREADS": str(max(1, _cores() // n))},
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, f"a local cluster of {n} worker process(es)"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Runner:
    """Submits tasks as their inputs are known and writes each case's files as it finishes."""

    def __init__(self, client: Client, sweep: Sweep, folder: Path, say: Progress) -> None:
        self.client = client
        self.sweep = sweep
        self.folder = folder
        self.say = say
        self.token = uuid.uuid4().hex[:8]  # keys unique to this run on a shared scheduler
        self.rows: dict[str, dict[str, object]] = {}
        self.roles: dict[str, tuple[str, object]] = {}  # task key → ("grid", cases) or ("case", case)
        self.parts: dict[str, tuple[Future, int]] = {}  # capacity chunk key → future, cases waiting
        self.waiting: dict[str, list[str]] = {}  # case name → its capacity chunk keys
        self.pending: as_completed | None = None  # made in run()

    def run(self) -> dict[str, dict[str, object]]:
        from distributed import as_completed

        self.pending = as_completed()
        if self.sweep.chunk_substations > 0:
            by_grid: dict[str, list[Case]] = {}
            for case in self.sweep.cases:
                by_grid.setdefault(_grid_key(case.study), []).append(case)
            for number, cases in enumerate(by_grid.values()):
                key = f"grid-{number}-{_slug(cases[0].study['grid'])}-{self.token}"
                self._submit(key, ("grid", cases), _substation_ids, cases[0].study)
        else:
            for case in self.sweep.cases:
                self._submit_case(case)
        for future in self.pending:
            role, what = self.roles.pop(future.key)
            if future.status == "finished":
                result = future.result()
                error = None
            else:
                result = None
                error = "cancelled" if future.cancelled() else _one_line(future.exception())
            future.release()
            if role == "grid":
                self._grid_known(cast(list[Case], what), result, error)
            else:
                self._case_done(cast(Case, what), result, error)
        return self.rows

    def _submit(
        self, key: str, role: tuple[str, object], function: Callable[..., object], *args: object
    ) -> Future:
        if self.pending is None:
            raise RuntimeError("tasks are submitted by run()")
        future = self.client.submit(function, *args, key=key, retries=self.sweep.retries, pure=False)
        self.roles[key] = role
        self.pending.add(future)
        return future

    def _submit_case(self, case: Case, parts: tuple = ()) -> None:
        self._submit(f"case-{case.name}-{self.token}", ("case", case), _case_task, case.study, parts)

    def _grid_known(self, cases: list[Case], ids: list[int] | _Failure | None, error: str | None) -> None:
        if isinstance(ids, _Failure) or error is not None or ids is None:
            reason = error or (ids.error if isinstance(ids, _Failure) else "no result")
            for case in cases:
                self._record(case, _failed(reason), {})
            return
        groups = chunks(ids, self.sweep.chunk_substations)
        for case in cases:
            if len(groups) == 1:
                self._submit_case(case)
                continue
            keys = [self._capacity_part(case, group) for group in groups]
            self.waiting[case.name] = keys
            self._submit_case(case, tuple(self.parts[k][0] for k in keys))

    def _capacity_part(self, case: Case, ids: list[int]) -> str:
        """The key of a chunk's capacity task.

        Cases with the same grid and capacity settings share it, so it runs once.
        """
        inputs = {"grid": _grid_key(case.study), **{k: case.study.get(k) for k in ("limits", "capacity")}}
        digest = hashlib.sha256(json.dumps([inputs, ids], sort_keys=True).encode()).hexdigest()[:16]
        key = f"capacity-{digest}-{self.token}"
        if key in self.parts:
            future, users = self.parts[key]
            self.parts[key] = (future, users + 1)
        else:
            future = self.client.submit(
                _capacity_task, case.study, ids, key=key, retries=self.sweep.retries, pure=False
            )
            self.parts[key] = (future, 1)
        return key

    def _case_done(self, case: Case, result: dict | None, error: str | None) -> None:
        for key in self.waiting.pop(case.name, []):
            future, users = self.parts[key]
            if users == 1:
                del self.parts[key]  # dropping the last reference frees the chunk's result
            else:
                self.parts[key] = (future, users - 1)
        if result is None:
            self._record(case, _failed(error or "no result"), {})
        else:
            self._record(case, result["row"], result["files"])

    def _record(self, case: Case, row: dict[str, object], files: dict[str, bytes]) -> None:
        if files:
            target = self.folder / "cases" / case.name
            for relative, content in files.items():
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        self.rows[case.name] = row
        done = f"[{len(self.rows)}/{len(self.sweep.cases)}] {case.name}"
        if row["status"] == STATUS_OK:
            self.say(f"{done}: ok ({row['run_seconds']:.1f} s)")
        else:
            self.say(f"{done}: FAILED: {row['error']}")


def sweep_table(sweep: Sweep, rows: dict[str, dict[str, object]]) -> pd.DataFrame:
    """One row per case, in the sweep's order.

    Columns: case, grid, status, error, the varied keys, the headline numbers, run_seconds.
    """
    records = []
    for case in sweep.cases:
        row = dict(rows.get(case.name) or _failed("not run"))
        seconds = row.pop("run_seconds", math.nan)
        for key in ("study", "grid"):  # the case name and the grid's own name: already in the row
            row.pop(key, None)
        params = {key: _cell(value) for key, value in case.params.items()}
        records.append(
            {"case": case.name, "grid": case.study["grid"], **params, **row, "run_seconds": seconds}
        )
    table = pd.DataFrame.from_records(records)
    for column in table.columns:  # counts stay whole numbers beside failed cases' blanks
        values = [r[column] for r in records if r.get(column) is not None]
        if values and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")
    first = [*LEAD_COLUMNS, *dict.fromkeys(k for c in sweep.cases for k in c.params)]
    return table[first + [c for c in table.columns if c not in first]]


def _cell(value: object) -> object:
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


SHOWN = ("sites", "total_mw", "unused_share_at_peak")


def sweep_text(table: pd.DataFrame) -> str:
    """The sweep table in short: each case's status, sites and MW, per policy served share and violations.

    Failed cases follow, each with its error.
    """
    served = [c for c in table.columns if c.endswith("_served_share")]
    policy = [c for s in served for c in (s, s.removesuffix("_served_share") + "_violations")]
    shown = table[["case", "status", *[c for c in (*SHOWN, *policy) if c in table.columns]]]
    lines = [shown.round(3).astype(object).where(shown.notna(), "–").to_string(index=False)]
    failed = table[table["status"] == STATUS_FAILED]
    lines += [f"{row.case}: {row.error}" for row in failed.itertuples()]
    ok = int((table["status"] == STATUS_OK).sum())
    lines.append(f"{ok} of {len(table)} cases ok" + (f", {len(failed)} failed" if len(failed) else ""))
    return "\n".join(lines)
