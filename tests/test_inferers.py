"""SolverInferer, DMILOInferer and DMILOPGDInferer keep MONAI's Inferer contract."""
from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_dmilo.inferers import DMILOInferer, DMILOPGDInferer, SolverInferer
from monai_dmilo.operators import build as build_operator
from monai_dmilo.solvers import DMILO, DMILOPGD
from helpers import PixelMask, in_range_image, random_mask, toy_generator


def _problem(batch: int = 2):
    generator = toy_generator()
    mask = random_mask(batch)
    y = in_range_image(generator, batch) * mask
    return y, mask, generator


def test_is_a_monai_inferer_and_matches_a_direct_solve():
    y, mask, generator = _problem()
    solver = DMILO(num_outer=2, num_inner=4)
    inferer = SolverInferer(solver, operator="inpainting")
    assert isinstance(inferer, Inferer)
    x = inferer(y, generator, mask=mask, seed=[3, 4])
    direct = solver.solve(y, build_operator("inpainting", mask=mask), generator, seed=[3, 4])
    assert x.shape == y.shape and x.dtype == y.dtype
    torch.testing.assert_close(x, direct.x, atol=0, rtol=0)
    assert inferer.last_output is not None and inferer.last_output.nfe == direct.nfe


def test_works_under_no_grad_and_inference_mode_with_metatensors():
    y, mask, generator = _problem()
    inferer = DMILOInferer(operator="inpainting", num_outer=1, num_inner=3)
    reference = inferer(y, generator, mask=mask, seed=[1, 2])
    with torch.inference_mode():
        meta_y, meta_mask = MetaTensor(y.clone()), MetaTensor(mask.clone())
        x = inferer(meta_y, generator, mask=meta_mask, seed=torch.tensor([1, 2]))
    torch.testing.assert_close(torch.as_tensor(x), reference, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(inferer(y, generator, mask=mask, seed=[1, 2]), reference, atol=0, rtol=0)


def test_batch_operator_params_override_fixed_ones():
    y, mask, generator = _problem()
    inferer = SolverInferer(DMILO(num_outer=1, num_inner=2), operator="inpainting", operator_params={"mask": 1 - mask})
    from_batch = inferer(y, generator, mask=mask, seed=[5, 6])
    fixed = SolverInferer(DMILO(num_outer=1, num_inner=2), operator="inpainting", operator_params={"mask": mask})
    torch.testing.assert_close(from_batch, fixed(y, generator, seed=[5, 6]), atol=0, rtol=0)


def test_ready_operator_and_named_conveniences():
    y, mask, generator = _problem()
    ready = SolverInferer(DMILOPGD(num_outer=1, num_inner=2), operator=PixelMask(mask))
    assert ready(y, generator, seed=0).shape == y.shape
    assert isinstance(DMILOInferer(num_inner=7).solver, DMILO) and DMILOInferer(num_inner=7).solver.num_inner == 7
    pgd = DMILOPGDInferer(lr_x=2.0, num_fidelity_steps=3)
    assert isinstance(pgd.solver, DMILOPGD) and (pgd.solver.lr_x, pgd.solver.num_fidelity_steps) == (2.0, 3)
    preset = SolverInferer.from_preset("sr4_dmilo", solver_overrides={"num_inner": 5}, operator="super_resolution")
    assert preset.solver.num_inner == 5 and preset.solver.lr_z == 0.01


def test_bad_arguments_raise_named_errors():
    y, mask, generator = _problem()
    with pytest.raises(TypeError, match="solver"):
        SolverInferer(object())
    with pytest.raises(TypeError, match="operator"):
        SolverInferer(DMILO(), operator=3)
    with pytest.raises(TypeError, match="operator_params"):
        SolverInferer(DMILO(), operator_params=[("mask", mask)])
    inferer = SolverInferer(DMILO(num_outer=1, num_inner=1), operator=PixelMask(mask))
    with pytest.raises(TypeError, match="positional"):
        inferer(y, generator, mask)
    with pytest.raises(ValueError, match="already built"):
        inferer(y, generator, mask=mask)
    with pytest.raises(TypeError, match="inputs"):
        inferer(y.numpy(), generator)


def test_prepare_batch_builds_the_operator_once_and_the_evaluator_hands_it_to_handlers():
    """The batch's operator is built by InverseProblemPrepareBatch from its class's batch keys, the
    inferer solves with exactly it, and InverseProblemEvaluator puts it, NFE and time in the output."""
    from ignite.engine import Events
    from monai.data import DataLoader

    from monai_dmilo.engines import InverseProblemEvaluator, InverseProblemPrepareBatch

    y, mask, generator = _problem()
    data = [{"y": y[b], "image": y[b], "mask": mask[b], "seed": 40 + b} for b in range(2)]
    solver = DMILO(num_outer=1, num_inner=2)
    inferer = SolverInferer(solver, operator=None)  # the operator comes from prepare_batch only
    prepare = InverseProblemPrepareBatch(operator="inpainting")
    seen = {}
    evaluator = InverseProblemEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(data, batch_size=2), network=generator,
        inferer=inferer, prepare_batch=prepare, decollate=False)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.update(e.state.output))
    evaluator.run()
    operator = seen["operator"]
    assert type(operator).__name__ == "Inpainting" and operator is inferer.last_operator
    torch.testing.assert_close(operator.mask, mask)
    direct = solver.solve(y, build_operator("inpainting", mask=mask), generator, seed=[40, 41])
    torch.testing.assert_close(torch.as_tensor(seen["pred"]), direct.x, atol=1e-6, rtol=0)
    assert seen["nfe"] == direct.nfe and seen["seconds"] > 0


def test_a_built_operator_and_operator_parameters_are_refused_together():
    y, mask, generator = _problem()
    inferer = SolverInferer(DMILO(num_outer=1, num_inner=1), operator="inpainting")
    with pytest.raises(ValueError, match="built operator"):
        inferer(y, generator, operator=build_operator("inpainting", mask=mask), mask=mask)
