"""Argument checks shared by the package: one clear ``ValueError`` naming the argument, value and expectation."""
from __future__ import annotations

from typing import Any

__all__ = ["check_positive", "as_bool"]


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a number (an int with ``integer``) ``> 0`` (``>= 0`` with
    ``allow_zero``); booleans are refused."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < 0 or (value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a {kind} {bound}, got {value!r}.")


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def as_bool(name: str, value: Any) -> bool:
    """``value`` as a bool: a bool, 0 / 1, or a string ``true``/``false`` (also yes/no, on/off, 1/0,
    any case) as a command line gives it (``--overwrite false`` arrives as the string ``"false"``,
    which Python would take as true). Anything else is a ``ValueError`` naming the argument."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}.")
