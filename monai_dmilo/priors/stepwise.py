"""A diffusion prior seen as a chain of differentiable DDIM steps (docs/algorithms.md, section 2).

Symbols, as in the DDIM paper and docs/algorithms.md:

* ``t`` / ``t_prev``: the timestep of step ``i`` and the timestep it goes to.
* ``abar_t``: cumulative product of ``1 - beta`` up to ``t`` (``alphas_cumprod[t]``).
* ``eps``: the network's noise prediction; ``x0``: the predicted clean image.

``G = g_{N-1} o ... o g_0`` where ``g_i = step(., i)`` is one network evaluation.
"""
from __future__ import annotations

import logging
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from monai_dmilo.checks import as_bool
from monai_dmilo.priors.schedules import linear_alphas_cumprod, make_alphas_cumprod

logger = logging.getLogger(__name__)

__all__ = ["Prior", "StepwiseDDIM", "reference_timesteps", "uniform_timesteps", "linear_alphas_cumprod"]


@runtime_checkable
class Prior(Protocol):
    """What a solver may use of the prior (:class:`StepwiseDDIM` implements it).

    Attributes:
        image_shape: ``(C, H, W)`` of the images it generates (solvers draw ``z_0`` of this shape).
        timesteps: the ``(t, t_prev)`` pair of each step.
        step_coefficients: ``(abar_t, abar_t_prev)`` of each step, host floats.
        alphas_cumprod: ``abar`` of the whole training schedule, ``(T,)`` float64.
    """

    image_shape: tuple[int, ...] | None
    timesteps: list[tuple[int, int]]
    step_coefficients: list[tuple[float, float]]
    alphas_cumprod: torch.Tensor

    @property
    def num_steps(self) -> int:
        """N, the steps of ``G``."""

    @property
    def num_train_timesteps(self) -> int:
        """T, the length of the training schedule."""

    def step(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """``g_i(z)``, one differentiable DDIM step ``(B, C, H, W) -> (B, C, H, W)``."""

    def eps(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """The noise prediction at step ``i``."""

    def denoise(self, z: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted ``(x0, eps)`` at step ``i``."""

    def with_timesteps(self, timesteps: Sequence[Sequence[int]]) -> "Prior":
        """A sibling on the same frozen network with other ``(t, t_prev)`` steps."""

    def with_uniform_steps(self, num_steps: int) -> "Prior":
        """A sibling with ``num_steps`` uniform steps from ``T - 1`` to 0."""


def reference_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of the reference code: N = 3 gives 999->666->333->0.

    Step ``i`` starts at ``min((N - i) * skip, T - 1)`` with ``skip = T // N`` (the "leading" grid
    shifted up by ``skip``) and goes to where step ``i + 1`` starts (0 after the last step), so the
    chain is continuous: the first step, capped at ``T - 1``, goes to ``(N - 1) * skip`` (N = 10:
    999->900), not to ``999 - skip``, which would hand step 1 a latent one noise level off its own.
    """
    _check_num_steps(num_steps, num_train_timesteps - 1)  # N = T would start two steps at T - 1
    skip = num_train_timesteps // num_steps
    starts = [min((num_steps - i) * skip, num_train_timesteps - 1) for i in range(num_steps)]
    return list(zip(starts, starts[1:] + [0]))


def uniform_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[tuple[int, int]]:
    """Evenly spaced timesteps from ``T - 1`` down to 0; each step goes to the next listed one.

    At most ``T - 1`` steps: the grid has ``N + 1`` distinct integers in ``[0, T - 1]``.
    """
    _check_num_steps(num_steps, num_train_timesteps - 1)
    grid = torch.linspace(num_train_timesteps - 1, 0, num_steps + 1).round().long().tolist()
    return list(zip(grid[:-1], grid[1:]))


def _check_num_steps(num_steps: int, num_train_timesteps: int) -> None:
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(
            f"num_steps must be an integer in [1, {num_train_timesteps}], got {num_steps!r}."
        )


_SCHEDULES: dict[str, Callable[[int, int], list[tuple[int, int]]]] = {
    "reference": reference_timesteps,
    "uniform": uniform_timesteps,
}


_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _autocast_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``None``, or a low-precision dtype given as a ``torch.dtype`` or its name."""
    if value is None:
        return None
    if isinstance(value, str) and value in _AUTOCAST_DTYPES:
        return _AUTOCAST_DTYPES[value]
    if value in _AUTOCAST_DTYPES.values():
        return value
    raise ValueError(f"autocast_dtype must be None, 'bfloat16' or 'float16', got {value!r}.")


class StepwiseDDIM(nn.Module):
    """Deterministic DDIM sampler (eta = 0) exposed one differentiable step at a time.

    Args:
        network: a frozen epsilon-prediction denoiser ``network(x, t) -> eps`` with ``x`` of
            shape ``(B, C, H, W)`` and ``t`` a ``(B,)`` long tensor. Outputs of ``2C`` channels
            (learned variance) are split: the first ``C`` are eps.
        num_steps: number of DDIM steps N.
        schedule: ``"reference"`` (999->666->333->0 for N = 3) or ``"uniform"``; ignored when
            ``timesteps`` is given.
        timesteps: an explicit list of ``(t, t_prev)`` pairs, one per step.
        clip_x0: clip the predicted x0 to [-1, 1] and re-derive eps from it.
        image_shape: ``(C, H, W)`` of the images this prior generates (used by solvers to draw z_0).
        num_train_timesteps, beta_start, beta_end, beta_schedule: the network's training schedule
            (``linear``, ``scaled_linear`` or ``squaredcos_cap_v2``; :mod:`~monai_dmilo.priors.schedules`).
        alphas_cumprod: the schedule's ``abar_t`` ``(T,)`` given directly (overrides the betas).
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` (or the names ``"bfloat16"``,
            ``"float16"``) to run the network under autocast (a GPU speed option, off by default);
            the step arithmetic stays in the input's dtype.
        compile_network: wrap the network in ``torch.compile``.
        intensity_range: ``(lo, hi)`` of the images the network was trained on (``(0, 1)`` for
            MONAI's ``mednist_ddpm``); workflows scale images to it. ``clip_x0`` still clips to
            [-1, 1], as MONAI's and diffusers' ``clip_sample`` do whatever the data range.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        num_steps: int = 3,
        schedule: str = "reference",
        timesteps: Sequence[Sequence[int]] | None = None,
        clip_x0: bool = True,
        image_shape: Sequence[int] | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        alphas_cumprod: Sequence[float] | torch.Tensor | None = None,
        autocast_dtype: torch.dtype | str | None = None,
        compile_network: bool = False,
        intensity_range: Sequence[float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        if timesteps is None:
            if schedule not in _SCHEDULES:
                raise ValueError(f"schedule must be one of {sorted(_SCHEDULES)}, got {schedule!r}.")
            timesteps = _SCHEDULES[schedule](num_steps, num_train_timesteps)
        pairs = [(int(t), int(tp)) for t, tp in timesteps]
        for t, tp in pairs:
            if not 0 <= tp < t < num_train_timesteps:
                raise ValueError(
                    f"timesteps must be pairs (t, t_prev) with 0 <= t_prev < t < {num_train_timesteps}, "
                    f"got {(t, tp)}."
                )
        if image_shape is not None and len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}.")

        self.network = network.eval().requires_grad_(False)
        # Not registered as a submodule: the state dict holds the network's weights once, as network.*.
        compile_network = as_bool("compile_network", compile_network)
        self.__dict__["_call_network"] = torch.compile(self.network) if compile_network else self.network
        self.timesteps: list[tuple[int, int]] = pairs
        self.clip_x0 = clip_x0
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None
        self.autocast_dtype = _autocast_dtype(autocast_dtype)
        lo, hi = (float(v) for v in intensity_range)
        if not lo < hi:
            raise ValueError(f"intensity_range must be (lo, hi) with lo < hi, got {tuple(intensity_range)!r}.")
        self.intensity_range = (lo, hi)
        self._cpu_autocast_warned = False
        self.register_buffer("alphas_cumprod", make_alphas_cumprod(
            beta_schedule, num_train_timesteps, beta_start, beta_end, alphas_cumprod))
        #: the schedule's parameters, to build a sibling prior with other timesteps
        self.schedule_params = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end,
                                "beta_schedule": beta_schedule, "alphas_cumprod": alphas_cumprod}
        # Per-step scalars as Python floats: no device transfers or syncs inside the solver loops.
        abar = self.alphas_cumprod
        self.step_coefficients: list[tuple[float, float]] = [(float(abar[t]), float(abar[tp])) for t, tp in pairs]
        """``(abar_t, abar_t_prev)`` of each step, as host floats."""

    def train(self, mode: bool = True) -> "StepwiseDDIM":
        """Set the module's mode; the prior network always stays in eval mode (frozen)."""
        super().train(mode)
        self.network.eval()
        return self

    @property
    def num_steps(self) -> int:
        """N, the number of DDIM steps (network evaluations) in ``G``."""
        return len(self.timesteps)

    @property
    def num_train_timesteps(self) -> int:
        """T, the length of the network's training schedule."""
        return int(self.schedule_params["num_train_timesteps"])

    def eps(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """The network's noise prediction at step ``i``: ``(B, C, H, W)`` in ``z``'s dtype."""
        t = torch.full((z.shape[0],), self.timesteps[i][0], device=z.device, dtype=torch.long)
        if self.autocast_dtype is not None:
            if z.device.type == "cpu" and not self._cpu_autocast_warned:
                self._cpu_autocast_warned = True
                logger.warning(
                    "autocast_dtype=%s runs on the CPU, where it is several times slower than float32 "
                    "(measured ~6x for the shipped priors); it pays off on GPUs only.", self.autocast_dtype
                )
            with torch.autocast(device_type=z.device.type, dtype=self.autocast_dtype):
                out = self._call_network(z, t)
        else:
            out = self._call_network(z, t)
        channels = z.shape[1]
        if out.shape[1] == 2 * channels:
            out = out[:, :channels]
        elif out.shape[1] != channels:
            raise ValueError(
                f"the network returned {out.shape[1]} channels for a {channels}-channel input; "
                f"expected {channels} (eps) or {2 * channels} (eps and learned variance)."
            )
        return out.to(z.dtype)

    def denoise(self, z: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted ``(x0, eps)`` at step ``i``; with ``clip_x0`` x0 is clipped and eps re-derived."""
        abar_t, _ = self.step_coefficients[i]
        eps = self.eps(z, i)
        x0 = (z - (1.0 - abar_t) ** 0.5 * eps) / abar_t**0.5
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (z - abar_t**0.5 * x0) / (1.0 - abar_t) ** 0.5
        return x0, eps

    def step(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """``g_i(z)``: one deterministic DDIM step, differentiable in ``z`` (B, C, H, W)."""
        if not 0 <= i < self.num_steps:
            raise ValueError(f"step index i must be in [0, {self.num_steps}), got {i}.")
        _, abar_prev = self.step_coefficients[i]
        x0, eps = self.denoise(z, i)
        return abar_prev**0.5 * x0 + (1.0 - abar_prev) ** 0.5 * eps

    def with_uniform_steps(self, num_steps: int) -> "StepwiseDDIM":
        """A sibling on the same (shared, frozen) network and noise schedule with ``num_steps``
        uniform timesteps (what DPS, DDRM, DiffPIR, PiGDM and RED-diff sample with).

        Its ``alphas_cumprod`` buffer stays on the CPU (moving it would make the host wait for the
        GPU); the steps only read the host floats ``step_coefficients``.
        """
        return self.with_timesteps(uniform_timesteps(num_steps, self.num_train_timesteps))

    def with_timesteps(self, timesteps: Sequence[Sequence[int]]) -> "StepwiseDDIM":
        """A sibling on the same (shared, frozen) network and noise schedule with the given
        ``(t, t_prev)`` steps (DAPS's short ODE solves); see :meth:`with_uniform_steps`."""
        return StepwiseDDIM(
            self.network,
            timesteps=timesteps,
            clip_x0=self.clip_x0,
            image_shape=self.image_shape,
            autocast_dtype=self.autocast_dtype,
            intensity_range=self.intensity_range,
            **self.schedule_params,
        )

    def sample(self, z0: torch.Tensor) -> torch.Tensor:
        """``G(z0)``: run all N steps from the initial noise ``z0`` (B, C, H, W)."""
        z = z0
        for i in range(self.num_steps):
            z = self.step(z, i)
        return z

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        return self.sample(z0)
