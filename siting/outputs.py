"""Output folders that are written whole or not at all, and the manifest each one carries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from siting.errors import UsageError

PACKAGES = ("siting", "pandapower", "power-grid-model", "simbench", "numpy", "pandas", "scipy", "geopandas")


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target``, on failure it vanishes.

    The staging folder sits beside the target, so the final rename stays on one file system;
    a previous ``target`` is kept until the new one is complete.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {target}: exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; a report is for others too
    try:
        yield staging
        if target.exists():
            previous = target.with_name(f".{target.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            target.rename(previous)
            staging.rename(target)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def manifest(
    inputs: dict[str, object], settings: dict[str, object], results: dict[str, object], started: datetime
) -> dict[str, object]:
    """What produced an output folder: inputs (with file hashes), settings, versions, run time."""
    finished = datetime.now(UTC)
    return {
        "inputs": {key: _describe_input(value) for key, value in inputs.items()},
        "settings": settings,
        "results": results,
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}},
        "command": sys.argv,
        "started": started.isoformat(timespec="seconds"),
        "run_seconds": round((finished - started).total_seconds(), 2),
    }


def write_json(path: Path, data: object) -> None:
    """Strict JSON: NaN and infinities become null."""
    path.write_text(json.dumps(json_ready(data), indent=2) + "\n")


def json_ready(value: object) -> object:
    """Plain JSON data: numpy scalars as Python numbers, paths as text, NaN as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return json_ready(value.item())
    return value


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_input(value: object) -> object:
    if isinstance(value, Path) and value.is_file():
        return {"path": str(value), "sha256": sha256(value)}
    return value


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
