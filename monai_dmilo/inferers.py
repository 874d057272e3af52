"""MONAI inferers that run a solver: ``inferer(inputs=y, network=prior, **operator_params)``.

MONAI's ``Inferer.__call__(inputs, network, *args, **kwargs)`` contract is kept unchanged: the
measurement ``y`` arrives as ``inputs``, the prior (a :class:`~monai_dmilo.priors.stepwise.StepwiseDDIM`)
as ``network``, and per-sample operator parameters (``mask``, ``kernel``, ``coil_maps``, ...) as
keyword arguments from the batch (e.g. through ``monai.engines.PrepareBatchExtraInput``), together
with optional per-sample seeds under ``seed_key``.

Ignite/MONAI evaluators call the inferer under ``torch.no_grad()`` (or inference mode); the solvers
need gradients, so the inferer leaves inference mode, enables gradients and clones its tensor
inputs (inference tensors cannot be saved for backward).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from monai.inferers import Inferer

from monai_dmilo.operators.base import real_dtype_of
from monai_dmilo.solvers import DMILO, DMILOPGD, Solver, SolverOutput, build_from_preset

__all__ = ["SolverInferer", "DMILOInferer", "DMILOPGDInferer"]


def _normal_tensor_copy(value: Any) -> Any:
    """A normal (non-inference, non-MetaTensor) copy of tensors; other values unchanged."""
    if isinstance(value, torch.Tensor):
        as_tensor = getattr(value, "as_tensor", None)
        value = as_tensor() if callable(as_tensor) else value
        return value.detach().clone()
    return value


class SolverInferer(Inferer):
    """Run ``solver`` on a batch of measurements.

    Args:
        solver: a :class:`~monai_dmilo.solvers.Solver` (``solve(y, operator, prior, ...)``).
        operator: the forward model: a registry name for ``monai_dmilo.operators.build`` (built per
            call from ``operator_params`` and the batch's keyword arguments), a ready operator
            (called as ``operator(x)``), or ``None`` for blind solvers that build their own.
        operator_params: fixed operator parameters, overridden by the batch's keyword arguments.
        seed_key: the keyword argument holding per-sample seeds (ints, a list or a ``(B,)``
            tensor); absent: the solver draws seeds from torch's global RNG.

    Attributes:
        last_output: the :class:`~monai_dmilo.solvers.SolverOutput` of the last call (history,
            NFE, wall time, kernel) for handlers.
        last_operator: the operator of the last call.
    """

    def __init__(
        self,
        solver: Solver,
        operator: str | Callable[[torch.Tensor], torch.Tensor] | None = "inpainting",
        operator_params: Mapping[str, Any] | None = None,
        seed_key: str = "seed",
    ) -> None:
        super().__init__()
        if not hasattr(solver, "solve"):
            raise TypeError(f"solver must have a solve(y, operator, prior) method, got {type(solver).__name__}.")
        if operator is not None and not isinstance(operator, str) and not callable(operator):
            raise TypeError(
                f"operator must be a registry name, a callable operator or None, got {type(operator).__name__}."
            )
        if operator_params is not None and not isinstance(operator_params, Mapping):
            raise TypeError(f"operator_params must be a mapping or None, got {type(operator_params).__name__}.")
        self.solver = solver
        self.operator = operator
        self.operator_params = dict(operator_params or {})
        self.seed_key = seed_key
        self.last_output: SolverOutput | None = None
        self.last_operator: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def from_preset(cls, preset: str, *, solver_overrides: Mapping[str, Any] | None = None, **inferer_args: Any) -> SolverInferer:
        """An inferer whose solver is a ``configs/solvers`` preset (with overrides)."""
        return cls(build_from_preset(preset, **dict(solver_overrides or {})), **inferer_args)

    def _build_operator(self, params: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if isinstance(self.operator, str):
            from monai_dmilo.operators import build  # lazy: keeps this module importable alone

            return build(self.operator, **params)
        if params:
            raise ValueError(
                f"operator parameters {sorted(params)} were given but the operator is "
                f"{'None' if self.operator is None else 'an already built module'}; pass a registry name."
            )
        return self.operator

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Solve for ``x`` given ``y = inputs``.

        Args:
            inputs: the measurement ``y`` ``(B, ...)``.
            network: the prior, a StepwiseDDIM.
            args: unused (kept for MONAI's contract); must be empty.
            kwargs: ``operator`` (the batch's built operator, as
                :class:`~monai_dmilo.engines.InverseProblemPrepareBatch` passes it) or operator
                parameters from the batch (built here with the inferer's ``operator`` name), and
                optional ``seed_key`` seeds.

        Returns:
            ``x`` ``(B, C, H, W)`` on ``inputs``' device, in its (real) dtype.

        Raises:
            KeyboardInterrupt: the solve was interrupted (Ctrl-C): the evaluator stops without
                handing the truncated estimate to its handlers.
        """
        if args:
            raise TypeError(
                f"SolverInferer takes operator parameters as keyword arguments; got {len(args)} positional extras."
            )
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor (the measurement y), got {type(inputs).__name__}.")
        seed = kwargs.pop(self.seed_key, None)
        if isinstance(seed, torch.Tensor):
            seed = [int(s) for s in seed.reshape(-1).tolist()]
        with torch.inference_mode(False), torch.enable_grad():
            y = _normal_tensor_copy(inputs)
            operator = kwargs.pop("operator", None)
            if operator is not None and kwargs:
                raise ValueError(f"operator parameters {sorted(kwargs)} were given with a built operator; pass one or the other.")
            if operator is None:
                operator = self._build_operator({k: _normal_tensor_copy(v) for k, v in {**self.operator_params, **kwargs}.items()})
            output = self.solver.solve(y, operator, network, seed=seed)
        if output.interrupted:
            # the solver stopped early on Ctrl-C; a workflow must not record that estimate as a result
            raise KeyboardInterrupt("the solve was interrupted")
        self.last_output = output
        self.last_operator = operator
        return output.x.to(device=inputs.device, dtype=real_dtype_of(y))


class _NamedSolverInferer(SolverInferer):
    """A :class:`SolverInferer` whose solver is ``solver_class(**solver_params)``."""

    solver_class: type[Solver]

    def __init__(
        self,
        operator: str | Callable[[torch.Tensor], torch.Tensor] | None = "inpainting",
        operator_params: Mapping[str, Any] | None = None,
        seed_key: str = "seed",
        **solver_params: Any,
    ) -> None:
        super().__init__(self.solver_class(**solver_params), operator, operator_params, seed_key)


class DMILOInferer(_NamedSolverInferer):
    """:class:`SolverInferer` running :class:`~monai_dmilo.solvers.DMILO` built from ``solver_params``.

    Args:
        operator, operator_params, seed_key: as :class:`SolverInferer`.
        **solver_params: DMILO hyperparameters (``num_outer``, ``num_inner``, ``lr_z``, ...).
    """

    solver_class = DMILO


class DMILOPGDInferer(_NamedSolverInferer):
    """:class:`SolverInferer` running :class:`~monai_dmilo.solvers.DMILOPGD` built from ``solver_params``.

    Args:
        operator, operator_params, seed_key: as :class:`SolverInferer`.
        **solver_params: DMILO-PGD hyperparameters (``lr_x``, ``num_fidelity_steps``, DMILO's).
    """

    solver_class = DMILOPGD
