"""Contract tests shared by every solver (dmilo, dmilo_pgd, dmplug, dps), plus selection and presets.

The toy denoisers, small operators and fast settings are in ``helpers.py``.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import (
    FAST, OPERATOR_CASES, ConvBlur, Downsample2, FourierSubsample, PixelMask, ToyDenoiser,
    count_network_calls, expected_nfe, in_range_image, mask_problem, random_mask, subspace_generator,
    toy_generator, unconditional, unet_generator,
)
from monai_dmilo.priors.stepwise import StepwiseDDIM, linear_alphas_cumprod
from monai_dmilo.operators.base import ForwardOperator, LinearOperator
from monai_dmilo.operators import build as build_operator
from monai_dmilo.solvers import (
    DMILO,
    SOLVERS,
    available_presets,
    build,
    build_from_preset,
    build_selection,
    load_solver_preset,
    per_sample_mean_square,
)

SEEDLESS = {"tv", "pseudo_inverse"}
TINY = {
    "dmilo": dict(num_outer=1, num_inner=2),
    "dmilo_pgd": dict(num_outer=1, num_inner=2),
    "dmplug": dict(num_iters=3),
    "dps": dict(num_steps=4),
    "tv": dict(num_iters=3),
    "diffpir": dict(num_steps=4),
    "pigdm": dict(num_steps=4),
    "reddiff": dict(num_steps=4),
    "ddrm": dict(num_steps=4),
    "daps": dict(num_steps=2, ode_steps=2, langevin_steps=2),
    "pseudo_inverse": dict(),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_output_contract_and_exact_nfe(name):
    generator = unet_generator()  # the project's real network class (MONAI DiffusionModelUNet)
    y, op, _ = mask_problem(2, generator)
    calls = count_network_calls(generator)
    out = build(name, **TINY[name]).solve(y, op, generator, seed=[0, 1])
    assert out.x.shape == (2, 1, 16, 16) and out.x.dtype == y.dtype
    assert torch.isfinite(out.x).all() and out.x.abs().max() <= 1.0
    fit = out.history["data_fit"]
    assert fit.ndim == 2 and fit.shape[1] == 2 and fit.shape[0] >= 1
    assert out.nfe == expected_nfe(name, TINY[name], generator.num_steps)
    assert out.nfe_forward == len(calls)  # every real network forward is counted
    assert out.nfe_backward == sum(calls)  # every network forward run with gradients is backpropagated
    assert out.wall_time > 0 and out.kernel is None and not out.interrupted and out.seeds == [0, 1]
    assert out.selected.tolist() == [fit.shape[0] - 1] * 2


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_deterministic_per_seed(name):
    y, op, generator = mask_problem(2)
    solver = build(name, **FAST[name])
    a = solver.solve(y, op, generator, seed=[3, 4])
    b = solver.solve(y, op, generator, seed=[3, 4])
    c = solver.solve(y, op, generator, seed=[5, 6])
    assert torch.equal(a.x, b.x)
    assert torch.equal(a.history["data_fit"], b.history["data_fit"])
    if name in SEEDLESS:  # a deterministic optimisation: no random draw to seed
        assert torch.equal(a.x, c.x)
    else:
        assert not torch.allclose(a.x, c.x)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_batch_equals_singles(name):
    # float64, so that the only batch effect left (convolution rounding) is far below the tolerance
    generator = toy_generator().double()
    y, op, generator = mask_problem(3, generator, dtype=torch.float64)
    solver = build(name, **FAST[name])
    batched = solver.solve(y, op, generator, seed=[10, 11, 12])
    for b, seed in enumerate([10, 11, 12]):
        single = solver.solve(y[b : b + 1], PixelMask(op.mask[b : b + 1]), generator, seed=seed)
        torch.testing.assert_close(single.x[0], batched.x[b], atol=1e-9, rtol=0)
        torch.testing.assert_close(single.history["data_fit"][:, 0], batched.history["data_fit"][:, b], atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_reduces_the_data_fit(name):
    y, op, generator = mask_problem(2, subspace_generator())
    seeds = [21, 22]
    out = build(name, **FAST[name]).solve(y, op, generator, seed=seeds)
    final = per_sample_mean_square(op(out.x) - y)
    if name == "dps":  # against the unguided sample from the same noise and sampler
        start = build("dps", **{**FAST["dps"], "zeta": 0.0}).solve(y, op, generator, seed=seeds).x
    else:  # against the unconditional sample clip(G(z_0))
        start = unconditional(generator, seeds)
    initial = per_sample_mean_square(op(start) - y)
    assert (final < 0.5 * initial).all(), (final, initial)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_runs_in_supervised_evaluator_under_no_grad(name):
    from ignite.engine import Events
    from monai.data import DataLoader
    from monai.engines import PrepareBatchExtraInput, SupervisedEvaluator

    from monai_dmilo.inferers import SolverInferer

    generator = toy_generator()
    x = in_range_image(generator, 2)
    mask = random_mask(2)
    y = x * mask
    data = [{"image": y[b], "label": x[b], "mask": mask[b], "seed": 40 + b} for b in range(2)]
    solver = build(name, **FAST[name])
    inferer = SolverInferer(solver, operator="inpainting")
    extra = {"mask": "mask", "seed": "seed"}
    preds = []
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=generator,
        inferer=inferer,
        prepare_batch=PrepareBatchExtraInput(extra),
        decollate=False,
    )
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: preds.append(e.state.output["pred"]))
    evaluator.run()
    direct = solver.solve(y, build_operator("inpainting", mask=mask), generator, seed=[40, 41])  # the inferer's operator
    assert len(preds) == 1 and preds[0].shape == (2, 1, 16, 16)
    torch.testing.assert_close(torch.as_tensor(preds[0]), direct.x, atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in generator.parameters())


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_keyboard_interrupt_returns_current_estimate(name):
    y, op, generator = mask_problem(2)
    seen = []

    def stop(record):
        seen.append(record)
        raise KeyboardInterrupt

    params = {**FAST[name], **({"report_every": 1} if name in ("dmplug", "dps", "tv", "diffpir", "pigdm", "reddiff", "ddrm", "daps") else {})}
    out = build(name, callback=stop, **params).solve(y, op, generator, seed=[1, 2])
    assert out.interrupted and len(seen) == 1
    assert out.history["data_fit"].shape == (1, 2)
    assert out.x.shape == (2, 1, 16, 16) and torch.isfinite(out.x).all()
    assert set(seen[0]) >= {"record", "nfe", "elapsed", "data_fit"}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_prior_frozen_and_no_gradients_pile_up(name):
    y, op, generator = mask_problem(2)
    first = next(generator.parameters())
    first.requires_grad_(True)  # a user un-froze part of the prior
    build(name, **FAST[name]).solve(y, op, generator, seed=0)
    assert all(p.grad is None for p in generator.parameters())
    assert first.requires_grad  # restored as it was
    assert sum(p.requires_grad for p in generator.parameters()) == 1


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_complex_measurements(name):
    generator = toy_generator()
    op = FourierSubsample(random_mask(2, keep=0.4))
    y = op(in_range_image(generator, 2))
    assert y.is_complex()
    out = build(name, **FAST[name]).solve(y, op, generator, seed=[8, 9])
    assert out.x.dtype == torch.float32 and not out.history["data_fit"].is_complex()
    expected = torch.view_as_real(op(out.x) - y).square().flatten(1).mean(1)
    torch.testing.assert_close(out.history["data_fit"][-1], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_non_image_shaped_measurement_and_z_init(name):
    generator = toy_generator()
    op = Downsample2()
    y = op(in_range_image(generator, 2))
    solver = build(name, **FAST[name])
    out = solver.solve(y, op, generator, seed=[5, 6])
    z0 = torch.stack([torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (5, 6)])
    again = solver.solve(y, op, generator, seed=[5, 6], z_init=z0)
    assert out.x.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out.x, again.x, atol=0, rtol=0)


#: what a solver needs from the operator beyond A(x) (the capability it refuses without)
NEEDS = {"ddrm": "svd", "diffpir": "proximal", "pigdm": "pseudo_inverse", "pseudo_inverse": "pseudo_inverse"}


def _single_precision(params: dict) -> dict:
    """The operator case's parameters in the toy prior's precision (float32 / complex64)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, torch.Tensor):
            value = value.to(torch.complex64 if value.is_complex() else torch.float32)
        elif isinstance(value, nn.Module):
            value = value.float()
        out[key] = value
    return out


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=[case.id for case in OPERATOR_CASES])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_on_every_operator_case(name, case):
    """Each solver on each real operator configuration of the operator tests: it solves (batch of 2,
    in range, finite, exact NFE, the data fit of its estimate recorded), or, for an operator without
    the capability it needs, refuses with one error naming itself and the operator."""
    generator = StepwiseDDIM(ToyDenoiser(case.image[0]), num_steps=3, image_shape=case.image)
    op = build_operator(case.name, **_single_precision(case.params(2)))
    y = op(in_range_image(generator, 2))
    solver = build(name, **TINY[name])
    if name in NEEDS and not callable(getattr(op, NEEDS[name], None)):
        with pytest.raises(TypeError, match=f"{name} needs .*{type(op).__name__} has none"):
            solver.solve(y, op, generator, seed=[0, 1])
        return
    out = solver.solve(y, op, generator, seed=[0, 1])
    assert out.x.shape == (2, *case.image) and out.x.dtype == torch.float32
    assert torch.isfinite(out.x).all() and out.x.abs().max() <= 1.0
    assert out.nfe == expected_nfe(name, TINY[name], generator.num_steps)
    assert torch.isfinite(out.history["data_fit"]).all()
    assert out.history["data_fit"].shape[1] == 2


def test_bad_inputs_raise_named_errors():
    y, op, generator = mask_problem(2)
    solver = DMILO(num_outer=1, num_inner=1)
    with pytest.raises(ValueError, match="seed"):
        solver.solve(y, op, generator, seed=[1, 2, 3])
    with pytest.raises(TypeError, match="seed"):
        solver.solve(y, op, generator, seed="1")
    no_shape = StepwiseDDIM(ToyDenoiser(), num_steps=2)
    with pytest.raises(ValueError, match="image_shape"):
        solver.solve(y, op, no_shape, seed=0)
    with pytest.raises(ValueError, match="z_init"):
        solver.solve(y, op, generator, z_init=torch.zeros(3, 1, 16, 16))
    with pytest.raises(TypeError, match="operator"):
        solver.solve(y, "inpainting", generator)
    with pytest.raises(TypeError, match="prior must be a StepwiseDDIM-like prior"):
        solver.solve(y, op, nn.Identity())
    with pytest.warns(FutureWarning, match=r"generator=\) is now"):  # the argument's former name still works
        assert solver.solve(y, op, generator=generator, seed=0).x.shape == y.shape
    with pytest.raises(ValueError, match="solver name"):
        build("dmilo2")
    with pytest.raises(ValueError, match="num_inner"):
        build("dmilo", num_inner=-1)
    with pytest.raises(ValueError, match="lr_z"):
        build("dmilo", lr_z="fast")
    with pytest.raises(ValueError, match="fidelity"):
        build("dmilo_pgd", fidelity="l1")
    with pytest.raises(ValueError, match="selection"):
        build("dmplug", selection="oracle_psnr")
    with pytest.raises(ValueError, match="operator=None"):
        build("dmilo", blind_kernel_size=3).solve(y, op, generator, seed=0)


def test_seed_none_follows_global_rng():
    y, op, generator = mask_problem(2)
    solver = DMILO(num_outer=1, num_inner=2)
    torch.manual_seed(123)
    a = solver.solve(y, op, generator)
    torch.manual_seed(123)
    b = solver.solve(y, op, generator)
    assert a.seeds == b.seeds and torch.equal(a.x, b.x)


def test_progress_bar_and_callback_records():
    y, op, generator = mask_problem(2)
    records = []
    out = DMILO(num_outer=3, num_inner=2, progress=True, callback=records.append).solve(y, op, generator, seed=0)
    assert [r["record"] for r in records] == [0, 1, 2]
    assert [r["nfe"] for r in records] == [3 + k * (3 * 2 + 3) for k in (1, 2, 3)]
    torch.testing.assert_close(torch.stack([r["data_fit"] for r in records]), out.history["data_fit"])
    assert records[-1]["x"].shape == out.x.shape and torch.equal(records[-1]["x"], out.x)
    assert not torch.equal(records[0]["x"], records[-1]["x"])  # each record carries its own iterate


def test_dmplug_reported_iterate_equals_a_shorter_run():
    """The iterate DMPlug reports at record t (with its NFE) is what DMPlug with num_iters = t returns."""
    y, op, generator = mask_problem(2)
    records = []
    params = dict(lr=0.1, report_every=3)
    build("dmplug", num_iters=6, callback=records.append, **params).solve(y, op, generator, seed=[1, 2])
    assert [r["record"] for r in records] == [2, 5, 6]
    shorter = build("dmplug", num_iters=2, **params).solve(y, op, generator, seed=[1, 2])
    torch.testing.assert_close(records[0]["x"], shorter.x)
    assert records[0]["nfe"] == shorter.nfe
    torch.testing.assert_close(records[0]["data_fit"], ((op(records[0]["x"]) - y) ** 2).flatten(1).mean(1))


# ---------------------------------------------------------------------------------------------
# selection rules and DMPlug options
# ---------------------------------------------------------------------------------------------
def test_lowest_data_fit_selection_picks_the_best_recorded_iterate():
    y, op, generator = mask_problem(2)
    out = build("dmplug", num_iters=25, lr=0.2, selection="lowest_data_fit").solve(y, op, generator, seed=[1, 2])
    fit = out.history["data_fit"]
    assert out.selected.tolist() == fit.argmin(0).tolist()
    torch.testing.assert_close(per_sample_mean_square(op(out.x) - y), fit.min(0).values, atol=1e-6, rtol=1e-5)


def test_es_wmv_rule_stops_a_converged_sample_only():
    rule = build_selection("es_wmv", window=3, patience=4)
    fit = torch.zeros(2)
    for k in range(30):
        x = torch.zeros(2, 1, 2, 2)
        x[0] = 1.0 / (min(k, 7) + 1)  # sample 0 converges, then stays put from record 7 on
        x[1] = (-1.0) ** k / (k + 1)  # sample 1 keeps oscillating with a shrinking amplitude
        rule.update(x, fit, k)
    assert rule.stopped.tolist() == [True, False]
    # sample 0: the window variance reaches 0 at record 9 (records 7..9), then never improves,
    # so it stops `patience` records later; sample 1 improves at every record.
    assert rule.stopped_at.tolist() == [9 + 4, -1]
    chosen, index = rule.select(None)
    assert index.tolist() == [9, 29]
    assert torch.allclose(chosen[0], torch.full((1, 2, 2), 1 / 8))
    assert chosen[1, 0, 0, 0].item() == pytest.approx((-1.0) ** 29 / 30)


def test_dmplug_es_wmv_cuts_the_iterations_run():
    y, op, generator = mask_problem(2)
    solver = build(
        "dmplug", num_iters=400, lr=0.05, selection="es_wmv",
        selection_params={"window": 5, "patience": 10}, check_every=5,
    )
    out = solver.solve(y, op, generator, seed=[1, 2])
    run = out.extras["iterations_run"]
    assert run < 400 and run % 5 == 0
    assert out.nfe == 3 * run + 3
    assert (out.stopped_at >= 0).all() and run - 5 <= out.stopped_at.max() <= run - 1
    assert out.history["data_fit"].shape == (run + 1, 2)


def test_dmplug_checkpointing_same_result_more_forwards():
    y, op, generator = mask_problem(2)
    plain = build("dmplug", num_iters=10).solve(y, op, generator, seed=[1, 2])
    ckpt = build("dmplug", num_iters=10, checkpointing=True).solve(y, op, generator, seed=[1, 2])
    torch.testing.assert_close(plain.x, ckpt.x, atol=1e-6, rtol=0)
    assert ckpt.nfe == plain.nfe and ckpt.nfe_forward == plain.nfe_forward + 3 * 10


# ---------------------------------------------------------------------------------------------
# presets (docs/algorithms.md section 7)
# ---------------------------------------------------------------------------------------------
def test_every_preset_builds():
    names = available_presets()
    assert len(names) >= 10
    for name in names:
        preset = load_solver_preset(name)
        assert preset["solver"] in SOLVERS
        build_from_preset(name)


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_solves_with_its_schedule(name):
    """Each preset runs (iteration counts cut to 1, DPS keeps its timestep count) and returns finite x."""
    params = load_solver_preset(name)["params"]
    cut = {k: 1 for k in ("num_outer", "num_inner", "num_iters", "num_fidelity_steps", "langevin_steps") if k in params}
    y, op, generator = mask_problem(1)
    if params.get("blind_kernel_size"):  # the paper's 64 x 64 kernel does not fit a 16 x 16 image
        cut["blind_kernel_size"] = 3
        y, op = ConvBlur(torch.full((3, 3), 1 / 9))(in_range_image(generator, 1)), None
    out = build_from_preset(name, **cut).solve(y, op, generator, seed=0)
    assert out.x.shape == (1, 1, 16, 16) and torch.isfinite(out.x).all()
    if name == "dps":
        assert out.nfe == params["num_steps"]


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("inpainting_dmilo", dict(lr_z=0.02, lr_nu=1e-3, num_outer=5, num_inner=200)),
        ("inpainting_dmilo_pgd", dict(lr_z=0.02, lr_nu=1e-3, lr_x=0.5, num_outer=5, num_inner=200, num_fidelity_steps=1)),
        ("sr4_dmilo", dict(lr_z=0.01, num_outer=5, num_inner=1000)),
        ("sr4_dmilo_pgd", dict(lr_z=0.01, lr_x=8.0, num_outer=10, num_inner=400)),
        ("deblur_dmilo", dict(lr_z=0.008, num_outer=10, num_inner=300)),
        ("deblur_dmilo_pgd", dict(lr_z=0.02, lr_x=2.0, num_fidelity_steps=1000, num_outer=5, num_inner=500)),
        ("nonlinear_deblur_dmilo", dict(lr_z=0.01, num_outer=10, num_inner=200)),
        ("nonlinear_deblur_dmilo_pgd", dict(lr_z=0.02, lr_x=0.3, num_fidelity_steps=1000, num_outer=10, num_inner=200)),
        ("blind_deblur_dmilo", dict(lr_z=0.01, lr_kernel=0.1, num_outer=10, num_inner=200)),
        ("blind_deblur_dmilo_pgd", dict(lr_z=0.02, lr_kernel=0.1, num_outer=5, num_inner=500)),
        ("inpainting_dmplug", dict(lr=1e-2, num_iters=5000)),
        ("nonlinear_deblur_dmplug", dict(lr=1e-2, num_iters=10000)),
    ],
)
def test_presets_match_the_reference_table(preset, expected):
    solver = build_from_preset(preset)
    for key, value in expected.items():
        assert getattr(solver, key) == pytest.approx(value), (preset, key)
    if hasattr(solver, "lambda_nu"):
        assert solver.lambda_nu == 0.1 and solver.lambda_z == 1e-4


def test_preset_loader_paths_and_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("solver: dmilo\nparams:\n  num_outer: 2\n")
    assert load_solver_preset(path) == {"solver": "dmilo", "params": {"num_outer": 2}}
    assert build_from_preset(str(path), num_inner=7).num_inner == 7
    with pytest.raises(ValueError, match="not found"):
        load_solver_preset("no_such_preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="solver"):
        load_solver_preset(bad)


# ---------------------------------------------------------------------------------------------
# NaN scans and GPU speed options (correct on CPU too)
# ---------------------------------------------------------------------------------------------
def test_nan_scan_runs_once_on_y_and_not_in_the_loops(monkeypatch):
    from monai_dmilo.operators import build as build_operator

    y, _, generator = mask_problem(2)
    op = build_operator("inpainting", mask=random_mask(2))
    bad = y.clone()
    bad[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        DMILO(num_outer=1, num_inner=1).solve(bad, op, generator, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        op(bad)  # outside a solve the operator still scans its input
    scans = []
    real_isnan = torch.isnan
    monkeypatch.setattr(torch, "isnan", lambda t: scans.append(t.shape) or real_isnan(t))
    DMILO(num_outer=2, num_inner=3).solve(y, op, generator, seed=0)
    assert scans == [y.shape]  # y once; none of the ~20 operator calls scanned (no host sync)


def test_bf16_autocast_runs_the_network_in_bf16_and_still_fits():
    y, op, _ = mask_problem(2)
    generator = StepwiseDDIM(ToyDenoiser(), num_steps=3, image_shape=(1, 16, 16), autocast_dtype="bfloat16")
    dtypes = set()
    generator.network.net[0].register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    out = DMILO(num_outer=3, num_inner=15).solve(y, op, generator, seed=[1, 2])
    assert dtypes == {torch.bfloat16}
    assert out.x.dtype == torch.float32 and torch.isfinite(out.x).all()
    fit = out.history["data_fit"]
    assert (fit[-1] < 0.5 * fit[0]).all(), fit
    with pytest.raises(ValueError, match="autocast_dtype"):
        StepwiseDDIM(ToyDenoiser(), autocast_dtype="int8")


@pytest.mark.slow
def test_compiled_network_gives_the_eager_result():
    y, op, generator = mask_problem(2)
    compiled = StepwiseDDIM(ToyDenoiser(), num_steps=3, image_shape=(1, 16, 16), compile_network=True)
    eager = DMILO(num_outer=1, num_inner=5).solve(y, op, generator, seed=[1, 2])
    fast = DMILO(num_outer=1, num_inner=5).solve(y, op, compiled, seed=[1, 2])
    torch.testing.assert_close(fast.x, eager.x, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# TV least squares
# ---------------------------------------------------------------------------------------------
def test_tv_without_regularisation_is_least_squares_on_a_mask():
    """lam = 0: observed pixels converge to y (clipped to [-1, 1]); hidden ones keep the start, 0."""
    from monai_dmilo.metrics import total_variation

    y_img = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2.4 - 1.2
    mask = random_mask(2)
    op = PixelMask(mask)
    out = build("tv", lam=0.0, num_iters=400, lr=0.05).solve(op(y_img), op, toy_generator(), seed=0)
    observed = mask.bool()
    torch.testing.assert_close(out.x[observed], y_img.clamp(-1, 1)[observed], atol=2e-3, rtol=0)
    assert torch.equal(out.x[~observed], torch.zeros_like(out.x[~observed]))
    assert out.nfe == 0 and out.nfe_forward == 0
    # total_variation: a constant image has TV n * delta, a unit step one n * delta + its edge length
    flat = torch.zeros(1, 1, 4, 4)
    step = flat.clone()
    step[..., 2:] = 1.0
    assert total_variation(flat, 1e-3).item() == pytest.approx(16e-3)
    assert total_variation(step, 1e-3).item() == pytest.approx(4 * (1 + 1e-6) ** 0.5 + 12e-3, rel=1e-6)


def test_tv_denoises_toward_the_piecewise_constant_truth():
    """Identity operator, noisy two-level image: TV cuts the error and brings the TV to the truth's."""
    from monai_dmilo.metrics import total_variation

    truth = -torch.ones(1, 1, 16, 16)
    truth[..., 4:12, 4:12] = 0.6
    noisy = truth + 0.2 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    out = build("tv", lam=0.1, num_iters=300).solve(noisy, nn.Identity(), toy_generator(), seed=0)
    assert (out.x - truth).square().mean() < 0.4 * (noisy.clamp(-1, 1) - truth).square().mean()
    # the noisy image's TV is 2.3x the truth's (51.5: a 32-pixel edge of height 1.6); TV's is within 15%
    assert total_variation(out.x, 1e-3) == pytest.approx(total_variation(truth, 1e-3), rel=0.15)


# ---------------------------------------------------------------------------------------------
# DiffPIR
# ---------------------------------------------------------------------------------------------
class OracleDenoiser(nn.Module):
    """An eps-model whose clean prediction is always the fixed image ``x_star``."""

    def __init__(self, x_star: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("x_star", x_star)
        self.register_buffer("abar", linear_alphas_cumprod().to(x_star.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.x_star) / (1 - a).sqrt()


def test_diffpir_with_an_exact_prior_follows_the_ddim_trajectory_in_closed_form():
    """Prior and data agree on x*: every data step returns x*, eps stays (z0 - sqrt(abar_T) x*) / sqrt(1 - abar_T)
    (zeta = 0), so the output is sqrt(abar_0) x* + sqrt(1 - abar_0) eps exactly."""
    x_star = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 1.6 - 0.8)
    generator = StepwiseDDIM(OracleDenoiser(x_star), num_steps=3, image_shape=(1, 16, 16)).double()
    op = PixelMask(random_mask(2).double())
    seen = []
    out = build("diffpir", num_steps=20, zeta=0.0, lam=3.0, report_every=1, callback=seen.append).solve(
        op(x_star), op, generator, seed=[0, 1])
    abar = linear_alphas_cumprod()
    z0 = torch.stack([torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]).double()
    eps = (z0 - abar[999].sqrt() * x_star) / (1 - abar[999]).sqrt()
    torch.testing.assert_close(out.x, (abar[0].sqrt() * x_star + (1 - abar[0]).sqrt() * eps).clamp(-1, 1))
    assert all(torch.allclose(r["x"], x_star) for r in seen[:-1])          # each step's x0_hat
    assert out.nfe == 20 and out.nfe_backward == 0


def test_diffpir_data_step_pulls_toward_the_measurement_by_rho():
    """With a prior that always predicts 0, the observed pixels of x0_hat are y / (1 + rho_t) (inpainting's closed form)."""
    zero = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    generator = StepwiseDDIM(OracleDenoiser(zero), num_steps=3, image_shape=(1, 16, 16)).double()
    mask = random_mask(1).double()
    y = mask * 0.5
    seen = []
    solver = build("diffpir", num_steps=5, zeta=1.0, lam=2.0, sigma_n=0.1, report_every=1, callback=seen.append)
    solver.solve(y, PixelMask(mask), generator, seed=0)
    gen5 = StepwiseDDIM(OracleDenoiser(zero), num_steps=5, schedule="uniform", image_shape=(1, 16, 16))
    for record, (a_t, _) in zip(seen, gen5.step_coefficients):
        rho = 2.0 * 0.1**2 * a_t / (1 - a_t)
        observed = record["x"][mask.bool()]
        torch.testing.assert_close(observed, torch.full_like(observed, 0.5 / (1 + rho)))
        assert record["x"][~mask.bool()].abs().max() < 1e-12      # hidden pixels keep the prior's 0


def test_diffpir_refuses_an_operator_without_a_proximal_step():
    y, _, generator = mask_problem(1)

    class Squared(ForwardOperator):
        def forward(self, x):
            return x.square()

    with pytest.raises(TypeError, match="diffpir needs an operator with a proximal"):
        build("diffpir", num_steps=2).solve(y, Squared(), generator, seed=0)
    with pytest.raises(ValueError, match="zeta"):
        build("diffpir", zeta=1.5)


# ---------------------------------------------------------------------------------------------
# PiGDM and the pseudo-inverse reference
# ---------------------------------------------------------------------------------------------
class GaussianPriorDenoiser(nn.Module):
    """The exact eps-model of a N(0, s^2 I) prior: x0_hat = sqrt(abar) s^2 x / (abar s^2 + 1 - abar)."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s2 = s * s
        self.register_buffer("abar", linear_alphas_cumprod())

    def gain(self, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1)
        return a.sqrt() * self.s2 / (a * self.s2 + 1 - a)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1).to(x.dtype)
        return (x - a.sqrt() * self.gain(t).to(x.dtype) * x) / (1 - a).sqrt()


def test_pigdm_one_step_with_a_gaussian_prior_in_closed_form():
    """x0_hat = c x_t, so the guidance is c * M (y - x0_hat) for a mask M; eta = 0 leaves no noise."""
    denoiser = GaussianPriorDenoiser(0.1)
    generator = StepwiseDDIM(denoiser, num_steps=3, image_shape=(1, 16, 16)).double()
    mask = random_mask(1).double()
    op = build_operator("inpainting", mask=mask)
    y = op(torch.full((1, 1, 16, 16), 0.05, dtype=torch.float64))
    out = build("pigdm", num_steps=1, eta=0.0, guidance_weight=2.0).solve(y, op, generator, seed=3)
    z0 = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3)).double()
    abar = linear_alphas_cumprod()
    a_t, a_prev = abar[999], abar[0]
    c = denoiser.gain(torch.tensor([999])).double()
    x0 = c * z0
    eps = (z0 - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps + 2.0 * (a_prev * a_t).sqrt() * c * mask * (y - x0)
    torch.testing.assert_close(out.x, expected.clamp(-1, 1))
    assert out.nfe == 1 and out.nfe_backward == 1


def test_pseudo_inverse_is_zero_filling_for_a_mask_and_exact_for_full_kspace():
    mask = random_mask(2)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    op = build_operator("inpainting", mask=mask)
    out = build("pseudo_inverse").solve(op(x), op, toy_generator(), seed=0)
    torch.testing.assert_close(out.x, x * mask)
    mri = build_operator("mri", mask=torch.ones(16, 16))
    torch.testing.assert_close(build("pseudo_inverse").solve(mri(x), mri, toy_generator(), seed=0).x, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["ddrm", "diffpir", "pigdm", "dps", "reddiff", "daps"])
def test_stepwise_solvers_progress_bar_counts_steps_to_its_total(name, monkeypatch):
    """One rule for every solver that walks the timesteps once: the bar's length is num_steps and
    it ends there, whether or not report_every divides it."""
    import tqdm.auto

    bars = []

    class Bar:
        def __init__(self, total=None, **kwargs):
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    y, op, generator = mask_problem(1)
    params = {**TINY[name], "num_steps": 5, "report_every": 2, "progress": True}
    build(name, **params).solve(y, op, generator, seed=0)
    assert [(b.total, b.n) for b in bars] == [(5, 5)]


def test_former_solver_name_adjoint_still_builds_the_pseudo_inverse_with_a_warning():
    from monai_dmilo import solvers
    from monai_dmilo.solvers import PseudoInverse, task_solver_preset

    with pytest.warns(FutureWarning, match="'adjoint' is now called 'pseudo_inverse'"):
        solver = build("adjoint")
    assert type(solver) is PseudoInverse and solver.name == "pseudo_inverse"
    with pytest.warns(FutureWarning):
        assert task_solver_preset("inpainting", "adjoint") == "pseudo_inverse"
    with pytest.warns(FutureWarning, match="now PseudoInverse"):
        assert solvers.Adjoint is PseudoInverse
    assert "adjoint" not in solvers.SOLVERS  # listings and benchmarks show the new name only


def test_pseudo_inverse_solvers_refuse_a_nonlinear_operator():
    y, _, generator = mask_problem(1)

    class Squared(ForwardOperator):
        def forward(self, x):
            return x.square()

    for name in ("pigdm", "pseudo_inverse"):
        with pytest.raises(TypeError, match=f"{name} needs an operator with a pseudo-inverse"):
            build(name).solve(y, Squared(), generator, seed=0)


# ---------------------------------------------------------------------------------------------
# the discrepancy principle
# ---------------------------------------------------------------------------------------------
def test_discrepancy_rule_stops_each_sample_at_its_first_fit_below_the_noise_energy():
    from monai_dmilo.solvers.selection import Discrepancy

    y = torch.ones(2, 1, 4, 4)
    y[1, :, :2] = 0.0                      # sample 1: half of y unmeasured (exact zeros)
    rule = Discrepancy(sigma=0.1, tau=2.0)
    rule.bind(y)                           # levels: 2 * 0.01 * 1 = 0.02 and 2 * 0.01 * 0.5 = 0.01
    fits = [torch.tensor([0.05, 0.05]), torch.tensor([0.015, 0.015]), torch.tensor([0.001, 0.009]),
            torch.tensor([0.0, 0.0])]
    for k, fit in enumerate(fits):
        rule.update(torch.full((2, 1, 4, 4), float(k)), fit, k)
    x, index = rule.select(None)
    assert rule.stopped_at.tolist() == [1, 2] and index.tolist() == [1, 2]
    assert x[0].unique().tolist() == [1.0] and x[1].unique().tolist() == [2.0]
    with pytest.raises(TypeError, match="selection"):
        build("dmplug", selection="discrepancy")          # sigma is required
    with pytest.raises(ValueError, match="tau"):
        build("dmplug", selection="discrepancy", selection_params={"sigma": 0.01, "tau": 0})


def test_dmplug_with_the_discrepancy_principle_stops_once_the_noise_level_is_reached():
    generator = subspace_generator()
    op = PixelMask(random_mask(2))
    x = in_range_image(generator, 2)
    sigma = 0.05
    noise = sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = op(x + noise)
    params = dict(num_iters=300, lr=0.05, report_every=1, check_every=1)
    full = build("dmplug", **params).solve(y, op, generator, seed=[1, 2])
    stopped = build("dmplug", selection="discrepancy", selection_params={"sigma": sigma}, **params).solve(
        y, op, generator, seed=[1, 2])
    level = sigma**2 * (y != 0).flatten(1).float().mean(1)
    assert (stopped.stopped_at >= 0).all() and stopped.nfe < full.nfe
    fit = stopped.history["data_fit"]
    for b in range(2):
        k = int(stopped.stopped_at[b])
        assert fit[k, b] <= level[b] and (fit[:k, b] > level[b]).all()
        torch.testing.assert_close(per_sample_mean_square(op(stopped.x) - y)[b], fit[k, b], atol=1e-6, rtol=1e-4)


def test_baseline_solvers_have_a_preset_for_every_solver_task():
    """`--solver diffpir|pigdm|tv` finds `<solver task>_<solver>` for each task of configs/tasks."""
    from monai_dmilo.workflow.tasks import available_tasks, load_task

    for task in available_tasks():
        solver_task = load_task(task)["solver_task"]
        for solver in ("daps", "ddrm", "diffpir", "pigdm", "reddiff", "tv"):
            preset = f"{solver_task}_{solver}"
            assert preset in available_presets(), preset
            assert load_solver_preset(preset)["solver"] == solver
    assert load_solver_preset("pseudo_inverse")["solver"] == "pseudo_inverse"


def test_reddiff_without_the_regulariser_is_least_squares_from_the_pseudo_inverse():
    """lam = 0: Adam on mean(|m mu - y|^2) / 2 from mu = A^+ y: observed pixels stay at y, hidden ones at 0,
    and the network still runs once per step (forward only)."""
    y_img = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 1.6 - 0.8
    mask = random_mask(2)
    op = build_operator("inpainting", mask=mask)
    generator = toy_generator()
    calls = count_network_calls(generator)
    out = build("reddiff", lam=0.0, num_steps=20, lr=0.05).solve(op(y_img), op, generator, seed=[0, 1])
    torch.testing.assert_close(out.x, y_img * mask, atol=1e-6, rtol=0)
    assert out.nfe == 20 and len(calls) == 20 and not any(calls)


def test_reddiff_regulariser_moves_mu_along_eps_pred_minus_eps():
    """One step, plain gradient check: with the data term zero (nothing observed), Adam's first step moves
    every pixel by -lr * sign(lam * w_t * (eps_pred - eps))."""
    generator = toy_generator()
    mask = torch.zeros(1, 1, 16, 16)
    op = build_operator("inpainting", mask=mask)
    out = build("reddiff", lam=1.0, num_steps=1, lr=0.01).solve(torch.zeros(1, 1, 16, 16), op, generator, seed=7)
    gen1 = StepwiseDDIM(generator.network, num_steps=1, schedule="uniform", image_shape=(1, 16, 16))
    a_t = gen1.step_coefficients[0][0]
    rng = torch.Generator().manual_seed(7)
    torch.randn(1, 16, 16, generator=rng)                 # z_0's draw comes first
    noise = torch.randn(1, 16, 16, generator=rng)[None]
    with torch.no_grad():
        direction = gen1.eps((1 - a_t) ** 0.5 * noise, 0) - noise
    torch.testing.assert_close(out.x, -0.01 * torch.sign(direction), atol=1e-6, rtol=0)


def test_ddrm_with_an_exact_prior_and_noiseless_data_returns_the_truth_up_to_the_last_noise_level():
    """x0_hat = x* and y = A x*: observed components end at ybar + sigma_0 e, unobserved ones contract to x*."""
    x_star = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 1.6 - 0.8
    generator = StepwiseDDIM(OracleDenoiser(x_star), num_steps=3, image_shape=(1, 16, 16)).double()
    for op in (PixelMask(random_mask(2).double()), build_operator("inpainting", mask=random_mask(2).double())):
        out = build("ddrm", num_steps=20, eta=0.0, sigma_y=0.0).solve(op(x_star), op, generator, seed=[0, 1])
        sigma_0 = ((1 - linear_alphas_cumprod()[0]) / linear_alphas_cumprod()[0]).sqrt().item()   # 0.01
        assert (out.x - x_star).abs().max() < 5 * sigma_0
        assert out.nfe == 20 and out.nfe_backward == 0


def test_ddrm_does_not_depend_on_the_basis_the_svd_returns_for_repeated_singular_values():
    """A scaled identity has one repeated singular value: every orthonormal V is a valid SVD (LAPACK's
    choice changes with the thread count). DDRM's sample must be the same in any of them."""
    from monai_dmilo.operators.linear_solve import Spectral

    class Scaled(LinearOperator):
        def __init__(self, basis: torch.Tensor) -> None:
            super().__init__()
            self.basis = basis  # (n, n) orthonormal columns

        def forward(self, x):
            return 0.5 * x

        def adjoint(self, y):
            return 0.5 * y

        def svd(self, y):
            b, n = y.shape[0], y[0].numel()
            vh = self.basis.T.to(y.dtype)
            return Spectral(s=torch.full((b, n), 0.5, dtype=y.dtype),
                            ybar=(vh @ (2.0 * y).reshape(b, n, 1)).squeeze(2),
                            to_spectral=lambda x: (vh @ x.reshape(b, n, 1)).squeeze(2),
                            from_spectral=lambda xbar: (vh.T @ xbar.unsqueeze(2)).squeeze(2).view(b, 1, 16, 16))

    y, _, generator = mask_problem(2)
    rotation, _ = torch.linalg.qr(torch.randn(256, 256, generator=torch.Generator().manual_seed(3)))
    solver = build("ddrm", num_steps=10, eta=0.85, sigma_y=0.05)
    identity = solver.solve(y, Scaled(torch.eye(256)), generator, seed=[4, 5]).x
    rotated = solver.solve(y, Scaled(rotation), generator, seed=[4, 5]).x
    torch.testing.assert_close(rotated, identity, atol=1e-4, rtol=0)


def test_ddrm_refuses_an_operator_without_an_svd_and_too_large_dense_svds():
    y, _, generator = mask_problem(1)

    class Squared(ForwardOperator):
        def forward(self, x):
            return x.square()

    with pytest.raises(TypeError, match="ddrm needs an operator with a singular value decomposition"):
        build("ddrm").solve(y, Squared(), generator, seed=0)
    blur = build_operator("blur", kernel=torch.full((3, 3), 1 / 9))
    blur.dense_svd_max_size = 100
    with pytest.raises(ValueError, match="dense_svd_max_size"):
        build("ddrm", num_steps=2).solve(blur(y), blur, generator, seed=0)


def test_daps_langevin_samples_the_gaussian_posterior_of_a_mask():
    """One annealing level with an exact prior x0_hat = 0 and r^2 = sigma_999^2 ~ 2.5e4: on observed pixels the
    Langevin chain samples N(y / (1 + sigma_y^2 / r^2), ~sigma_y^2), i.e. mean y and spread sigma_y."""
    zero = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    generator = StepwiseDDIM(OracleDenoiser(zero), num_steps=3, image_shape=(1, 16, 16)).double()
    mask = random_mask(1).double()
    op = build_operator("inpainting", mask=mask)
    y = op(torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64))
    solver = build("daps", num_steps=1, ode_steps=2, langevin_steps=3000, langevin_lr=1e-3, lr_min_ratio=1.0,
                   sigma_y=0.1)
    out = solver.solve(y, op, generator, seed=0)
    samples = out.x[mask.bool()]
    assert abs(samples.mean().item() - 0.5) < 0.04
    assert 0.07 < samples.std().item() < 0.13
    assert out.nfe == 2 and out.nfe_backward == 0


def test_a_diverged_estimate_is_reported(caplog):
    """A solve whose estimate is not finite says so (which samples, what to lower) instead of staying silent."""
    y, op, generator = mask_problem(2)
    y = y.clone()
    with caplog.at_level("WARNING", logger="monai_dmilo.solvers.base"):
        out = build("tv", lam=0.0, num_iters=3, lr=1e30).solve(y * 1e30, op, generator, seed=[1, 2])
    assert not torch.isfinite(out.x).all()
    assert "tv: the estimate of sample(s) [0, 1] is not finite" in caplog.text and "step size" in caplog.text


def _squared_norm(task_name: str) -> float:
    """``||A||^2`` of a task's 32 x 32 operator: power iteration on A^T A."""
    from monai_dmilo.workflow.tasks import load_task

    task = load_task(task_name)
    op = build_operator(task["operator"], **task["operator_params"])
    v = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(60):
        v.requires_grad_(True)
        (grad,) = torch.autograd.grad(op(v).pow(2).sum() / 2, v)
        norm = grad.norm()
        v = (grad / norm).detach()
    return float(norm)


def test_ct_presets_are_the_sr4_ones_rescaled_to_the_ct_operator():
    """Each knob that steps against the data term is sr4's times the ratio of the data terms' curvatures
    (||A||^2 for a sum of squares; sqrt for DPS's norm), to 2 digits; the knobs chosen on CT validation
    instead (the values and the runs are in each preset's comment) differ from that rescaling; every
    other setting is sr4's."""
    by_sum = _squared_norm("ct") / _squared_norm("sr4")
    scaled = {  # preset -> {knob: the factor on sr4's value}
        "dmilo_pgd": {"lr_x": 1 / by_sum}, "dps": {"zeta": by_sum ** -0.5},
        "dmilo": {}, "reddiff": {}, "daps": {}, "ddrm": {}, "diffpir": {}, "pigdm": {}, "tv": {}, "dmplug": {},
    }
    validated = {"dmilo": {"lr_z"}, "dmilo_pgd": {"lr_z", "num_fidelity_steps"}, "reddiff": {"lam"},
                 "daps": {"langevin_lr"}}
    for solver, factors in scaled.items():
        sr4 = load_solver_preset("dps" if solver == "dps" else f"sr4_{solver}")["params"]
        ct = load_solver_preset(f"ct_{solver}")["params"]
        assert set(ct) == set(sr4), solver
        for knob, value in sr4.items():
            if knob in validated.get(solver, ()):
                assert ct[knob] != value, (solver, knob)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                assert ct[knob] == value, (solver, knob, ct[knob], value)  # strings, flags: equal
                continue
            expected = value * factors.get(knob, 1)
            assert ct[knob] == pytest.approx(expected, rel=0.05), (solver, knob, ct[knob], expected)


def test_register_adds_a_solver_by_name_with_its_tuning_knob():
    """One decorated class is a solver ``build`` knows, with its parameters checked; names are unique."""
    from monai_dmilo.solvers import SOLVERS, Solver, build, register, solver_parameters

    try:
        @register("scaled_adjoint_test")
        class ScaledAdjoint(Solver):
            tuning_knob = "scale"

            def __init__(self, *, scale: float = 1.0, **common):
                super().__init__(**common)
                self.scale = scale

            def _run(self, state, y, operator, generator, z0, rngs):
                state.record((self.scale * operator.adjoint(y)).clamp(-1, 1), {})

        assert ScaledAdjoint.name == "scaled_adjoint_test" and SOLVERS["scaled_adjoint_test"] is ScaledAdjoint
        assert "scale" in solver_parameters("scaled_adjoint_test")
        assert build("scaled_adjoint_test", scale=0.5).scale == 0.5
        with pytest.raises(ValueError, match="takes no parameter 'lam'"):
            build("scaled_adjoint_test", lam=1.0)
        with pytest.raises(ValueError, match="'dmilo' is already registered by DMILO"):
            register("dmilo")(ScaledAdjoint)
        with pytest.raises(TypeError, match="decorates Solver subclasses"):
            register("not_a_solver")(dict)
    finally:
        SOLVERS.pop("scaled_adjoint_test", None)
