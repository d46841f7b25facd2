"""Output folders that are written whole or not at all, and the manifest each one carries."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from siting.errors import SitingError, UsageError

PACKAGES = ("siting", "pandapower", "power-grid-model", "simbench", "numpy", "pandas", "scipy", "geopandas")


MANIFEST = "manifest.json"
WRITTEN_BY = "siting"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}")


def safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name siting may create a folder by; else a UsageError.

    ``what`` names the input in the message (``"study.toml: name"``).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"{what} {name!r}: a name is a file name (letters, digits, '.', '_', '-'; "
            "at most 120), not a path"
        )
    return name


def check_output_folder(target: Path, what: str = "--out") -> Path:
    """Refuse, before any work, an output folder siting may not (re)place; return it resolved.

    siting replaces a folder only if it does not exist, is empty, or carries a manifest siting
    wrote. ``what`` names the input in messages (``--out``, a study file's ``out``).
    """
    given = Path(target)
    resolved = given.expanduser().resolve()
    if resolved.parent == resolved:
        raise UsageError(f"{what} {given}: is the root of the file system; name a folder for the results")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(f"{what} {given}: is the current folder or one of its parents; name a new folder")
    if resolved.exists() and not resolved.is_dir():
        raise UsageError(f"{what} {given}: exists and is not a folder; name a new folder")
    if resolved.is_dir() and any(resolved.iterdir()) and not written_by_siting(resolved):
        raise UsageError(
            f"{what} {given}: is a folder siting did not write (no siting manifest.json), and it is not "
            "empty; siting replaces only its own output folders: name a new folder"
        )
    parent = _existing_ancestor(resolved.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"{what} {given}: cannot write in {parent} (permission denied); choose another folder"
        )
    return resolved


def written_by_siting(folder: Path) -> bool:
    """True if ``folder`` carries a manifest siting wrote."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    versions = record.get("versions")
    return record.get("written_by") == WRITTEN_BY or (isinstance(versions, dict) and "siting" in versions)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.siting-staging-"


def remove_stale_staging(target: Path) -> None:
    """Remove staging folders for ``target`` left by a siting run that was killed.

    Only folders named by this module's pattern (target name, the writer's process id, a random
    part) whose process no longer runs are removed; nothing else is touched.
    """
    parent = target.parent
    if not parent.is_dir():
        return
    prefix = _staging_prefix(target)
    for candidate in parent.iterdir():
        if not candidate.name.startswith(prefix) or not candidate.is_dir() or candidate.is_symlink():
            continue
        pid_text = candidate.name.removeprefix(prefix).split("-", 1)[0]
        if not pid_text.isdigit() or _running(int(pid_text)):
            continue
        if candidate.name.endswith("-previous") and not target.exists():
            candidate.rename(target)  # killed between the two renames: the previous result comes back
        else:
            shutil.rmtree(candidate, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_folder(target: Path, what: str = "--out") -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target``, on failure it vanishes.

    ``target`` is checked first (``check_output_folder``). The staging folder sits beside the
    target, so the swap stays on one file system; it is exchanged with a previous target in one
    atomic step where the system allows (Linux ``renameat2``), so a kill at any moment leaves
    either the previous folder or the new one, and a later run removes what a killed run left.
    """
    target = check_output_folder(target, what)
    remove_stale_staging(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(target)}{os.getpid()}-", dir=target.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; a report is for others too
    except OSError as err:
        raise UsageError(f"{what} {target}: cannot create the output folder ({err.strerror})") from err
    try:
        yield staging
        _replace(staging, target, what)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(staging: Path, target: Path, what: str) -> None:
    try:
        if not target.exists():
            staging.rename(target)
        elif _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)  # now holds the previous result
        else:
            previous = staging.with_name(f"{staging.name}-previous")
            target.rename(previous)
            staging.rename(target)
            shutil.rmtree(previous, ignore_errors=True)
    except OSError as err:
        raise SitingError(f"{what} {target}: could not put the results in place ({err.strerror})") from err


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    if done == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(second))


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
        "written_by": WRITTEN_BY,
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
    """The SHA-256 of the file at ``path``, as hex."""
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


def write_output(
    out: Path,
    write: Callable[[Path], list[str]],
    *,
    inputs: dict[str, object],
    settings: dict[str, object],
    results: dict[str, object],
    started: datetime,
    what: str = "--out",
) -> list[str]:
    """Write a stage's folder ``out`` whole or not at all: ``write(folder)`` then the manifest.

    Returns the files ``write`` made (names relative to ``out``).
    """
    with atomic_folder(out, what) as folder:
        files = write(folder)
        write_json(folder / MANIFEST, manifest(inputs, settings, {**results, "files": files}, started))
    return files
