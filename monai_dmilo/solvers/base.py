"""What every solver shares: the output record, per-sample losses, seeding, freezing, the run loop.

A solver sees only ``(y, A, prior)`` and returns an estimate ``x``; it never sees ground truth.

Batches: a batch of ``B`` measurements is ``B`` independent problems. Every loss term is a mean
(or a sum, where docs/algorithms.md says ``||.||^2``) over ONE sample's elements, and the batch loss is
the sum of these per-sample losses, so the gradient with respect to sample ``b``'s variables does
not depend on any other sample. Adam acts element-wise, so one image never changes another's result.

NFE convention (docs/algorithms.md, section 8): ``nfe`` counts network evaluations per image where a
forward pass followed by a backward pass through it counts as ONE evaluation (the paper's
"K * N * M forward+backward passes plus K * N forward passes"). ``nfe_forward`` counts every
network forward actually run (checkpointing recomputes count again) and ``nfe_backward`` the
backward passes through the network. All three are per image: a batched call counts once.
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..operators.base import real_dtype_of, skip_nan_checks
from monai_dmilo.seeds import per_sample_seeds
from monai_dmilo.checks import as_bool
from monai_dmilo.priors.stepwise import Prior
from .numerics import to_device_without_wait
from .selection import SelectionRule, build_selection

__all__ = [
    "SOLVERS",
    "RENAMED_SOLVERS",
    "current_solver_name",
    "register",
    "SolverOutput",
    "Solver",
    "RunState",
    "initial_noise",
    "frozen",
]

logger = logging.getLogger(__name__)

#: the annotations of every solver's ``_run``
Tensor = torch.Tensor
Operator = Callable[[torch.Tensor], torch.Tensor]  # A, called on (B, C, H, W); None in blind deblurring
Rngs = list[torch.Generator]  # one CPU torch.Generator per sample


@dataclass
class SolverOutput:
    """The result of :meth:`Solver.solve`.

    Attributes:
        x: the estimate, ``(B, C, H, W)``, in [-1, 1].
        history: per-record, per-sample curves, each ``(num_records, B)`` (e.g. ``"data_fit"``:
            the mean squared residual ``mean(|A(x_k) - y|^2)`` of each recorded iterate).
        nfe: network evaluations per image (forward+backward counts as one; see module docstring).
        wall_time: seconds spent in ``solve``.
        kernel: the estimated blur kernel ``(B, k, k)`` in blind mode, else ``None``.
        nfe_forward: network forward passes per image actually run.
        nfe_backward: backward passes through the network per image.
        interrupted: ``True`` when a ``KeyboardInterrupt`` ended the solve early.
        selected: ``(B,)`` index of the record each sample's ``x`` comes from (``-1``: the
            initial estimate, before any record).
        stopped_at: ``(B,)`` record index where an early-stopping rule stopped each sample
            (``-1``: never stopped), or ``None`` for rules that never stop.
        seeds: the per-sample seeds of this solve's random draws (``z_0`` unless ``z_init`` was
            given, kernel logits, DPS noise).
        extras: solver-specific state (e.g. DMILO's ``latents`` and ``deviations``).
    """

    x: torch.Tensor
    history: dict[str, torch.Tensor]
    nfe: int
    wall_time: float
    kernel: torch.Tensor | None = None
    nfe_forward: int = 0
    nfe_backward: int = 0
    interrupted: bool = False
    selected: torch.Tensor | None = None
    stopped_at: torch.Tensor | None = None
    seeds: list[int] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def initial_noise(
    y: torch.Tensor,
    image_shape: Sequence[int] | None,
    seeds: Sequence[int],
    z_init: torch.Tensor | None,
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """``z_0`` ``(B, C, H, W)`` on y's device, and one CPU generator per sample for later draws.

    ``z_0[b]`` is drawn on CPU from ``torch.Generator().manual_seed(seeds[b])`` (so the same seed
    gives the same noise alone or in a batch), then moved to y's device and real dtype. When
    ``z_init`` is given it is used as is; the generators are still advanced past a z_0-sized
    draw, so later draws (kernel logits, DPS noise) are those of the seeded path.
    """
    batch = y.shape[0]
    rngs = [torch.Generator().manual_seed(int(s)) for s in seeds]
    dtype = real_dtype_of(y)  # images are real: a complex y gives its real part's dtype
    if z_init is not None:
        if not isinstance(z_init, torch.Tensor):
            raise TypeError(f"z_init must be a tensor, got {type(z_init).__name__}.")
        if z_init.ndim != 4 or z_init.shape[0] != batch:
            raise ValueError(
                f"z_init must have shape (B={batch}, C, H, W), got {tuple(z_init.shape)}."
            )
        for g in rngs:  # advance each stream past z_0 so later draws match the seeded path
            torch.randn(tuple(z_init.shape[1:]), generator=g, dtype=torch.float32)
        return z_init.detach().to(device=y.device, dtype=dtype).clone(), rngs
    if image_shape is None:
        raise ValueError(
            "prior.image_shape is None: pass z_init, or build the prior with image_shape=(C, H, W)."
        )
    z0 = torch.stack([torch.randn(tuple(image_shape), generator=g, dtype=torch.float32) for g in rngs])
    return to_device_without_wait(z0, y.device, dtype), rngs


@contextlib.contextmanager
def frozen(*modules: Any) -> Iterator[None]:
    """Turn ``requires_grad`` off on every parameter of ``modules`` and restore it afterwards.

    The prior (and a learned operator) must stay frozen: only latents, deviations and a kernel
    get gradients, and nothing piles up in the network's ``.grad``.
    """
    params = [p for m in modules if isinstance(m, nn.Module) for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class RunState:
    """Mutable state of one solve: the current estimate, records, counters, selection, stopping.

    Algorithms update it as they go so that an interrupt can return what was reached.
    """

    def __init__(
        self,
        y: torch.Tensor,
        selection: SelectionRule,
        *,
        progress_total: int | None,
        progress: bool,
        callback: Callable[[dict], Any] | None,
        desc: str,
    ) -> None:
        self.y = y
        self.selection = selection
        self.x: torch.Tensor | None = None
        self.records: dict[str, list[torch.Tensor]] = {}
        self.num_records = 0
        self.nfe = 0
        self.nfe_forward = 0
        self.nfe_backward = 0
        self.kernel: torch.Tensor | None = None
        self.extras: dict[str, Any] = {}
        self.callback = callback
        #: the per-sample seeds of the solve (set by :meth:`Solver.solve`), e.g. for a nested solve
        self.seeds: list[int] = []
        self.start = time.perf_counter()
        self._bar = None
        self._reported = 0
        self._images: Mapping[str, torch.Tensor] = {}
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=progress_total, desc=desc, leave=False)

    def count(self, *, forward: int = 0, backward: int = 0, nfe: int = 0) -> None:
        """Count network passes (per image)."""
        self.nfe_forward += forward
        self.nfe_backward += backward
        self.nfe += nfe

    def record(self, x: torch.Tensor, values: Mapping[str, torch.Tensor], *, report: bool = True,
               position: int | None = None, images: Mapping[str, torch.Tensor] | None = None) -> None:
        """Record one iterate ``x`` (B, C, H, W) with its per-sample values (each ``(B,)``).

        ``values`` must include ``"data_fit"``. The selection rule sees the iterate. Progress and
        callback fire only when ``report`` (they may synchronise with the device); the bar moves
        to ``position`` (e.g. the steps done) when given, else counts records. ``images``: other
        image-shaped iterates of this record that only the callback sees (e.g. DMILO-PGD's ``x_prime``).
        """
        self.x = x
        self._images = images or {}
        for key, v in values.items():
            self.records.setdefault(key, []).append(v.detach())
        self.selection.update(x, values["data_fit"].detach(), self.num_records)
        self.num_records += 1
        if report:
            self.report(values, position=position)

    def report(self, values: Mapping[str, torch.Tensor], *, position: int | None = None) -> None:
        if self._bar is not None:
            done = self.num_records if position is None else position
            self._bar.update(done - self._reported)
            self._reported = done
            self._bar.set_postfix(data_fit=f"{float(values['data_fit'].detach().mean()):.3e}")
        if self.callback is not None:
            self.callback(
                {
                    "record": self.num_records - 1,
                    "nfe": self.nfe,
                    "elapsed": time.perf_counter() - self.start,
                    "x": self.x.detach(),
                    **{k: v.detach() for k, v in values.items()},
                    **{k: v.detach() for k, v in self._images.items()},
                }
            )

    def all_stopped(self) -> bool:
        """Whether the selection rule has stopped every sample (one host sync)."""
        return self.selection.can_stop and bool(self.selection.stopped.all())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


#: what each operator capability is, for the refusal message of a solver that needs it
CAPABILITIES = {
    "svd": "a singular value decomposition",
    "proximal": "a proximal (data-consistency) step",
    "pseudo_inverse": "a pseudo-inverse",
}


#: registry name -> solver class, filled by :func:`register`
SOLVERS: dict[str, type["Solver"]] = {}
#: former solver names -> their registry names (accepted with a deprecation warning)
RENAMED_SOLVERS: dict[str, str] = {"adjoint": "pseudo_inverse"}


def current_solver_name(name: str) -> str:
    """``name``, or its new registry name if it is a former one (with a ``FutureWarning``)."""
    if name in RENAMED_SOLVERS and name not in SOLVERS:
        new = RENAMED_SOLVERS[name]
        warnings.warn(f"solver {name!r} is now called {new!r}; the old name will be removed.", FutureWarning,
                      stacklevel=3)
        logger.warning("solver %r is now called %r; the old name will be removed", name, new)
        return new
    return name


def register(name: str) -> Callable[[type["Solver"]], type["Solver"]]:
    """Class decorator: register a :class:`Solver` subclass as ``name`` (also its ``name`` attribute).

    Adding a solver is one module in ``monai_dmilo/solvers/`` (imported by the package, which
    registers it) plus its presets in ``configs/solvers/``::

        @register("my_solver")
        class MySolver(Solver):
            tuning_knob = "lam"             # what the quality benchmark tunes on validation
            def _run(self, state, y, operator, prior, z0, rngs): ...
    """
    def decorate(cls: type["Solver"]) -> type["Solver"]:
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise TypeError(f"@register({name!r}) decorates Solver subclasses, got {cls!r}.")
        if name in SOLVERS and SOLVERS[name] is not cls:
            raise ValueError(f"solver name {name!r} is already registered by {SOLVERS[name].__qualname__}.")
        cls.name = name
        SOLVERS[name] = cls
        return cls

    return decorate


@dataclass(frozen=True)
class PriorRangeMap:
    """The exact change of variables for a prior trained on images in ``[lo, hi]`` instead of [-1, 1].

    Solvers and workflows work on images ``x`` in [-1, 1]; the prior generates ``u = (x - c) / s``
    in ``[lo, hi]`` (``s = 2 / (hi - lo)``, ``c = -1 - s lo``). A linear ``A`` gives
    ``A x = s A u + c A(1)``, so the solver fits ``u`` to ``y_u = (y - c A(1)) / s`` and returns
    ``x = clip(s u + c, -1, 1)``; the noise of ``y_u`` is the noise of ``y`` divided by ``s``.
    ``A(1)``: the operator applied to an image of ones (blind deblurring, with no operator: 1,
    what a normalised blur kernel gives). Records in ``history`` (data fits) are in the prior's units.
    """

    scale: float
    offset: float

    def measurement(self, y: torch.Tensor, operator: Any, image_shape: Sequence[int] | None) -> torch.Tensor:
        if operator is None or image_shape is None:
            ones = torch.ones((), dtype=y.dtype, device=y.device)
        else:
            with torch.no_grad():
                ones = operator(torch.ones((y.shape[0], *image_shape), device=y.device))
        return (y - self.offset * ones) / self.scale

    def image(self, u: torch.Tensor) -> torch.Tensor:
        return (self.scale * u + self.offset).clamp(-1.0, 1.0)


def prior_range_map(prior: Any) -> PriorRangeMap | None:
    """The :class:`PriorRangeMap` of a prior whose ``intensity_range`` is not [-1, 1], else None."""
    lo, hi = getattr(prior, "intensity_range", (-1.0, 1.0))
    if (float(lo), float(hi)) == (-1.0, 1.0):
        return None
    scale = 2.0 / (float(hi) - float(lo))
    return PriorRangeMap(scale=scale, offset=-1.0 - scale * float(lo))


class Solver:
    """Base class: ``solve(y, operator, prior, *, seed=None, z_init=None) -> SolverOutput``.

    Subclasses implement :meth:`_run`, updating the :class:`RunState` (estimate, records, NFE),
    and are registered with :func:`register`.

    Args (shared, keyword-only):
        selection: result-selection rule name (``"final"``, ``"lowest_data_fit"``, ``"es_wmv"``;
            see :mod:`monai_dmilo.solvers.selection`) or a :class:`SelectionRule` instance.
        selection_params: keyword arguments of the rule (e.g. ``window``, ``patience``).
        progress: show a tqdm bar (off by default).
        callback: called with a record dict (``record``, ``nfe``, ``elapsed``, ``x`` the current
            iterate ``(B, C, H, W)``, ``data_fit``, ...; DMILO-PGD adds ``x_prime``, its gradient
            iterate X') after each outer iteration (each ``report_every`` iterations for DMPlug and
            the stepwise solvers); treat the tensors as read-only. Raising
            ``KeyboardInterrupt`` from it ends the solve cleanly.
    """

    name = "solver"
    #: the hyperparameter the quality benchmark tunes on validation (None: nothing to tune) ...
    tuning_knob: str | None = None
    #: ... by these factors around the preset's value (empty: the knob is searched another way)
    tuning_factors: tuple[float, ...] = (0.3, 1.0, 3.0)
    #: whether the benchmark may grow the grid past a winning edge (False for a bounded knob)
    tuning_extendable: bool = True
    #: whether the solver runs on a latent prior (:class:`~monai_dmilo.priors.latent.LatentDDIM`);
    #: the others refuse one in a line
    latent_priors: bool = False

    def __init__(
        self,
        *,
        selection: str | SelectionRule = "final",
        selection_params: Mapping[str, Any] | None = None,
        progress: bool = False,
        callback: Callable[[dict], Any] | None = None,
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
        self.selection = selection
        self.selection_params = dict(selection_params or {})
        build_selection(selection, **self.selection_params)  # validate early
        self.progress = as_bool("progress", progress)
        self.callback = callback

    # -- to implement -------------------------------------------------------------------------
    def _progress_total(self, prior: Prior) -> int | None:
        """The progress bar's length for a solve with this ``prior`` (None: unknown)."""
        return None

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        """Solve ``y = A(x)`` for the batch, updating ``state``; ``z0`` ``(B, C, H, W)`` the initial noise, ``rngs``
        one CPU ``torch.Generator`` per sample for any further draws."""
        raise NotImplementedError  # pragma: no cover - abstract

    #: the operator method this solver needs beyond ``A(x)`` (``"svd"``, ``"proximal"``, ``"pseudo_inverse"``)
    requires: str | None = None

    def _check_operator(self, operator: Any) -> None:
        if not callable(operator):
            raise TypeError(f"operator must be callable (x -> A(x)), got {type(operator).__name__}.")
        if self.requires and not callable(getattr(operator, self.requires, None)):
            raise TypeError(
                f"{self.name} needs an operator with {CAPABILITIES[self.requires]}, i.e. a linear operator with an "
                f"adjoint; {type(operator).__name__} has none. Use dps, dmilo or dmilo_pgd for it."
            )

    # -- the shared driver --------------------------------------------------------------------
    def solve(
        self,
        y: torch.Tensor,
        operator: Callable[[torch.Tensor], torch.Tensor] | None,
        prior: Any = None,
        *,
        seed: int | Sequence[int] | torch.Tensor | None = None,
        z_init: torch.Tensor | None = None,
        generator: Any = None,
    ) -> SolverOutput:
        """Reconstruct ``x`` from the measurement ``y``.

        Args:
            y: the measurement, ``(B, ...)`` (image-shaped or not, real or complex).
            operator: the forward model, called as ``operator(x)`` on ``(B, C, H, W)`` images.
            prior: a :class:`~monai_dmilo.priors.stepwise.StepwiseDDIM` (``step``, ``num_steps``,
                ``image_shape``; ``denoise`` for DPS).
            seed: an int, or one int per sample, for ``z_0`` (and other draws); ``None``: drawn
                from torch's global RNG.
            z_init: the initial noise ``z_0`` ``(B, C, H, W)``; drawn from ``seed`` when absent.
            generator: the former name of ``prior`` (accepted with a ``FutureWarning``).

        Returns:
            A :class:`SolverOutput`; ``x`` is ``(B, C, H, W)`` in the images' real dtype.
        """
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}.")
        if y.ndim < 2:
            raise ValueError(f"y must be batched (B, ...), got shape {tuple(y.shape)}.")
        if generator is not None:
            if prior is not None:
                raise TypeError("solve() got both prior and generator (its former name); pass prior only.")
            warnings.warn("solve(..., generator=) is now solve(..., prior=).", FutureWarning, stacklevel=2)
            prior = generator
        if not hasattr(prior, "step") or not hasattr(prior, "num_steps"):
            raise TypeError(
                f"prior must be a StepwiseDDIM-like prior with step(z, i) and num_steps, "
                f"got {type(prior).__name__}."
            )
        if getattr(prior, "is_latent", False) and not self.latent_priors:
            supported = sorted(name for name, cls in SOLVERS.items() if cls.latent_priors)
            raise ValueError(f"solver {self.name!r} needs an image-space denoiser at every step and does not run on "
                             f"a latent prior; these do: {supported}.")
        self._check_operator(operator)
        if torch.isnan(y).any():
            raise ValueError(f"y contains NaN values (shape {tuple(y.shape)}); expected finite numbers.")
        seeds = per_sample_seeds(seed, y.shape[0])
        with torch.inference_mode(False), torch.enable_grad(), frozen(prior, operator):
            y = y.detach().clone()  # a normal tensor even if y was made under inference_mode
            to_range = prior_range_map(prior)
            if to_range is not None:  # the prior's images are s * x + c of ours: solve for them
                y = to_range.measurement(y, operator, getattr(prior, "image_shape", None))
            shape = getattr(prior, "latent_shape", None) or getattr(prior, "image_shape", None)
            z0, rngs = initial_noise(y, shape, seeds, z_init)
            selection = build_selection(self.selection, **self.selection_params)
            selection.bind(y)
            state = RunState(
                y,
                selection,
                progress_total=self._progress_total(prior),
                progress=self.progress,
                callback=self.callback,
                desc=self.name,
            )
            state.seeds = seeds
            interrupted = False
            try:
                with skip_nan_checks():  # y was checked above; no host syncs in the loops
                    self._run(state, y, operator, prior, z0, rngs)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                state.close()
            x, selected = state.selection.select(state.x)
            if x is None:  # interrupted before any estimate existed: nothing to return
                raise KeyboardInterrupt
            if to_range is not None:
                x = to_range.image(x)
            if y.device.type == "cuda":
                torch.cuda.synchronize(y.device)
            diverged = ~torch.isfinite(x.detach()).flatten(1).all(1)
            if bool(diverged.any()):
                logger.warning(
                    "%s: the estimate of sample(s) %s is not finite (the iterations diverged); lower the solver's "
                    "step size (e.g. lr, langevin_lr, lr_x) for this prior and task.",
                    self.name, diverged.nonzero().flatten().tolist(),
                )
        history = {
            k: torch.stack(v) if v else torch.empty(0, y.shape[0], device=y.device)
            for k, v in state.records.items()
        }
        history.setdefault("data_fit", torch.empty(0, y.shape[0], device=y.device))
        return SolverOutput(
            x=x.detach(),
            history=history,
            nfe=state.nfe,
            wall_time=time.perf_counter() - state.start,
            kernel=None if state.kernel is None else state.kernel.detach(),
            nfe_forward=state.nfe_forward,
            nfe_backward=state.nfe_backward,
            interrupted=interrupted,
            selected=selected,
            stopped_at=state.selection.stopped_at,
            seeds=seeds,
            extras=state.extras,
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "callback")
        return f"{type(self).__name__}({params})"
