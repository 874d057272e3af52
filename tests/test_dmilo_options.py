"""DMILO's ground-truth-free options (monai_dmilo.solvers.dmilo_options and DMILO-PGD's ``output``):
each does what it claims, and off is today's behaviour."""
from __future__ import annotations

import pytest
import torch

from helpers import PixelMask, error_line, in_range_image, mask_problem, toy_generator

from monai_dmilo.solvers import DMILO, DMILOPGD
from monai_dmilo.solvers.dmilo_options import warm_start_chain
from monai_dmilo.solvers.numerics import per_sample_mean_square

FAST = dict(num_outer=2, num_inner=5)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(4.0 / (x - ref).square().flatten(1).mean(1))


def test_the_warm_start_chain_regenerates_the_estimate_exactly():
    generator = toy_generator()
    x_hat = in_range_image(generator, 2, seed=3)
    z0 = torch.randn(2, *generator.image_shape, generator=torch.Generator().manual_seed(0))
    blocks = DMILO().layer_blocks(generator.num_steps)
    latents, deviations = warm_start_chain(generator, blocks, x_hat, z0, DMILO.apply_layer)
    z = latents[0]
    for j, block in enumerate(blocks):
        z = DMILO.apply_layer(generator, z, block) + deviations[j]
        torch.testing.assert_close(z, latents[j + 1])
    torch.testing.assert_close(z, x_hat)


def test_the_operator_norm_is_measured_by_power_iteration():
    from helpers import Downsample2

    from monai_dmilo.solvers.dmilo_options import operator_norm_squared

    like = torch.zeros(2, 1, 8, 8)
    torch.testing.assert_close(operator_norm_squared(Downsample2(), like), torch.full((2,), 0.25))
    torch.testing.assert_close(operator_norm_squared(lambda x: 3 * x, like), torch.full((2,), 9.0))


def test_a_warm_start_from_the_true_image_stays_near_it():
    """Everything observed and no noise: the pseudo-inverse is the truth, and DMILO started there keeps it,
    while DMILO from the prior's sample does not reach it in the same iterations."""
    generator = toy_generator()
    truth = in_range_image(generator, 2, seed=11) * 0.8 + 0.1 * torch.linspace(-1, 1, 16)  # off the prior's range
    op = PixelMask(torch.ones(2, 1, 16, 16))
    y = op(truth)
    warm = DMILO(**FAST, warm_start={"solver": "pseudo_inverse"}).solve(y, op, generator, seed=[1, 2])
    cold = DMILO(**FAST).solve(y, op, generator, seed=[1, 2])
    assert (psnr(warm.x, truth) > 40).all()
    assert (psnr(warm.x, truth) > psnr(cold.x, truth) + 10).all()
    assert warm.nfe == cold.nfe  # the pseudo-inverse evaluates no network


def test_dmilo_pgd_warm_started_from_the_truth_starts_its_iterate_there():
    generator = toy_generator()
    truth = in_range_image(generator, 2, seed=11) * 0.8 + 0.1 * torch.linspace(-1, 1, 16)
    op = PixelMask(torch.ones(2, 1, 16, 16))
    primes = []
    out = DMILOPGD(**FAST, lr_x=0.5, warm_start={"solver": "pseudo_inverse"},
                   callback=lambda r: primes.append(r["x_prime"])).solve(op(truth), op, generator, seed=[1, 2])
    torch.testing.assert_close(primes[0], truth)  # X = the truth is a fixed point of the fidelity step
    assert (psnr(out.x, truth) > 40).all()


def test_a_warm_start_counts_the_other_solvers_evaluations_and_checks_its_spec():
    y, op, generator = mask_problem()
    out = DMILO(**FAST, warm_start={"solver": "ddrm", "params": {"num_steps": 4}}).solve(y, op, generator, seed=[1, 2])
    assert out.nfe == DMILO(**FAST).solve(y, op, generator, seed=[1, 2]).nfe + 4
    assert error_line(DMILO, warm_start={"solver": "dmilo"}) == (
        "monai_dmilo error: warm_start solver must be another solver than DMILO / DMILO-PGD, got 'dmilo'.")
    assert "solver 'tv' takes no parameter 'zeta'" in error_line(DMILO, warm_start={"solver": "tv", "params": {"zeta": 1}})
    assert error_line(DMILO, warm_start="tv").startswith("monai_dmilo error: warm_start must be a mapping")


def test_a_one_outer_refiner_of_reddiff_starts_at_reddiffs_estimate_and_adds_its_evaluations():
    """``warm start: RED-diff, 1 outer`` (benchmarks/dmilo_options.py): DMILO starts from the estimate RED-diff
    gives alone on the same y and seeds, counts RED-diff's NFE, and its sweep moves it."""
    from monai_dmilo.solvers import build

    y, op, generator = mask_problem()
    red = {"lam": 0.01, "lr": 0.1, "num_steps": 6}
    alone = build("reddiff", **red).solve(y, op, generator, seed=[1, 2])
    for solver in (DMILO, DMILOPGD):
        refiner = solver(num_outer=1, num_inner=5, warm_start={"solver": "reddiff", "params": red})
        out = refiner.solve(y, op, generator, seed=[1, 2])
        torch.testing.assert_close(out.extras["warm_start_x"], alone.x)
        torch.testing.assert_close(out.extras["initial_x"], alone.x.clamp(-1, 1))
        assert not torch.allclose(out.x, alone.x)
        cold = solver(num_outer=1, num_inner=5).solve(y, op, generator, seed=[1, 2])
        assert out.nfe == cold.nfe + alone.nfe


def test_refinement_fits_the_data_better_and_one_step_of_half_pastes_a_mask_measurement():
    y, op, generator = mask_problem()
    plain = DMILO(**FAST).solve(y, op, generator, seed=[1, 2])
    refined = DMILO(**FAST, refine={"steps": 1, "lr": 0.5}).solve(y, op, generator, seed=[1, 2])
    mask = op.mask.bool()
    torch.testing.assert_close(refined.x[mask], y[mask].clamp(-1, 1))  # observed pixels: y
    torch.testing.assert_close(refined.x[~mask], plain.x[~mask])     # hidden ones: DMILO's
    assert (refined.history["data_fit"][-1] < plain.history["data_fit"][-1]).all()
    auto = DMILO(**FAST, refine={"steps": 1, "lr": "auto"}).solve(y, op, generator, seed=[1, 2])
    torch.testing.assert_close(auto.x, refined.x)  # ||A||^2 = 1 for a mask: the auto step is 1/2
    off = DMILO(**FAST, refine={"steps": 0, "lr": 0.5}).solve(y, op, generator, seed=[1, 2])
    torch.testing.assert_close(off.x, plain.x)
    assert error_line(DMILO, refine={"steps": 2}) == (
        "monai_dmilo error: refine must be a mapping {steps: <int>, lr: <step size>} or null, got {'steps': 2}.")


def _pgd_runs(**output):
    y, op, generator = mask_problem()
    y = y + 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(5)) * op.mask
    primes = []
    solver = DMILOPGD(**FAST, lr_x=0.3, callback=lambda r: primes.append(r["x_prime"]), **output)
    return solver.solve(y, op, generator, seed=[1, 2]), primes, y, op


def test_the_gradient_output_returns_x_prime_and_the_projection_output_is_the_default():
    default, _, _, _ = _pgd_runs()
    projection, _, _, _ = _pgd_runs(output="projection")
    torch.testing.assert_close(default.x, projection.x)
    gradient, primes, _, _ = _pgd_runs(output="gradient")
    torch.testing.assert_close(gradient.x, primes[-1])
    assert not torch.allclose(gradient.x, default.x)


def test_the_discrepancy_output_returns_x_prime_where_the_projection_fits_the_data_worse_than_the_noise():
    projection, _, y, op = _pgd_runs()
    gradient, _, _, _ = _pgd_runs(output="gradient")
    fit = per_sample_mean_square(op(projection.x) - y)
    # a noise level below the projection's fit: it does not explain y, X' is returned
    strict, _, _, _ = _pgd_runs(output="discrepancy", output_params={"sigma": 1e-4})
    torch.testing.assert_close(strict.x, gradient.x)
    # a level above it: the projection explains y, it is kept
    loose, _, _, _ = _pgd_runs(output="discrepancy", output_params={"sigma": 10.0})
    torch.testing.assert_close(loose.x, projection.x)
    # per sample: a level between the two samples' fits keeps one projection and one X'
    measured = (y != 0).flatten(1).double().mean(1)
    lo, hi = sorted((fit.double() / measured).tolist())
    mixed, _, _, _ = _pgd_runs(output="discrepancy", output_params={"sigma": ((lo * hi) ** 0.5) ** 0.5})
    kept = [torch.equal(mixed.x[b], projection.x[b]) for b in range(2)]
    swapped = [torch.equal(mixed.x[b], gradient.x[b]) for b in range(2)]
    assert sorted(kept) == [False, True] and [not k for k in kept] == swapped


def test_the_output_options_are_checked():
    assert error_line(DMILOPGD, output="best") == (
        "monai_dmilo error: output must be one of ['projection', 'gradient', 'discrepancy'], got 'best'.")
    assert error_line(DMILOPGD, output="discrepancy").startswith("monai_dmilo error: output_params {sigma, tau} go with")
    with pytest.raises(ValueError, match="output_params sigma"):
        DMILOPGD(output="discrepancy", output_params={"sigma": -1.0})
