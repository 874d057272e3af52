"""Argument checks shared by the package: one clear ``ValueError`` naming the argument, value and expectation."""
from __future__ import annotations

from typing import Any

__all__ = ["check_positive"]


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a number (an int with ``integer``) ``> 0`` (``>= 0`` with
    ``allow_zero``); booleans are refused."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < 0 or (value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a {kind} {bound}, got {value!r}.")
