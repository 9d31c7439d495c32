"""The checks of option values that are counts or seconds: one rule and one message for every
option of rxsse, made when the option is given (at import or ``setup``), never per request."""

from __future__ import annotations

from typing import overload


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def positive_seconds(value: object) -> bool:
    """Whether ``value`` is a usable positive, finite number of seconds."""
    return is_number(value) and 0 < value < float("inf")  # type: ignore[operator]


@overload
def check_seconds(name: str, value: float) -> float: ...
@overload
def check_seconds(name: str, value: float | None, *, optional: bool) -> float | None: ...
def check_seconds(name: str, value: float | None, *, optional: bool = False) -> float | None:
    """``value``, a positive number of seconds (or None, when ``optional``).

    Raises:
        ValueError: naming the option and the value it was given.
    """
    if (value is None and optional) or positive_seconds(value):
        return value
    also = " or None" if optional else ""
    raise ValueError(f"{name} must be a positive number of seconds{also}, not {value!r}")


@overload
def check_count(name: str, value: int, *, minimum: int = 1) -> int: ...
@overload
def check_count(
    name: str, value: int | None, *, minimum: int = 1, optional: bool
) -> int | None: ...
def check_count(
    name: str, value: int | None, *, minimum: int = 1, optional: bool = False
) -> int | None:
    """``value``, an int of at least ``minimum`` (1: a positive int; or None, when ``optional``).

    Raises:
        ValueError: naming the option and the value it was given.
    """
    if value is None and optional:
        return None
    if not isinstance(value, bool) and isinstance(value, int) and value >= minimum:
        return value
    kind = {0: "a non-negative int", 1: "a positive int"}.get(
        minimum, f"an int of at least {minimum}"
    )
    also = " or None" if optional else ""
    raise ValueError(f"{name} must be {kind}{also}, not {value!r}")
