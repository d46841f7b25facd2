"""`siting grids`: the catalog, as an aligned table."""

from __future__ import annotations

import argparse

from siting.cli.options import say


def add(commands) -> None:
    """Add this command and its flags to the ``siting`` parser's ``commands``."""
    parser = commands.add_parser("grids", help="list the grids the catalog names")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command with the parsed flags ``args``; returns the exit code."""
    from siting.sources.catalog import read_catalog

    catalog = read_catalog()
    rows = [
        (e.name + (" *" if e.name == catalog.default else ""), e.description)
        for e in catalog.entries.values()
    ]
    width = max(len("name"), *(len(name) for name, _ in rows))
    lines = [f"{'name':<{width}}  description", *(f"{name:<{width}}  {text}" for name, text in rows)]
    say("\n".join(lines))
    say("\n* default grid. Also: simbench:<code>, pandapower:<name>, or a .json/.m/.mat/.raw/.dss file.")
    return 0
