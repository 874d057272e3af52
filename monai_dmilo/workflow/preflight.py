"""Checks the bundle workflows run on every item before any work starts or anything is written.

A run that would fail on its 500th image fails before the first one instead, with one line naming
the file: :func:`check_images` loads (and, for ``evaluate``, simulates) every pending item through
the workflow's own preprocessing; :func:`check_measurements` also checks that every inference item
names the files its operator reads and that its measurement is one the operator can produce.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import torch

from monai_dmilo.workflow.errors import root_cause, user_error

__all__ = ["check_images", "check_measurements"]

logger = logging.getLogger(__name__)

_READ_ERRORS = (OSError, ValueError, RuntimeError, TypeError, KeyError, EOFError)


def _describe(item: Mapping[str, Any]) -> str:
    path = item.get("image") or item.get("y") or ""
    name = item.get("name", "?")
    slice_index = item.get("slice")
    where = f" (slice {slice_index})" if slice_index is not None and int(slice_index) >= 0 else ""
    return f"{path!s}{where}" if path else f"item {name!r}"


def _load(item: Mapping[str, Any], transform: Callable[[dict], dict], keys: Sequence[str]) -> dict:
    try:
        out = transform(dict(item))
    except _READ_ERRORS as err:
        cause = user_error(err) or root_cause(err)
        path = str(item.get("image") or item.get("y") or "")
        if path and path in str(cause):        # the loader's own message names the file already
            raise ValueError(str(cause)) from None
        raise ValueError(f"{_describe(item)} could not be read: {type(cause).__name__}: {cause}") from None
    for key in keys:
        if key in out and not torch.isfinite(torch.as_tensor(out[key])).all():
            raise ValueError(f"{key} of {_describe(item)} holds NaN or infinite values; expected finite numbers.")
    return out


def check_images(items: Sequence[Mapping[str, Any]], transform: Callable[[dict], dict], *,
                 keys: Sequence[str] = ("image", "y")) -> int:
    """Run ``transform`` (the workflow's preprocessing) on every item; refuse unreadable or non-finite data.

    Returns:
        the number of items checked.

    Raises:
        ValueError: naming the first file that cannot be read, or whose image or simulated
            measurement holds NaN/inf.
    """
    for item in items:
        _load(item, transform, keys)
    if items:
        logger.info("checked %d images: all readable and finite", len(items))
    return len(items)


def check_measurements(
    items: Sequence[Mapping[str, Any]],
    transform: Callable[[dict], dict],
    *,
    task: Mapping[str, Any],
    image_shape: Sequence[int],
    measurement_key: str = "y",
) -> int:
    """Check every inference item against the task's operator before any work.

    Each item must name ``y`` and every file in the task's ``param_keys``; the files must load and
    be finite; and ``A(x)`` for an image of the prior's shape must have ``y``'s shape and be complex
    exactly when ``y`` is (complex k-space given to a real operator is refused).

    Raises:
        ValueError: one line naming the item, the key or file, and what was expected.
    """
    from monai_dmilo import operators

    param_keys = list(task["param_keys"])
    expected_cache: dict[tuple, torch.Tensor] = {}
    for item in items:
        missing = [k for k in (measurement_key, *param_keys) if not item.get(k)]
        if missing:
            raise ValueError(
                f"datalist item {item.get('name')!r} has no {missing} entry; the {task['name']!r} task's "
                f"{task['operator']!r} operator reads {[measurement_key, *param_keys]} (file paths): name them in "
                "a --datalist_file (a --dataset_dir of measurement images carries only y)."
            )
        out = _load(item, transform, (measurement_key, *param_keys))
        y = torch.as_tensor(out[measurement_key])
        params = {k: torch.as_tensor(out[k])[None] for k in param_keys}
        signature = tuple((k, tuple(v.shape)) for k, v in params.items())
        if signature not in expected_cache:
            try:
                op = operators.build(task["operator"], **task["operator_params"], **params)
                expected_cache[signature] = op(torch.zeros(1, *image_shape))[0]
            except (ValueError, TypeError, RuntimeError) as err:
                raise ValueError(
                    f"the operator parameters of item {item.get('name')!r} do not fit the {task['operator']!r} "
                    f"operator for {tuple(image_shape)} images: {root_cause(err)}"
                ) from None
        expected = expected_cache[signature]
        if y.is_complex() != expected.is_complex():
            kind = "complex" if y.is_complex() else "real"
            raise ValueError(
                f"measurement {item[measurement_key]!s} is {kind}, but the {task['name']!r} task's "
                f"{task['operator']!r} operator gives {'complex' if expected.is_complex() else 'real'} "
                "measurements: were they made for another task (--task)?"
            )
        if tuple(y.shape) != tuple(expected.shape):
            raise ValueError(
                f"measurement {item[measurement_key]!s} has shape {tuple(y.shape)}, but the {task['operator']!r} "
                f"operator gives {tuple(expected.shape)} for the prior's {tuple(image_shape)} images."
            )
    if items:
        logger.info("checked %d measurements against the %r operator", len(items), task["operator"])
    return len(items)
