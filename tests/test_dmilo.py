"""Algorithm tests of DMILO and DMILO-PGD (docs/algorithms.md, sections 4-6)."""
from __future__ import annotations

import pytest
import torch

from monai_dmilo.operators import build as build_operator
from monai_dmilo.operators import gaussian_kernel
from monai_dmilo.solvers import DMILO, DMILOPGD, DMPlug, per_sample_mean_square
from helpers import (
    ConvBlur,
    Identity,
    PixelMask,
    in_range_image,
    random_mask,
    toy_generator,
    unconditional,
)


def test_fits_a_measurement_in_the_generators_range():
    generator = toy_generator()
    x_true = in_range_image(generator, 2)
    seeds = [1, 2]
    for op in (Identity(), build_operator("inpainting", mask=random_mask(2, keep=0.6))):
        y = op(x_true)
        out = DMILO(num_outer=4, num_inner=60, lr_z=0.1).solve(y, op, generator, seed=seeds)
        initial = per_sample_mean_square(op(unconditional(generator, seeds)) - y)
        final = per_sample_mean_square(op(out.x) - y)
        assert (final < 0.05 * initial).all(), (final, initial)
        assert (final < 2e-3).all(), final
        # the recorded curve is the data fit of the returned iterate
        torch.testing.assert_close(out.history["data_fit"][-1], final)


def test_regeneration_pass_and_estimate():
    """After the solve, z_{i+1} = g_i(z_i) + nu_i for every layer and x = clip(z_N)."""
    generator = toy_generator()
    op = PixelMask(random_mask(2))
    y = op(in_range_image(generator, 2))
    out = DMILO(num_outer=2, num_inner=10, lr_nu=0.01).solve(y, op, generator, seed=[3, 4])
    latents, deviations = out.extras["latents"], out.extras["deviations"]
    assert len(latents) == generator.num_steps + 1 and len(deviations) == generator.num_steps
    assert all(d.abs().max() > 0 for d in deviations)
    with torch.no_grad():
        for i in range(generator.num_steps):
            torch.testing.assert_close(latents[i + 1], generator.step(latents[i], i) + deviations[i], atol=0, rtol=0)
    torch.testing.assert_close(out.x, latents[-1].clamp(-1, 1), atol=0, rtol=0)


def test_sparse_deviations_capture_an_off_range_outlier():
    generator = toy_generator()
    x_true = in_range_image(generator, 1)
    y = x_true.clone()
    outliers = [(3, 4), (10, 12), (7, 1)]
    for r, c in outliers:
        y[0, 0, r, c] = 3.0  # the prior's images stay in [-1, 1]: no latent reaches this
    out = DMILO(num_outer=4, num_inner=100, lr_nu=0.02).solve(y, Identity(), generator, seed=5)
    nu = out.extras["deviations"][-1][0, 0]
    outlier_mask = torch.zeros_like(nu, dtype=torch.bool)
    for r, c in outliers:
        outlier_mask[r, c] = True
    assert (nu[outlier_mask] > 1.0).all(), nu[outlier_mask]  # the deviation takes the outlier
    rest = nu[~outlier_mask].abs()
    assert (rest < 0.05).float().mean() > 0.9, rest.sort().values[-20:]  # and stays sparse elsewhere
    for earlier in out.extras["deviations"][:-1]:
        assert (earlier.abs() < 0.05).float().mean() > 0.9


def test_fresh_adam_per_layer_with_separate_learning_rates(monkeypatch):
    created = []
    original = torch.optim.Adam

    def spy(params, *args, **kwargs):
        optimizer = original(params, *args, **kwargs)
        created.append([group["lr"] for group in optimizer.param_groups])
        return optimizer

    monkeypatch.setattr(torch.optim, "Adam", spy)
    generator = toy_generator()
    op = PixelMask(random_mask(1))
    DMILO(num_outer=3, num_inner=2, lr_z=0.03, lr_nu=0.004).solve(op(in_range_image(generator, 1)), op, generator, seed=0)
    assert created == [[0.03, 0.004]] * (3 * generator.num_steps)


def _forward_calls_per_backward(solver, generator, y, op) -> list[int]:
    """Network forward calls with gradients enabled between consecutive backward passes."""
    events: list[str] = []
    net = generator.network
    net.register_forward_hook(lambda *_: events.append("F") if torch.is_grad_enabled() else None)
    net.register_full_backward_hook(lambda *_: events.append("B"))
    solver.solve(y, op, generator, seed=0)
    counts, pending = [], 0
    for event in events:
        if event == "F":
            pending += 1
        else:  # backward hooks of one backward pass fire once per network evaluation in the graph
            counts.append(pending)
            pending = 0
    return counts


def test_autograd_graph_holds_one_network_evaluation():
    generator = toy_generator(num_steps=4)
    op = PixelMask(random_mask(1))
    y = op(in_range_image(generator, 1))
    dmilo = _forward_calls_per_backward(DMILO(num_outer=2, num_inner=3), generator, y, op)
    assert dmilo == [1] * (2 * 4 * 3)  # one evaluation per backward, whatever N is
    # the same probe sees DMPlug's graph through all N evaluations
    dmplug = _forward_calls_per_backward(DMPlug(num_iters=2), generator, y, op)
    assert dmplug == [4, 0, 0, 0] * 2


class SpyOperator(PixelMask):
    """Records every input it is called with, and whether gradients were on."""

    def __init__(self, mask):
        super().__init__(mask)
        self.calls: list[tuple[torch.Tensor, bool]] = []

    def forward(self, x):
        self.calls.append((x.detach().clone(), torch.is_grad_enabled()))
        return super().forward(x)


def test_pgd_projection_target_is_A_of_X_prime():
    generator = toy_generator()
    mask = random_mask(2)
    y = PixelMask(mask)(in_range_image(generator, 2))
    lr_x, seeds = 0.3, [6, 7]
    spy = SpyOperator(mask)
    pgd = DMILOPGD(num_outer=1, num_inner=20, lr_x=lr_x).solve(y, spy, generator, seed=seeds)
    # X = 0: X' = 0 - lr_x * grad ||m * clip(X) - y||^2 = 2 lr_x m y; the target A(X') = 2 lr_x y
    no_grad_inputs = [x for x, grad_on in spy.calls if not grad_on]
    x_prime = no_grad_inputs[0]  # the target is computed, without gradients, from X'
    torch.testing.assert_close(x_prime, 2 * lr_x * mask * y)
    # and the projection is DMILO's sweep on that target: the estimate of DMILO on y' = A(X')
    dmilo = DMILO(num_outer=1, num_inner=20).solve(PixelMask(mask)(x_prime), PixelMask(mask), generator, seed=seeds)
    torch.testing.assert_close(pgd.x, dmilo.x, atol=0, rtol=0)
    assert not torch.allclose(pgd.x, DMILO(num_outer=1, num_inner=20).solve(y, PixelMask(mask), generator, seed=seeds).x)


def test_pgd_with_inpainting_step_half_returns_dmilos_estimate():
    """docs/algorithms.md section 5: one step of size 0.5 pastes y into the observed pixels."""
    generator = toy_generator()
    op = build_operator("inpainting", mask=random_mask(2, keep=0.3))
    y = op(in_range_image(generator, 2)) + 0.01 * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = op(y)  # noisy observed pixels, zeros elsewhere
    params = dict(num_outer=3, num_inner=30)
    dmilo = DMILO(**params).solve(y, op, generator, seed=[8, 9])
    pgd = DMILOPGD(lr_x=0.5, **params).solve(y, op, generator, seed=[8, 9])
    torch.testing.assert_close(pgd.x, dmilo.x, atol=1e-4, rtol=0)
    torch.testing.assert_close(pgd.history["data_fit"], dmilo.history["data_fit"], atol=1e-6, rtol=1e-4)


def test_pgd_norm_clipped_fidelity_variant():
    generator = toy_generator()
    op = ConvBlur(gaussian_kernel(5, 1.0))
    y = op(in_range_image(generator, 1))
    spy_inputs = []
    out = DMILOPGD(
        num_outer=2, num_inner=10, lr_x=0.05, num_fidelity_steps=20, fidelity="norm_clipped",
        callback=lambda r: spy_inputs.append(r),
    ).solve(y, op, generator, seed=1)
    assert len(spy_inputs) == 2 and out.x.abs().max() <= 1
    assert out.nfe == 3 + 2 * (3 * 10 + 3)  # fidelity steps call A only, no network


@pytest.mark.parametrize("solver_cls, extra", [(DMILO, {}), (DMILOPGD, {"lr_x": 0.5, "num_fidelity_steps": 5})])
def test_blind_deblurring_estimates_a_valid_kernel(solver_cls, extra):
    generator = toy_generator()
    true_kernel = gaussian_kernel(5, 1.2)
    x_true = in_range_image(generator, 2)
    y = build_operator("blur", kernel=true_kernel)(x_true)
    solver = solver_cls(num_outer=3, num_inner=40, blind_kernel_size=5, lr_kernel=0.1, **extra)
    out = solver.solve(y, None, generator, seed=[11, 12])
    k = out.kernel
    assert k.shape == (2, 5, 5) and (k >= 0).all()
    torch.testing.assert_close(k.sum((1, 2)), torch.ones(2))
    assert not torch.allclose(k, out.extras["initial_kernel"])
    initial = per_sample_mean_square(
        build_operator("blur", kernel=out.extras["initial_kernel"])(out.extras["initial_x"]) - y
    )
    final = per_sample_mean_square(build_operator("blur", kernel=k)(out.x) - y)
    assert (final < 0.5 * initial).all(), (final, initial)
    torch.testing.assert_close(out.history["data_fit"][-1], final)
    # same seed -> same kernel logits -> same answer (batch of one); in float64, where the batched and
    # single convolutions agree to rounding (float32 differs by ~1e-5 after 120 steps on one thread)
    generator64 = toy_generator().double()
    y64 = build_operator("blur", kernel=true_kernel.double())(in_range_image(generator64, 2, dtype=torch.float64))
    batch = solver.solve(y64, None, generator64, seed=[11, 12])
    single = solver.solve(y64[1:], None, generator64, seed=12)
    torch.testing.assert_close(single.kernel[0], batch.kernel[1], atol=1e-9, rtol=0)
    torch.testing.assert_close(single.x[0], batch.x[1], atol=1e-9, rtol=0)


def test_blind_custom_operator_factory():
    generator = toy_generator()
    y = ConvBlur(gaussian_kernel(3, 0.8))(in_range_image(generator, 1))
    seen = []

    def factory(kernel):
        seen.append(kernel.shape)
        return ConvBlur(kernel)

    out = DMILO(num_outer=1, num_inner=5, blind_kernel_size=3, operator_factory=factory).solve(y, None, generator, seed=0)
    assert out.kernel.shape == (1, 3, 3) and set(seen) == {torch.Size([1, 3, 3])}


def test_one_image_does_not_change_anothers_result():
    generator = toy_generator()
    op = PixelMask(random_mask(2))
    y = op(in_range_image(generator, 2))
    changed = y.clone()
    changed[1] = op(in_range_image(generator, 1, seed=99))[0]
    a = DMILO(num_outer=2, num_inner=10).solve(y, op, generator, seed=[1, 2])
    b = DMILO(num_outer=2, num_inner=10).solve(changed, op, generator, seed=[1, 2])
    torch.testing.assert_close(a.x[0], b.x[0], atol=1e-5, rtol=0)
    assert not torch.allclose(a.x[1], b.x[1])


def test_inner_discrepancy_stops_each_sample_at_the_noise_level():
    """The last layer's inner loop ends per sample once its data fit reaches tau * sigma^2 * the
    measured fraction; a huge level stops at once, a tiny one never, and a batch equals singles."""
    from monai_dmilo.solvers import DMILO, DMILOPGD
    from monai_dmilo.solvers.selection import discrepancy_level

    generator = toy_generator()
    mask = random_mask(2)
    y = in_range_image(generator, 2) * mask
    op = PixelMask(mask)
    plain = DMILO(num_outer=1, num_inner=6).solve(y, op, generator, seed=[3, 4])
    never = DMILO(num_outer=1, num_inner=6, inner_discrepancy={"sigma": 1e-9}).solve(y, op, generator, seed=[3, 4])
    torch.testing.assert_close(never.x, plain.x, atol=0, rtol=0)
    assert never.nfe == plain.nfe
    at_once = DMILO(num_outer=1, num_inner=6, inner_discrepancy={"sigma": 100.0}).solve(y, op, generator, seed=[3, 4])
    assert at_once.nfe == plain.nfe - 6 + 1  # the last layer: one forward, then every sample has stopped
    # a level that only the second sample reaches within the run (float64, as the batch contract test):
    # frozen in the batch, it gets exactly what it gets alone, and the other sample is not held back
    g64, mask64 = generator.double(), mask.double()
    y64 = in_range_image(g64, 2, dtype=torch.float64) * mask64
    solver = DMILO(num_outer=2, num_inner=6, inner_discrepancy={"sigma": 0.3})
    both = solver.solve(y64, PixelMask(mask64), g64, seed=[3, 4])
    alone = [solver.solve(y64[b:b + 1], PixelMask(mask64[b:b + 1]), g64, seed=[3 + b]) for b in range(2)]
    assert alone[1].nfe < alone[0].nfe == both.nfe
    for b in range(2):
        torch.testing.assert_close(both.x[b:b + 1], alone[b].x, atol=1e-9, rtol=0)
    assert discrepancy_level(y, 0.1).shape == (2,)
    with pytest.raises(ValueError, match="inner_discrepancy applies to DMILO"):
        DMILOPGD(inner_discrepancy={"sigma": 0.01})
    with pytest.raises(ValueError, match="inner_discrepancy must be a mapping"):
        DMILO(inner_discrepancy={"tau": 1.0})


# --- N, the number of DDIM steps (issue: the fit must not break down as N grows) -----------------
#: the stated budget of the self-consistency tests on the toy prior (K = 8 outer x M = 60 inner)
TOY_BUDGET = dict(num_outer=8, num_inner=60, lr_z=0.1)


@pytest.mark.parametrize("solver", ["dmilo", "dmilo_pgd"])
# N = 5 lies between the N = 3 and N = 10 cases that the default run keeps; it runs with -m slow
@pytest.mark.parametrize("num_steps, num_layers",
                         [(2, None), (3, None), pytest.param(5, None, marks=pytest.mark.slow), (10, None), (10, 3)])
def test_a_measurement_from_the_generators_own_range_is_fitted_for_every_N(num_steps, num_layers, solver):
    """``y = A(G_N(z*))`` (no noise, deviations zero) is fitted to a data fit near zero at N = 2..10
    (one step per layer, and N = 10 grouped into 3 layers): below 1e-3 and below a tenth of the
    unconditional sample's, within 8 x 60 iterations. DMILO on inpainting; DMILO-PGD on 2x average
    pooling, where its fidelity step differs from DMILO's."""
    from helpers import Downsample2

    generator = toy_generator(num_steps=num_steps)
    x_true = in_range_image(generator, 2)
    seeds = [1, 2]
    if solver == "dmilo":
        op, solver_ = build_operator("inpainting", mask=random_mask(2, keep=0.6)), DMILO(**TOY_BUDGET, num_layers=num_layers)
    else:  # lr_x = 2 puts A(X') on y for 2x average pooling (A A^T = I / 4)
        op, solver_ = Downsample2(), DMILOPGD(**TOY_BUDGET, lr_x=2.0, num_layers=num_layers)
    y = op(x_true)
    out = solver_.solve(y, op, generator, seed=seeds)
    final = per_sample_mean_square(op(out.x) - y)
    initial = per_sample_mean_square(op(unconditional(generator, seeds)) - y)
    assert (final < 1e-3).all() and (final < 0.1 * initial).all(), (final, initial)


def test_num_inner_intermediate_sets_the_budget_of_the_layers_before_the_last():
    """Intermediate layers run ``num_inner_intermediate`` iterations (NFE counts them); equal to
    ``num_inner`` it is the default; a bad value is one line naming the argument."""
    generator = toy_generator(num_steps=4)
    op = PixelMask(random_mask(2))
    y = op(in_range_image(generator, 2))
    base = DMILO(num_outer=2, num_inner=5).solve(y, op, generator, seed=[3, 4])
    same = DMILO(num_outer=2, num_inner=5, num_inner_intermediate=5).solve(y, op, generator, seed=[3, 4])
    torch.testing.assert_close(same.x, base.x, atol=0, rtol=0)
    more = DMILO(num_outer=2, num_inner=5, num_inner_intermediate=9).solve(y, op, generator, seed=[3, 4])
    assert base.nfe == 4 + 2 * (5 + 3 * 5 + 4)
    assert more.nfe == 4 + 2 * (5 + 3 * 9 + 4)
    assert not torch.equal(more.x, base.x)
    with pytest.raises(ValueError, match="num_inner_intermediate"):
        DMILO(num_inner_intermediate=-1)


#: what the shipped Fashion prior's self-consistency test adds to 5 x 20 per N (M' of the intermediate
#: layers at N = 10): with 5 x 20 on every layer, N = 10 stops at a fit of ~0.1 (the regenerated
#: chain drifts from the per-layer optima), 5 x (20, 100) fits to ~7e-5 (docs/benchmarks/dmilo_steps.md)
SHIPPED_BUDGET = {2: {}, 3: {}, 5: {}, 10: {"num_inner_intermediate": 100}}


@pytest.mark.slow
@pytest.mark.parametrize("num_steps", sorted(SHIPPED_BUDGET))
def test_the_shipped_prior_fits_a_measurement_from_its_own_range_for_every_N(num_steps):
    """Inpainting 70 % of ``y = A(G_N(z*))`` (no noise) with the shipped Fashion prior: DMILO reaches a
    data fit below 1e-3 (the unconditional start: ~0.1-0.2) at 5 x 20 iterations, with 100 on the
    intermediate layers at N = 10, where 20 leaves the fit above 1e-2. Minutes on a CPU."""
    from pathlib import Path

    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.operators import random_pixel_mask

    config = Path(__file__).resolve().parents[1] / "configs" / "models" / "fashion_mnist_32.yaml"
    generator = build_prior(config, num_steps=num_steps)
    z_star = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        x_true = generator.sample(z_star).clamp(-1, 1)
    op = build_operator("inpainting", mask=random_pixel_mask((32, 32), 0.7, seed=5)[None].float())
    y = op(x_true)
    budget = dict(num_outer=5, num_inner=20, lr_z=0.02)
    out = DMILO(**budget, **SHIPPED_BUDGET[num_steps]).solve(y, op, generator, seed=[1])
    assert per_sample_mean_square(op(out.x) - y).item() < 1e-3
    if SHIPPED_BUDGET[num_steps]:  # the budget rule is needed: the uniform budget does not fit
        uniform = DMILO(**budget).solve(y, op, generator, seed=[1])
        assert per_sample_mean_square(op(uniform.x) - y).item() > 1e-2


# --- layers of several DDIM steps (num_layers) ----------------------------------------------------
def test_layer_blocks_split_the_steps_evenly_and_bad_values_are_one_line():
    assert DMILO().layer_blocks(3) == [range(0, 1), range(1, 2), range(2, 3)]
    assert DMILO(num_layers=3).layer_blocks(10) == [range(0, 4), range(4, 7), range(7, 10)]
    assert DMILO(num_layers=1).layer_blocks(5) == [range(0, 5)]
    with pytest.raises(ValueError, match="num_layers must be at most the prior's number of DDIM steps \\(2\\), got 3"):
        DMILO(num_layers=3).solve(torch.zeros(1, 1, 8, 8), Identity(), toy_generator(num_steps=2), seed=0)
    with pytest.raises(ValueError, match="num_layers"):
        DMILO(num_layers=0)
    # explicit step counts per layer: N = 3's last jump kept alone after nine finer steps
    assert DMILO(num_layers=[3, 3, 3, 1]).layer_blocks(10) == [range(0, 3), range(3, 6), range(6, 9), range(9, 10)]
    with pytest.raises(ValueError, match=r"num_layers \[3, 3\] must sum to the prior's number of steps \(10\), got 6"):
        DMILO(num_layers=[3, 3]).layer_blocks(10)
    with pytest.raises(ValueError, match="num_layers must be a positive int or a list of positive step counts"):
        DMILO(num_layers=[3, 0])


def test_num_layers_equal_to_N_is_the_default_and_grouping_keeps_the_nfe():
    generator = toy_generator(num_steps=6)
    op = PixelMask(random_mask(2))
    y = op(in_range_image(generator, 2))
    base = DMILO(num_outer=2, num_inner=4).solve(y, op, generator, seed=[3, 4])
    same = DMILO(num_outer=2, num_inner=4, num_layers=6).solve(y, op, generator, seed=[3, 4])
    torch.testing.assert_close(same.x, base.x, atol=0, rtol=0)
    grouped = DMILO(num_outer=2, num_inner=4, num_layers=2).solve(y, op, generator, seed=[3, 4])
    assert grouped.nfe == base.nfe == 6 + 2 * (4 * 6 + 6)
    assert not torch.equal(grouped.x, base.x)
    assert len(grouped.extras["deviations"]) == 2 and len(grouped.extras["latents"]) == 3


def test_a_layer_of_several_steps_holds_their_evaluations_in_one_graph():
    """Memory grows with the steps per layer, not with N: the graph of each inner iteration holds
    the layer's steps (blocks of 2 and 1 steps for N = 3, L = 2)."""
    generator = toy_generator(num_steps=3)
    op = PixelMask(random_mask(1))
    y = op(in_range_image(generator, 1))
    counts = _forward_calls_per_backward(DMILO(num_outer=1, num_inner=2, num_layers=2), generator, y, op)
    # the last layer (1 step) first, then the first (2 steps: its backward fires the hook twice, as DMPlug's)
    assert counts == [1, 1, 2, 0, 2, 0]


def test_the_last_layer_estimate_is_the_last_layers_output_from_its_optimised_input():
    """estimate="last_layer" reports g_{L-1}(z_{L-1}) + nu_{L-1} as the sweep left them: the same sweep
    as the default, another reported image, one more evaluation of the last layer per outer iteration."""
    generator = toy_generator(num_steps=4)
    op = PixelMask(random_mask(2))
    y = op(in_range_image(generator, 2))
    kwargs = dict(num_outer=1, num_inner=10, lr_z=0.05, lr_nu=0.01)
    regenerated = DMILO(**kwargs).solve(y, op, generator, seed=[1, 2])
    last = DMILO(**kwargs, estimate="last_layer").solve(y, op, generator, seed=[1, 2])
    assert last.nfe == regenerated.nfe + 1
    # the same sweep: the deviations agree, and the reported image differs (the chain drifted)
    for a, b in zip(regenerated.extras["deviations"], last.extras["deviations"]):
        torch.testing.assert_close(a, b)
    assert not torch.equal(last.x, regenerated.x)
    with pytest.raises(ValueError, match="estimate must be one of \\['regenerated', 'last_layer'\\], got 'best'"):
        DMILO(estimate="best")
