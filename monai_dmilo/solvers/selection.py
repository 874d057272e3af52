"""Result-selection rules: which iterate a solver returns, chosen WITHOUT ground truth.

A rule sees only what a user has: the iterates ``x_k`` and their data fit to the measurement
``y`` (docs/algorithms.md, section 9). Rules work per sample, with tensor operations only (no host
syncs), so a batch gives every image the result it would get alone.

* ``final`` (default): the last iterate.
* ``lowest_data_fit``: per sample, the recorded iterate with the lowest ``mean(|A(x_k) - y|^2)``.
* ``es_wmv``: DMPlug's early stopping by windowed moving variance (ES-WMV, Wang et al., used by
  DMPlug): the variance of the last ``window`` iterates around their mean is tracked; the iterate
  at which it reached its minimum is kept, and a sample stops once that minimum has not improved
  for ``patience`` records. Solvers stop iterating when every sample of the batch has stopped.
* ``discrepancy``: Morozov's discrepancy principle: a sample stops at the first recorded iterate
  whose data fit reaches ``tau`` times the noise energy expected at the truth,
  ``mean(|A(x) - y|^2) <= tau * sigma^2 * f``, where ``f`` is the fraction of ``y``'s (real)
  entries that are measured (non-zero: masking operators leave exact zeros where nothing is
  observed). ``sigma`` is the task's noise level; ``tau`` (about 1) a setting. A sample that never
  reaches it keeps its final iterate.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import torch

__all__ = [
    "SelectionRule", "FinalIterate", "LowestDataFit", "ESWMV", "Discrepancy", "SELECTION_RULES", "build_selection",
    "discrepancy_level",
]


class SelectionRule:
    """Base rule. ``update`` is called with every recorded iterate; ``select`` gives the choice.

    Attributes:
        can_stop: whether this rule may ask the solver to stop early.
        stopped: ``(B,)`` bool, samples the rule has stopped (rules that never stop: all False).
        stopped_at: ``(B,)`` long record index where each sample stopped (``-1``: not stopped),
            or ``None`` for rules that never stop.
    """

    can_stop = False

    def __init__(self) -> None:
        self.stopped: torch.Tensor | None = None
        self.stopped_at: torch.Tensor | None = None
        self._last_index = -1

    def bind(self, y: torch.Tensor) -> None:
        """See the measurement ``y`` ``(B, ...)`` once, before the first iterate (default: unused)."""

    def update(self, x: torch.Tensor, data_fit: torch.Tensor, index: int) -> None:
        """See iterate ``x`` (B, C, H, W) with its per-sample data fit ``(B,)``, record ``index``."""
        if self.stopped is None:
            self.stopped = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        self._last_index = index

    def select(self, current: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The chosen estimate ``(B, C, H, W)`` and the record index of each sample's choice."""
        if current is None:
            return None, None
        return current, torch.full((current.shape[0],), self._last_index, dtype=torch.long, device=current.device)


class FinalIterate(SelectionRule):
    """Return the last iterate (the algorithm's own output)."""


class LowestDataFit(SelectionRule):
    """Per sample, keep the recorded iterate with the lowest data fit to ``y``."""

    def __init__(self) -> None:
        super().__init__()
        self._best_x: torch.Tensor | None = None
        self._best_fit: torch.Tensor | None = None
        self._best_index: torch.Tensor | None = None

    def update(self, x: torch.Tensor, data_fit: torch.Tensor, index: int) -> None:
        super().update(x, data_fit, index)
        if self._best_x is None:
            self._best_x = x.detach().clone()
            self._best_fit = data_fit.detach().clone()
            self._best_index = torch.full_like(data_fit, index, dtype=torch.long)
            return
        better = data_fit < self._best_fit
        self._best_fit = torch.where(better, data_fit, self._best_fit)
        self._best_index = torch.where(better, torch.full_like(self._best_index, index), self._best_index)
        self._best_x = torch.where(better.view(-1, *[1] * (x.ndim - 1)), x.detach(), self._best_x)

    def select(self, current: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self._best_x is None:
            return super().select(current)
        return self._best_x, self._best_index


class ESWMV(SelectionRule):
    """Early stopping by windowed moving variance (ES-WMV).

    Args:
        window: number of consecutive iterates whose variance is tracked.
        patience: records without a new variance minimum after which a sample stops.
    """

    can_stop = True

    def __init__(self, *, window: int = 50, patience: int = 500) -> None:
        super().__init__()
        for name, value in (("window", window), ("patience", patience)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.window = window
        self.patience = patience
        self._buffer: deque[torch.Tensor] = deque(maxlen=window)
        self._best_x: torch.Tensor | None = None
        self._best_var: torch.Tensor | None = None
        self._best_index: torch.Tensor | None = None
        self._wait: torch.Tensor | None = None

    def update(self, x: torch.Tensor, data_fit: torch.Tensor, index: int) -> None:
        super().update(x, data_fit, index)
        x = x.detach()
        batch = x.shape[0]
        if self._best_x is None:
            self._best_x = x.clone()
            self._best_var = torch.full((batch,), float("inf"), dtype=torch.float64, device=x.device)
            self._best_index = torch.full((batch,), index, dtype=torch.long, device=x.device)
            self._wait = torch.zeros(batch, dtype=torch.long, device=x.device)
            self.stopped_at = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        self._buffer.append(x.clone())
        active = ~self.stopped
        shape = (-1,) + (1,) * (x.ndim - 1)
        if len(self._buffer) < self.window:
            # Not enough iterates for a variance yet: follow the current iterate.
            self._best_x = torch.where(active.view(shape), x, self._best_x)
            self._best_index = torch.where(active, torch.full_like(self._best_index, index), self._best_index)
            return
        stack = torch.stack(tuple(self._buffer))  # (W, B, C, H, W)
        var = (stack - stack.mean(0, keepdim=True)).square().flatten(2).mean(2).mean(0).double()  # (B,)
        improved = active & (var < self._best_var)
        self._best_var = torch.where(improved, var, self._best_var)
        self._best_x = torch.where(improved.view(shape), x, self._best_x)
        self._best_index = torch.where(improved, torch.full_like(self._best_index, index), self._best_index)
        self._wait = torch.where(improved, torch.zeros_like(self._wait), self._wait + active.long())
        newly = active & (self._wait >= self.patience)
        self.stopped_at = torch.where(newly, torch.full_like(self.stopped_at, index), self.stopped_at)
        self.stopped = self.stopped | newly

    def select(self, current: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self._best_x is None:
            return super().select(current)
        return self._best_x, self._best_index


def discrepancy_level(y: torch.Tensor, sigma: float, tau: float = 1.0) -> torch.Tensor:
    """Per-sample ``tau * sigma^2 * f`` ``(B,)`` float64: the mean data fit ``mean(|A(x) - y|^2)`` that the
    truth leaves under noise ``sigma``, ``f`` the fraction of ``y``'s real entries that are measured
    (non-zero: masking operators leave exact zeros where nothing is observed)."""
    real = torch.view_as_real(y) if y.is_complex() else y
    return tau * sigma**2 * (real != 0).flatten(1).double().mean(1)


class Discrepancy(SelectionRule):
    """Stop each sample once its data fit reaches ``tau * sigma^2 * measured fraction`` (discrepancy principle).

    Args:
        sigma: the measurement noise standard deviation (the task's ``noise_sigma``; > 0).
        tau: multiple of the expected noise energy that counts as fitted (1: exactly the noise).
    """

    can_stop = True

    def __init__(self, *, sigma: float, tau: float = 1.0) -> None:
        super().__init__()
        for name, value in (("sigma", sigma), ("tau", tau)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        self.sigma, self.tau = float(sigma), float(tau)
        self._level: torch.Tensor | None = None
        self._chosen: torch.Tensor | None = None
        self._chosen_index: torch.Tensor | None = None

    def bind(self, y: torch.Tensor) -> None:
        self._level = discrepancy_level(y, self.sigma, self.tau)

    def update(self, x: torch.Tensor, data_fit: torch.Tensor, index: int) -> None:
        super().update(x, data_fit, index)
        if self._level is None:
            raise RuntimeError("the discrepancy rule was not bound to a measurement (call bind(y) first).")
        x = x.detach()
        if self._chosen is None:
            self._chosen = x.clone()
            self._chosen_index = torch.full((x.shape[0],), index, dtype=torch.long, device=x.device)
            self.stopped_at = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        active = ~self.stopped
        shape = (-1,) + (1,) * (x.ndim - 1)
        self._chosen = torch.where(active.view(shape), x, self._chosen)
        self._chosen_index = torch.where(active, torch.full_like(self._chosen_index, index), self._chosen_index)
        newly = active & (data_fit.detach().double() <= self._level.to(data_fit.device))
        self.stopped_at = torch.where(newly, torch.full_like(self.stopped_at, index), self.stopped_at)
        self.stopped = self.stopped | newly

    def select(self, current: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self._chosen is None:
            return super().select(current)
        return self._chosen, self._chosen_index


SELECTION_RULES: dict[str, Callable[..., SelectionRule]] = {
    "final": FinalIterate,
    "lowest_data_fit": LowestDataFit,
    "es_wmv": ESWMV,
    "discrepancy": Discrepancy,
}


def build_selection(rule: str | SelectionRule, **params: Any) -> SelectionRule:
    """A fresh rule from its registry name (``final``, ``lowest_data_fit``, ``es_wmv``, ``discrepancy``) and params.

    A :class:`SelectionRule` instance is returned as a fresh copy of its class with ``params``.
    """
    if isinstance(rule, SelectionRule):
        return type(rule)(**params) if params else type(rule)(**_init_params(rule))
    if rule not in SELECTION_RULES:
        raise ValueError(f"selection must be one of {sorted(SELECTION_RULES)}, got {rule!r}.")
    try:
        return SELECTION_RULES[rule](**params)
    except TypeError as err:
        raise TypeError(f"bad selection_params {params!r} for selection {rule!r}: {err}") from err


def _init_params(rule: SelectionRule) -> dict[str, Any]:
    if isinstance(rule, ESWMV):
        return {"window": rule.window, "patience": rule.patience}
    if isinstance(rule, Discrepancy):
        return {"sigma": rule.sigma, "tau": rule.tau}
    return {}
