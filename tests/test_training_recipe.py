"""Training-recipe options: learning-rate schedules and Min-SNR weighting, each for the effect it claims."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from helpers import ArrayImageDataset
from monai_dmilo.training import build_diffusion_unet, build_ddpm_scheduler, create_prior_trainer
from monai_dmilo.training.recipe import WeightedDiffusionInferer, WeightedPrepareBatch, lr_factor, min_snr_weight

TINY = {"channels": (8, 16), "attention_levels": (False, True), "num_head_channels": 8, "norm_num_groups": 8}


def test_lr_factor_warmup_then_decay_to_zero():
    total, warmup = 100, 10
    assert lr_factor(0, schedule="cosine", warmup=warmup, total=total) == pytest.approx(0.1)
    assert lr_factor(9, schedule="cosine", warmup=warmup, total=total) == pytest.approx(1.0)
    assert lr_factor(10, schedule="cosine", warmup=warmup, total=total) == pytest.approx(1.0)
    assert lr_factor(55, schedule="cosine", warmup=warmup, total=total) == pytest.approx(0.5)
    assert lr_factor(55, schedule="linear", warmup=warmup, total=total) == pytest.approx(0.5)
    assert lr_factor(99, schedule="linear", warmup=warmup, total=total) == pytest.approx(1 / 90)
    assert lr_factor(99, schedule="cosine", warmup=warmup, total=total) < 0.001
    assert lr_factor(99, schedule="constant", warmup=warmup, total=total) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(0, schedule="step", warmup=0, total=10)


def test_lr_factor_late_decay_start_is_a_cool_down():
    kwargs = {"warmup": 10, "total": 100, "decay_start": 60}
    assert lr_factor(5, schedule="linear", **kwargs) == pytest.approx(0.6)        # still warming up
    assert lr_factor(59, schedule="linear", **kwargs) == 1.0                      # constant until 60
    assert lr_factor(60, schedule="linear", **kwargs) == 1.0
    assert lr_factor(80, schedule="linear", **kwargs) == pytest.approx(0.5)       # half-way 60 -> 100
    assert lr_factor(80, schedule="cosine", **kwargs) == pytest.approx(0.5)
    assert lr_factor(99, schedule="linear", **kwargs) == pytest.approx(1 / 40)
    # a start inside the warm-up decays from its end, as without decay_start
    assert lr_factor(55, schedule="linear", warmup=10, total=100, decay_start=3) == pytest.approx(0.5)


def test_min_snr_weight_at_known_timesteps():
    scheduler = build_ddpm_scheduler()
    abar = scheduler.alphas_cumprod
    t = torch.tensor([0, 999])
    w = min_snr_weight(t, abar, 5.0)
    snr0 = abar[0] / (1 - abar[0])                 # ~ 1e4: clamped to 5
    assert w[0] == pytest.approx(float(5.0 / snr0), rel=1e-5)
    assert w[1] == pytest.approx(1.0)              # SNR ~ 4e-5 < 5: weight 1
    t_mid = int(torch.argmin((abar / (1 - abar) - 5.0).abs()))
    assert min_snr_weight(torch.tensor([t_mid]), abar, 5.0)[0] == pytest.approx(1.0, abs=0.02)


def test_min_snr_prepare_batch_and_inferer_give_the_weighted_mse():
    scheduler = build_ddpm_scheduler()
    prepare = WeightedPrepareBatch(1000, alphas_cumprod=scheduler.alphas_cumprod, min_snr_gamma=5.0)
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    torch.manual_seed(0)
    inputs, target, args, kwargs = prepare({"image": images})
    torch.manual_seed(0)
    noise = torch.randn_like(images)
    t = torch.randint(0, 1000, (4,))
    assert torch.equal(kwargs["timesteps"], t) and torch.equal(kwargs["noise"], noise)

    net = build_diffusion_unet(**TINY)
    inferer = WeightedDiffusionInferer(scheduler)
    pred_scaled = inferer(inputs, net, *args, **kwargs)
    pred = inferer(inputs, net, noise=noise, timesteps=t)
    loss = torch.nn.functional.mse_loss(pred_scaled, target)
    w = min_snr_weight(t, scheduler.alphas_cumprod, 5.0)
    expected = (w * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="min_snr_gamma"):
        WeightedPrepareBatch(1000, alphas_cumprod=scheduler.alphas_cumprod, min_snr_gamma=0)


def _train(tmp_path, **kwargs):
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ArrayImageDataset(torch.rand(8, 16, 16, generator=torch.Generator().manual_seed(1))), batch_size=4, shuffle=True)
    trainer = create_prior_trainer(
        network=build_diffusion_unet(**TINY), train_data_loader=loader, image_shape=(1, 16, 16),
        output_dir=tmp_path, device="cpu", log_interval=1, checkpoint_interval=100, sample_grid=False,
        **kwargs,
    )
    trainer.run()
    with (tmp_path / "loss.csv").open() as f:
        return trainer, list(csv.DictReader(f))


def test_trainer_cosine_schedule_reaches_zero_and_is_logged(tmp_path):
    lr = 1e-3
    trainer, rows = _train(tmp_path, max_epochs=5, lr=lr, lr_schedule="cosine", lr_warmup=2)   # 10 iterations
    logged = [float(r["lr"]) for r in rows]
    # the lr logged after iteration i (1-based) is the one iteration i + 1 would use: factor(i)
    expected = [lr * lr_factor(i, schedule="cosine", warmup=2, total=10) for i in range(1, 11)]
    assert logged == pytest.approx(expected, rel=1e-3, abs=1e-12)
    assert logged[0] == pytest.approx(lr)          # warm-up over: lr * 2 / 2
    assert logged[-2] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 7 / 8)), rel=1e-3)


def test_trainer_resumed_constant_run_ends_with_a_linear_cool_down(tmp_path):
    lr = 1e-3
    first, _ = _train(tmp_path / "a", max_epochs=2, lr=lr, lr_warmup=1)            # 4 iterations, constant
    checkpoint = tmp_path / "a" / "checkpoint" / "checkpoint_final.pt"
    _, rows = _train(tmp_path / "b", max_epochs=5, lr=lr, lr_warmup=1, lr_schedule="linear",
                     lr_decay_start=4, resume_from=checkpoint)                       # iterations 5..10
    assert [int(r["iteration"]) for r in rows] == list(range(5, 11))
    # after iteration i the lr is the one iteration i + 1 uses: 1 - (i - 4) / 6 of the base
    assert [float(r["lr"]) for r in rows] == pytest.approx([lr * (1 - (i - 4) / 6) for i in range(5, 11)], rel=1e-3, abs=1e-12)


def test_trainer_constant_default_keeps_lr(tmp_path):
    _, rows = _train(tmp_path, max_epochs=2, lr=5e-4)
    assert {float(r["lr"]) for r in rows} == {5e-4}


def test_trainer_min_snr_changes_the_loss(tmp_path):
    _, plain = _train(tmp_path / "plain", max_epochs=1)
    _, weighted = _train(tmp_path / "snr", max_epochs=1, min_snr_gamma=0.01)
    # same seed, same first batch and draws: the weighted loss is the MSE times w(t) = min(1, 0.01 / SNR),
    # below 0.1 for every t under ~750
    assert float(weighted[0]["loss"]) < 0.5 * float(plain[0]["loss"])


def test_trainer_refuses_bad_recipe_keys(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule"):
        _train(tmp_path, max_epochs=1, lr_schedule="step")
    with pytest.raises(ValueError, match="lr_warmup"):
        _train(tmp_path, max_epochs=1, lr_warmup=-1)
    with pytest.raises(ValueError, match="lr_decay_start"):
        _train(tmp_path, max_epochs=1, lr_schedule="linear", lr_decay_start=2)    # 2 iterations in all
    with pytest.raises(ValueError, match="lr_decay_start needs"):
        _train(tmp_path, max_epochs=2, lr_decay_start=1)


def test_trainer_keeps_snapshots_of_every_export(tmp_path):
    _train(tmp_path, max_epochs=3, keep_snapshots=True, export_name="tiny.pt")   # 6 iterations, interval 100
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert snapshots == ["tiny_it0000006.pt"]      # the final export only (no interval reached)
    final = torch.load(tmp_path / "tiny.pt", weights_only=True)
    snap = torch.load(tmp_path / "snapshots" / snapshots[0], weights_only=True)
    assert all(torch.equal(final[k], snap[k]) for k in final)


def test_v_parameterization_is_exact_for_the_true_v_and_bounds_x0():
    """eps = sqrt(1 - abar) x_t + sqrt(abar) v is the true eps when F returns the true v."""
    from monai_dmilo.priors.stepwise import linear_alphas_cumprod
    from monai_dmilo.priors.parameterization import VPredictionEps

    abar = linear_alphas_cumprod().float()
    x0, eps = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 500, 999])
    a = abar[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0

    class Oracle(torch.nn.Module):
        def forward(self, x, timesteps):
            return v

    out = VPredictionEps(Oracle())(xt, t)
    assert torch.allclose(out, eps, atol=1e-4)
    # an error of 0.1 in F moves the x0 estimate by at most 0.1 (a plain eps net's error is x156 at t=999)
    class Off(torch.nn.Module):
        def forward(self, x, timesteps):
            return v + 0.1

    eps_off = VPredictionEps(Off())(xt, t)
    x0_off = (xt - (1 - a).sqrt() * eps_off) / a.sqrt()
    assert (x0_off - x0).abs().max() <= 0.1 + 1e-3


def test_v_weight_turns_the_eps_mse_into_the_v_mse():
    from monai_dmilo.training.recipe import loss_weight

    scheduler = build_ddpm_scheduler()
    abar = scheduler.alphas_cumprod
    t = torch.tensor([0, 999])
    w = loss_weight(t, abar, parameterization="v")
    assert w[1] == pytest.approx(float(1 / abar[999]), rel=1e-5) and w[1] > 1e4
    assert torch.equal(loss_weight(t, abar), torch.ones(2))
    # Min-SNR's weight is defined on the x0-MSE: the same eps-space weight for either parameterization
    assert torch.equal(loss_weight(t, abar, min_snr_gamma=5.0, parameterization="v"), min_snr_weight(t, abar, 5.0))
    with pytest.raises(ValueError, match="parameterization"):
        loss_weight(t, abar, parameterization="x0")


def test_trainer_v_parameterization_exports_a_loadable_eps_prior(tmp_path):
    from monai_dmilo.priors.parameterization import VPredictionEps
    from monai_dmilo.priors.loading import build_prior, load_model_config

    trainer, rows = _train(tmp_path, max_epochs=2, parameterization="v", export_name="vprior.pt",
                           network_params={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "num_res_blocks": 1, **TINY})
    assert isinstance(trainer.network, VPredictionEps)
    config = load_model_config(tmp_path / "vprior.yaml")
    assert config["parameterization"] == "v"
    gen = build_prior(tmp_path / "vprior.yaml", num_steps=2)
    assert isinstance(gen.network, VPredictionEps)
    sample = gen(torch.randn(2, 1, 16, 16))
    assert sample.shape == (2, 1, 16, 16) and torch.isfinite(sample).all()
    # the same weights read as a plain eps network would be refused, not silently misread
    config_eps = {**config, "parameterization": "eps"}
    with pytest.raises(ValueError, match="does not match prior"):
        build_prior(config_eps, num_steps=2)
    with pytest.raises(ValueError, match="parameterization"):
        _train(tmp_path / "bad", max_epochs=1, parameterization="x0")
