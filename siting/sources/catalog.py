"""The grids the project ships or knows, named in ``grids/catalog.toml``."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from siting.errors import UsageError

MODEL_SUFFIXES = (".json", ".m", ".mat", ".raw", ".dss")
GRIDS_DIR = Path(os.environ.get("SITING_GRIDS", Path(__file__).resolve().parents[2] / "grids"))
CATALOG_FILE = GRIDS_DIR / "catalog.toml"


def model_file(source: str | Path) -> bool:
    """Whether a grid source names a model file: a path, or a name ending in a model file suffix.

    ``simbench:``, ``pandapower:`` and catalog names are not files.
    """
    text = str(source)
    if text.startswith(("simbench:", "pandapower:")):
        return False
    return isinstance(source, Path) or text.lower().endswith(MODEL_SUFFIXES) or "/" in text


@dataclass(frozen=True)
class CatalogEntry:
    """One named grid: either another source (``source``) or a bundled TAMU ACTIVSg case."""

    name: str
    description: str
    source: str | None = None
    case: Path | None = None
    bus_coords: Path | None = None
    area_loads: Path | None = None
    area_column: str = "area"
    year: int = 2016


@dataclass(frozen=True)
class Catalog:
    """The grid catalog: the default grid's name and every entry by name."""

    default: str
    entries: dict[str, CatalogEntry]

    def get(self, name: str) -> CatalogEntry | None:
        """The entry called ``name``, or None."""
        return self.entries.get(name)


def read_catalog(path: Path = CATALOG_FILE) -> Catalog:
    """Read and check the catalog; a broken catalog is a usage error naming the key."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise UsageError(f"{path}: grid catalog not found (set SITING_GRIDS to the grids folder)") from err
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML ({err})") from err
    entries = {}
    for name, spec in raw.get("grids", {}).items():
        entries[name] = _entry(path, name, spec)
    default = raw.get("default", "")
    if default not in entries:
        raise UsageError(f"{path}: 'default' names '{default}', which is not a grid in the catalog")
    return Catalog(default=default, entries=entries)


def _entry(path: Path, name: str, spec: dict) -> CatalogEntry:
    if "description" not in spec:
        raise UsageError(f"{path}: grids.{name} needs a one-line 'description'")
    files = {}
    for key in ("case", "bus_coords", "area_loads"):
        if key in spec:
            files[key] = path.parent / spec[key]
    if "source" not in spec and "case" not in files:
        raise UsageError(f"{path}: grids.{name} needs either 'source' or 'case'")
    return CatalogEntry(
        name=name,
        description=spec["description"],
        source=spec.get("source"),
        area_column=spec.get("area_column", "area"),
        year=int(spec.get("year", 2016)),
        **files,
    )
