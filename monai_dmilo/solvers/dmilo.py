"""DMILO (docs/algorithms.md, section 4, Algorithm 1): intermediate-layer optimisation with sparse deviations.

Symbols: ``z_0 .. z_N`` latents (``z_0`` the noise, ``z_N`` the image), ``nu_0 .. nu_{N-1}`` sparse
deviations, ``g_i`` the i-th DDIM step (one network evaluation), ``A`` the forward operator.

Per outer iteration: a backward sweep ``i = N-1 .. 0`` optimises ``(z_i, nu_i)`` with a fresh Adam
for ``M`` steps on ``mean((Op_i(g_i(z_i) + nu_i) - target_i)^2) + lambda_nu mean|nu_i| +
lambda_z mean(z_i^2)`` (``Op_{N-1} = A``, ``target_{N-1} = y``; otherwise identity and the freshly
optimised ``z_{i+1}``), then the chain is regenerated without gradients,
``z_{i+1} = g_i(z_i) + nu_i``, and the estimate is ``clip(z_N, -1, 1)``. Only one ``g_i`` is in the
autograd graph at any time, so memory is that of one network evaluation whatever ``N`` is.

Layers of several steps (``num_layers = L < N``): the N steps are split into L contiguous blocks
(sizes differing by at most one, the longer blocks first), and layer ``j`` is the composition of
its block's steps, ``g_j = step_{b_j + k_j - 1} o ... o step_{b_j}``; latents ``z_0 .. z_L`` sit at
the block boundaries and there are L deviations. ``L = N`` is the algorithm above; memory is that
of the longest block's network evaluations, and the NFE is the same as for ``L = N``.

A latent prior (:class:`~monai_dmilo.priors.latent.LatentDDIM`, docs/algorithms.md section 12)
has its decoder as step N: the last layer maps a latent to an image, its deviation is image-shaped
and the earlier ones latent-shaped; nothing else changes.

Blind deblurring (section 6): with ``blind_kernel_size = k`` the blur kernel
``softmax(w).view(B, k, k)`` (``w ~ N(0, I)`` from the per-sample seeds, drawn after ``z_0``) is
optimised with Adam (``lr_kernel``) jointly with ``(z_{N-1}, nu_{N-1})`` in the last-layer step;
the operator is rebuilt from the kernel by ``operator_factory(kernel)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from monai_dmilo.checks import check_positive
from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .dmilo_options import check_refine, check_warm_start, refine, warm_start_chain
from .numerics import draw_noise, per_sample_mean_square
from .selection import discrepancy_level

__all__ = ["DMILO", "DMILOProblem", "default_blur_factory", "ESTIMATES"]

#: what an outer iteration reports (see :class:`DMILO`, ``estimate``)
ESTIMATES = ("regenerated", "last_layer")


@dataclass
class DMILOProblem:
    """What one DMILO / DMILO-PGD solve works on, shared by the sweep and the hooks.

    Attributes:
        y: the measurement ``(B, ...)``; operator: ``A`` (rebuilt from ``logits`` in blind mode);
        prior: the prior ``G`` (``step``, ``num_steps``); state: the run's :class:`RunState`;
        latents: ``z_0 .. z_L`` ``(B, C, H, W)`` (L layers, N by default); deviations: ``nu_0 .. nu_{L-1}``;
        logits: the blur kernel logits ``(B, k * k)`` (blind mode), else None;
        X, X_prime: DMILO-PGD's iterate and its gradient-stepped version (None for DMILO);
        level: the per-sample data-fit level of ``inner_discrepancy`` (None when off);
        blocks: the DDIM step indices of each layer (:meth:`DMILO.layer_blocks`).
    """

    y: torch.Tensor
    operator: Callable[[torch.Tensor], torch.Tensor] | None
    prior: Any
    state: RunState
    latents: list[torch.Tensor] = field(default_factory=list)
    deviations: list[torch.Tensor] = field(default_factory=list)
    logits: torch.Tensor | None = None
    X: torch.Tensor | None = None
    X_prime: torch.Tensor | None = None
    level: torch.Tensor | None = None
    blocks: list[range] = field(default_factory=list)


def _check_inner_discrepancy(spec: Mapping[str, float] | None) -> dict[str, float] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not set(spec) <= {"sigma", "tau"} or "sigma" not in spec:
        raise ValueError(f"inner_discrepancy must be a mapping {{sigma: <noise std>, tau: <~1>}} or null, got {spec!r}.")
    out = {"sigma": spec["sigma"], "tau": spec.get("tau", 1.0)}
    for key, value in out.items():
        check_positive(f"inner_discrepancy {key}", value)
    return {k: float(v) for k, v in out.items()}


def default_blur_factory(kernel: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``monai_dmilo.operators.build("blur", kernel=kernel)`` for a ``(B, k, k)`` kernel."""
    from monai_dmilo.operators import build  # lazy: the operators package is optional here

    return build("blur", kernel=kernel)


@register("dmilo")
class DMILO(Solver):
    """DMILO: Algorithm 1 of the paper (see module docstring).

    Args:
        num_outer: outer iterations K.
        num_inner: inner Adam iterations M per layer.
        num_inner_intermediate: inner iterations of the layers ``i < N - 1`` (those fitting the next
            latent, not ``y``); ``None`` (default): ``num_inner``. A budget knob for many DDIM steps:
            with ``N = 10`` and ``M = 20`` the regenerated chain drifts from the per-layer optima
            (``docs/benchmarks/dmilo_steps.md``).
        num_layers: the number of layers L the N DDIM steps are grouped into (see module docstring),
            or the steps of each layer in order (e.g. ``[3, 3, 3, 1]``, summing to N);
            ``None`` (default): one step per layer. For many steps, ``N = 10`` with ``L = 3``
            keeps the N = 3 layer structure with a finer sampler inside each layer; on validation
            it trails a tuned N = 3 by 0.3 dB (inpainting) to 1.3 dB (SR x4) at 3.3x the NFE
            (``docs/benchmarks/dmilo_steps.md``).
        lr_z: Adam learning rate of the latents ``z_i``.
        lr_nu: Adam learning rate of the deviations ``nu_i``.
        lambda_nu: weight of the l1 term ``mean(|nu_i|)``.
        lambda_z: weight of the l2 term ``mean(z_i^2)``.
        blind_kernel_size: ``k`` to estimate a ``k x k`` blur kernel jointly (blind deblurring);
            ``None`` (default) for a known operator.
        lr_kernel: Adam learning rate of the kernel logits ``w`` (blind mode).
        operator_factory: ``kernel (B, k, k) -> operator`` in blind mode; default
            ``monai_dmilo.operators.build("blur", kernel=kernel)``.
        inner_discrepancy: ``{"sigma": s, "tau": t}`` to end the last layer's inner loop per
            sample (the discrepancy principle, docs/algorithms.md section 10) once its data fit
            ``mean(|A(g_{N-1}(z) + nu) - y|^2)`` reaches ``t * s^2 *`` the measured fraction of ``y``:
            that sample's ``(z_{N-1}, nu_{N-1})`` are frozen, and the loop ends when every sample
            has stopped (one host sync per inner iteration). ``None`` (default): M iterations.
        estimate: what each outer iteration reports: ``"regenerated"`` (default, the paper's), the
            image of the regenerated chain ``z_0 -> ... -> z_N``; or ``"last_layer"``, the last
            layer's output from its optimised input, ``g_{L-1}(z_{L-1}) + nu_{L-1}`` before the
            regeneration replaces ``z_{L-1}`` (it fits ``y`` as the sweep left it; one more
            evaluation of the last layer per outer iteration).
        warm_start: ``{"solver": name, "params": {...}}``: start from that solver's estimate instead of
            the prior's sample (:mod:`.dmilo_options`; its NFE are counted); ``None`` (default): off.
        refine: ``{"steps": K, "lr": eta}``: K data-fit gradient steps on the final estimate, recorded
            as one more iterate (:mod:`.dmilo_options`); ``None`` (default): off.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.

    Defaults are the inpainting preset of docs/algorithms.md section 7 (``configs/solvers``).
    """

    tuning_knob = "lr_z"
    tuning_factors = (0.5, 1.0, 2.0)
    latent_priors = True

    def __init__(
        self,
        *,
        num_outer: int = 5,
        num_inner: int = 200,
        num_inner_intermediate: int | None = None,
        num_layers: int | None = None,
        lr_z: float = 0.02,
        lr_nu: float = 1e-3,
        lambda_nu: float = 0.1,
        lambda_z: float = 1e-4,
        blind_kernel_size: int | None = None,
        lr_kernel: float = 0.1,
        operator_factory: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] | None = None,
        inner_discrepancy: Mapping[str, float] | None = None,
        estimate: str = "regenerated",
        warm_start: Mapping[str, Any] | None = None,
        refine: Mapping[str, Any] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        check_positive("num_outer", num_outer, integer=True, allow_zero=True)
        check_positive("num_inner", num_inner, integer=True, allow_zero=True)
        if num_inner_intermediate is not None:
            check_positive("num_inner_intermediate", num_inner_intermediate, integer=True, allow_zero=True)
        if isinstance(num_layers, (list, tuple)):
            if not num_layers or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in num_layers):
                raise ValueError(f"num_layers must be a positive int or a list of positive step counts, got {num_layers!r}.")
            num_layers = [int(k) for k in num_layers]
        elif num_layers is not None:
            check_positive("num_layers", num_layers, integer=True)
        check_positive("lr_z", lr_z, allow_zero=True)
        check_positive("lr_nu", lr_nu, allow_zero=True)
        check_positive("lambda_nu", lambda_nu, allow_zero=True)
        check_positive("lambda_z", lambda_z, allow_zero=True)
        check_positive("lr_kernel", lr_kernel, allow_zero=True)
        if blind_kernel_size is not None:
            check_positive("blind_kernel_size", blind_kernel_size, integer=True)
        if operator_factory is not None and not callable(operator_factory):
            raise TypeError(f"operator_factory must be callable, got {type(operator_factory).__name__}.")
        self.num_outer = num_outer
        self.num_inner = num_inner
        self.num_inner_intermediate = num_inner_intermediate
        self.num_layers = num_layers
        self.lr_z = float(lr_z)
        self.lr_nu = float(lr_nu)
        self.lambda_nu = float(lambda_nu)
        self.lambda_z = float(lambda_z)
        self.blind_kernel_size = blind_kernel_size
        self.lr_kernel = float(lr_kernel)
        self.operator_factory = operator_factory
        self.inner_discrepancy = _check_inner_discrepancy(inner_discrepancy)
        if estimate not in ESTIMATES:
            raise ValueError(f"estimate must be one of {list(ESTIMATES)}, got {estimate!r}.")
        self.estimate = estimate
        self.warm_start = check_warm_start(warm_start)
        if self.warm_start is not None and self.blind:
            raise ValueError("warm_start needs a known operator; blind deblurring (blind_kernel_size set) has none.")
        self.refine = check_refine(refine)

    @property
    def blind(self) -> bool:
        return self.blind_kernel_size is not None

    def _progress_total(self, prior: Prior) -> int | None:
        return self.num_outer

    def _check_operator(self, operator: Any) -> None:
        if self.blind:
            if operator is not None:
                raise ValueError(
                    "blind deblurring (blind_kernel_size set) builds its operator from the estimated "
                    f"kernel with operator_factory; pass operator=None, got {type(operator).__name__}."
                )
            return
        super()._check_operator(operator)

    # -- kernel (blind mode) -------------------------------------------------------------------
    def _kernel(self, logits: torch.Tensor) -> torch.Tensor:
        k = self.blind_kernel_size
        return torch.softmax(logits, dim=1).view(logits.shape[0], k, k)

    def _make_operator(self, logits: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        factory = self.operator_factory or default_blur_factory
        return factory(self._kernel(logits))

    # -- layers ----------------------------------------------------------------------------------
    def layer_blocks(self, num_steps: int) -> list[range]:
        """The DDIM step indices of each layer: ``num_layers`` contiguous blocks covering
        ``0 .. num_steps - 1`` (one step each when ``num_layers`` is None).

        Raises:
            ValueError: ``num_layers`` is larger than the prior's number of steps.
        """
        if isinstance(self.num_layers, list):
            if sum(self.num_layers) != num_steps:
                raise ValueError(f"num_layers {self.num_layers} must sum to the prior's number of steps ({num_steps}), "
                                 f"got {sum(self.num_layers)}.")
            bounds = [0]
            for size in self.num_layers:
                bounds.append(bounds[-1] + size)
            return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        layers = num_steps if self.num_layers is None else self.num_layers
        if layers > num_steps:
            raise ValueError(f"num_layers must be at most the prior's number of DDIM steps ({num_steps}), got {layers}.")
        size, extra = divmod(num_steps, layers)
        blocks, start = [], 0
        for j in range(layers):
            stop = start + size + (1 if j < extra else 0)
            blocks.append(range(start, stop))
            start = stop
        return blocks

    @staticmethod
    def apply_layer(prior: Any, z: torch.Tensor, block: range) -> torch.Tensor:
        """``g_j(z)``: the steps of ``block`` applied in order ``(B, C, H, W) -> (B, C', H', W')`` (a latent
        prior's last step is its decoder, which changes the shape)."""
        for i in block:
            z = prior.step(z, i)
        return z

    # -- hooks DMILO-PGD overrides -------------------------------------------------------------
    def _begin(self, ctx: DMILOProblem) -> None:
        """Extra state before the outer loop."""

    def _last_target(self, ctx: DMILOProblem) -> torch.Tensor:
        """``target_N`` of the sweep: the measurement for DMILO."""
        return ctx.y

    def _end_outer(self, ctx: DMILOProblem, x: torch.Tensor) -> None:
        """After the regeneration; ``x = clip(z_N)``."""

    def _output(self, ctx: DMILOProblem, x: torch.Tensor, fit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What an outer iteration records, with its data fit ``(B,)``: DMILO's image ``x``."""
        return x, fit

    def _record_images(self, ctx: DMILOProblem) -> dict[str, torch.Tensor]:
        """Other iterates of this outer iteration that the callback sees (none for DMILO)."""
        return {}

    # -- the algorithm -------------------------------------------------------------------------
    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        n = prior.num_steps
        blocks = self.layer_blocks(n)
        ctx = DMILOProblem(y=y, operator=operator, prior=prior, state=state, blocks=blocks)
        if self.blind:
            k = self.blind_kernel_size
            ctx.logits = draw_noise(rngs, (k * k,), z0)
            ctx.operator = self._make_operator(ctx.logits)
            state.kernel = self._kernel(ctx.logits)
            state.extras["initial_kernel"] = state.kernel
        if self.warm_start is not None:  # the chain through the other solver's estimate (nu_j make it exact)
            latents, deviations = warm_start_chain(prior, blocks, self._warm_estimate(state, y, operator, prior, z0),
                                                   z0, self.apply_layer)
        else:  # z_{j+1} = g_j(z_j) without gradients; nu_j = 0
            latents = [z0]
            with torch.no_grad():
                for j, block in enumerate(blocks):
                    latents.append(self.apply_layer(prior, latents[j], block))
            deviations = [torch.zeros_like(latents[j + 1]) for j in range(len(blocks))]  # a decoder layer's is image-shaped
        state.count(forward=n, nfe=n)
        ctx.latents, ctx.deviations = latents, deviations
        state.extras.update(latents=latents, deviations=deviations)
        state.x = latents[-1].clamp(-1.0, 1.0)
        state.extras["initial_x"] = state.x
        self._begin(ctx)

        for _ in range(self.num_outer):
            target = self._last_target(ctx)
            self._sweep(ctx, target)
            with torch.no_grad():  # regeneration pass (overwrites the intermediate targets)
                if self.estimate == "last_layer":  # the last layer's output from its optimised input
                    x_last = self.apply_layer(prior, latents[-2], blocks[-1]) + deviations[-1]
                    state.count(forward=len(blocks[-1]), nfe=len(blocks[-1]))
                for j, block in enumerate(blocks):
                    latents[j + 1] = self.apply_layer(prior, latents[j], block) + deviations[j]
                state.count(forward=n, nfe=n)
                x = (x_last if self.estimate == "last_layer" else latents[-1]).clamp(-1.0, 1.0)
                fit = per_sample_mean_square(ctx.operator(x) - y)
                l1 = torch.stack([d.abs().flatten(1).mean(1) for d in deviations]).mean(0)
            self._end_outer(ctx, x)
            x, fit = self._output(ctx, x, fit)
            state.record(x, {"data_fit": fit, "deviation_l1": l1}, images=self._record_images(ctx))
            if state.selection.can_stop and state.all_stopped():
                break
        if self.refine is not None and self.refine["steps"] > 0 and state.num_records:
            x = refine(ctx.operator, state.x, y, self.refine["steps"], self.refine["lr"])
            with torch.no_grad():
                fit = per_sample_mean_square(ctx.operator(x) - y)
            state.record(x, {"data_fit": fit, "deviation_l1": l1})

    def _warm_estimate(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor) -> Tensor:
        """The warm-start solver's estimate ``(B, C, H, W)`` on the same ``y`` and seeds (NFE counted)."""
        from monai_dmilo.solvers import build

        from .base import prior_range_map

        if getattr(prior, "is_latent", False) or prior_range_map(prior) is not None:
            raise ValueError("warm_start needs a pixel prior on [-1, 1]; this prior is latent or has another "
                             "intensity range.")
        out = build(self.warm_start["solver"], **self.warm_start["params"]).solve(y, operator, prior, seed=state.seeds)
        state.count(forward=out.nfe_forward, backward=out.nfe_backward, nfe=out.nfe)
        state.extras["warm_start_x"] = out.x
        return out.x.to(z0.dtype)

    def _inner_level(self, ctx: DMILOProblem) -> torch.Tensor | None:
        """The per-sample data-fit level ``(B,)`` ending the last layer's inner loop, or None."""
        if self.inner_discrepancy is None:
            return None
        if ctx.level is None:
            ctx.level = discrepancy_level(ctx.y, **self.inner_discrepancy).to(ctx.y.device)
        return ctx.level

    def _sweep(self, ctx: DMILOProblem, target: torch.Tensor) -> None:
        """Backward layer sweep j = L-1 .. 0 (section 4, step 2), in place on ctx's state."""
        prior, state = ctx.prior, ctx.state
        latents, deviations = ctx.latents, ctx.deviations
        n = len(deviations)
        for i in reversed(range(n)):
            block = ctx.blocks[i]
            last = i == n - 1
            z = latents[i].detach().clone().requires_grad_(True)
            nu = deviations[i].detach().clone().requires_grad_(True)
            groups = [{"params": [z], "lr": self.lr_z}, {"params": [nu], "lr": self.lr_nu}]
            w = None
            if last and self.blind:
                w = ctx.logits.detach().clone().requires_grad_(True)
                groups.append({"params": [w], "lr": self.lr_kernel})
            optimizer = torch.optim.Adam(groups)  # a fresh Adam per layer
            layer_target = target if last else latents[i + 1]
            level = self._inner_level(ctx) if last else None
            active = None if level is None else torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
            inner = self.num_inner if last or self.num_inner_intermediate is None else self.num_inner_intermediate
            for _ in range(inner):
                optimizer.zero_grad(set_to_none=True)
                out = self.apply_layer(prior, z, block) + nu
                if last:
                    out = (self._make_operator(w) if w is not None else ctx.operator)(out)
                fit = per_sample_mean_square(out - layer_target)
                if active is not None:  # a sample whose fit reached the noise level stops here
                    active = active & (fit.detach().double() > level)
                    if not bool(active.any()):
                        state.count(forward=len(block), nfe=len(block))
                        break
                    frozen = [(p, p.detach().clone()) for p in (z, nu, w) if p is not None]
                loss = fit + self.lambda_nu * nu.abs().flatten(1).mean(1) + self.lambda_z * z.square().flatten(1).mean(1)
                loss.sum().backward()
                optimizer.step()
                if active is not None:
                    with torch.no_grad():
                        for param, before in frozen:
                            param.copy_(torch.where(active.view(-1, *(1,) * (param.ndim - 1)), param, before))
                state.count(forward=len(block), backward=len(block), nfe=len(block))
            latents[i] = z.detach()
            deviations[i] = nu.detach()
            if w is not None:
                ctx.logits = w.detach()
                ctx.operator = self._make_operator(ctx.logits)
                state.kernel = self._kernel(ctx.logits)
