"""Errors meant for people: one line naming the input and what to do."""

from __future__ import annotations

import math


class SitingError(Exception):
    """A failed run: the inputs were understood but the work could not be done (exit 1)."""

    exit_code = 1


class UsageError(SitingError):
    """The command was asked for something that does not exist or cannot be used (exit 2)."""

    exit_code = 2


class GridError(SitingError):
    """A network model that cannot be used as it is: bad data, no geodata, no substations."""


class DataError(SitingError):
    """An input file that exists but cannot be used as it is: bad content, wrong grid (exit 1)."""


class SettingError(UsageError):
    """A setting given a value it cannot take, in the caller's terms: ``field``, ``value``, ``rule``.

    Raised by the settings classes with their field names; the CLI says the flag, a study file
    the key.
    """

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field}={value!r}: {rule}")

    def named(self, name: str, value: object | None = None) -> UsageError:
        """The same error, naming the input as the caller knows it (a flag, a file and key)."""
        shown = self.value if value is None else value
        if isinstance(shown, str) and not shown.isprintable():  # a line break would split the message
            shown = repr(shown)
        return UsageError(f"{name} {shown}: {self.rule}")


def check_number(
    field: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    whole: bool = False,
) -> None:
    """Refuse ``value`` unless it is a finite real number (a whole one if ``whole``) in bounds.

    Raises
    ------
    SettingError
        Naming ``field``, the value and the rule, e.g. ``cap_mw=inf: must be a finite number > 0``.
    """
    bounds = [
        f"{sign} {bound:g}"
        for sign, bound in ((">", above), ("≥", at_least), ("≤", at_most), ("<", below))
        if bound is not None
    ]
    kind = "a whole number" if whole else "a finite number"
    rule = f"must be {kind}" + (f" {' and '.join(bounds)}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(field, value, rule)
    if whole and not float(value).is_integer():
        raise SettingError(field, value, rule)
    number = float(value)
    if not math.isfinite(number):
        raise SettingError(field, value, rule)
    if (
        (above is not None and not number > above)
        or (at_least is not None and not number >= at_least)
        or (at_most is not None and not number <= at_most)
        or (below is not None and not number < below)
    ):
        raise SettingError(field, value, rule)
