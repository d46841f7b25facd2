"""Errors meant for people: one line naming the input and what to do."""

from __future__ import annotations


class SitingError(Exception):
    """A failed run: the inputs were understood but the work could not be done (exit 1)."""

    exit_code = 1


class UsageError(SitingError):
    """The command was asked for something that does not exist or cannot be used (exit 2)."""

    exit_code = 2


class GridError(SitingError):
    """A network model that cannot be used as it is: bad data, no geodata, no substations."""
