"""Range checks shared by the examples: a value out of range is a 400 naming the parameter."""

from __future__ import annotations

import rxsse


def within(value: float, low: float, high: float, *, parameter: str, unit: str = "") -> float:
    """Return ``value`` if ``low <= value <= high``, else raise a 400 naming ``parameter``."""
    if not low <= value <= high:
        suffix = f" {unit}" if unit else ""
        raise rxsse.bad_request(
            f"{parameter} must be between {low} and {high}{suffix}", parameter=parameter
        )
    return value
