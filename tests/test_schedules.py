"""Any discrete noise schedule and prediction type: StepwiseDDIM's step is diffusers' DDIM step
(eta 0) where diffusers is installed, and the schedules match diffusers' betas."""
from __future__ import annotations

import pytest
import torch

from monai_dmilo.priors import StepwiseDDIM
from monai_dmilo.priors.parameterization import parameterization_weight, wrap_network
from monai_dmilo.priors.schedules import make_alphas_cumprod

SCHEDULES = {  # diffusers' beta_schedule -> (beta_start, beta_end)
    "linear": (1e-4, 0.02),
    "scaled_linear": (0.0015, 0.0195),
    "squaredcos_cap_v2": (1e-4, 0.02),
}
#: diffusers' prediction_type -> this project's parameterization
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "sample"}


class ToyNetwork(torch.nn.Module):
    """A smooth function of ``(x, t)``, whatever it is taken to predict."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.7 * x + t.view(-1, 1, 1, 1).to(x.dtype) / 1000.0) + 0.1 * x.flip(-1)


@pytest.mark.parametrize("beta_schedule", sorted(SCHEDULES))
def test_schedules_match_diffusers_betas(beta_schedule):
    diffusers = pytest.importorskip("diffusers")
    start, end = SCHEDULES[beta_schedule]
    reference = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=start, beta_end=end,
                                        beta_schedule=beta_schedule).alphas_cumprod.double()
    ours = make_alphas_cumprod(beta_schedule, 1000, start, end)
    torch.testing.assert_close(ours, reference, rtol=2e-4, atol=1e-7)  # diffusers accumulates in float32


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("prediction_type", sorted(PREDICTIONS))
@pytest.mark.parametrize("beta_schedule", sorted(SCHEDULES))
def test_one_step_equals_diffusers_ddim_step(beta_schedule, prediction_type, clip):
    diffusers = pytest.importorskip("diffusers")
    start, end = SCHEDULES[beta_schedule]
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=start, beta_end=end,
                                        beta_schedule=beta_schedule, prediction_type=prediction_type,
                                        clip_sample=clip, set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    # float64 on both sides (diffusers keeps abar in float32 and takes its square roots there), with
    # the same abar values: what is compared is the step's maths, not rounding
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    network = ToyNetwork()
    abar = scheduler.alphas_cumprod
    eps_network = wrap_network(network, PREDICTIONS[prediction_type], alphas_cumprod=abar)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    for t in (900, 500, 100):
        expected = scheduler.step(network(x, torch.full((2,), t)), t, x, eta=0.0,
                                  use_clipped_model_output=True).prev_sample
        prior = StepwiseDDIM(eps_network, timesteps=[(t, t - 100)], clip_x0=clip, alphas_cumprod=abar)
        torch.testing.assert_close(prior.step(x, 0), expected, rtol=0, atol=1e-6)


def test_named_and_explicit_schedules_and_their_errors():
    explicit = make_alphas_cumprod("scaled_linear", 50, 0.0015, 0.0195)
    prior = StepwiseDDIM(ToyNetwork(), num_steps=3, num_train_timesteps=50, alphas_cumprod=explicit)
    torch.testing.assert_close(prior.alphas_cumprod, explicit)
    sibling = prior.with_uniform_steps(5)  # siblings keep the schedule
    torch.testing.assert_close(sibling.alphas_cumprod, explicit)
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        make_alphas_cumprod("cosine")
    with pytest.raises(ValueError, match="strictly decreasing"):
        make_alphas_cumprod(num_train_timesteps=3, alphas_cumprod=[0.9, 0.95, 0.5])
    with pytest.raises(ValueError, match="num_train_timesteps = 4"):
        make_alphas_cumprod(num_train_timesteps=4, alphas_cumprod=[0.9, 0.5])


def test_sample_prediction_round_trip_and_training_weight():
    """A network that returns the true x0 gives the true eps; the x0-MSE is the eps-MSE times
    (1 - abar) / abar."""
    abar = make_alphas_cumprod("squaredcos_cap_v2", 1000)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    eps = torch.randn(3, 1, 4, 4)
    t = torch.tensor([10, 500, 990])
    a = abar[t].float().view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps

    class Oracle(torch.nn.Module):
        def forward(self, x, timesteps):
            return x0

    out = wrap_network(Oracle(), "sample", beta_schedule="squaredcos_cap_v2")(xt, t)
    torch.testing.assert_close(out, eps, rtol=1e-3, atol=1e-3)
    err = torch.randn(3, 1, 4, 4) * 0.01  # an x0 error and the eps error it makes
    eps_err = -(a / (1 - a)).sqrt() * err
    weight = parameterization_weight(t, abar, "sample").view(-1, 1, 1, 1)
    torch.testing.assert_close((weight * eps_err**2).flatten(1).mean(1), (err**2).flatten(1).mean(1))


def test_model_config_takes_a_named_schedule_and_refuses_an_unknown_one(tmp_path):
    from helpers import make_prior
    from monai_dmilo.priors.loading import build_network, build_prior, load_model_config
    from monai_dmilo.priors.parameterization import SamplePredictionEps

    cfg = make_prior(tmp_path)
    text = cfg.read_text()
    schedule = "schedule: {beta_schedule: scaled_linear, beta_start: 0.0015, beta_end: 0.0195}\n"
    expected = make_alphas_cumprod("scaled_linear", 1000, 0.0015, 0.0195)
    cfg.write_text(text + schedule)
    torch.testing.assert_close(build_prior(cfg, num_steps=2).alphas_cumprod, expected)
    cfg.write_text(text + schedule + "parameterization: sample\n")
    network = build_network(cfg)
    assert isinstance(network, SamplePredictionEps)
    torch.testing.assert_close(network.abar, expected.float())
    cfg.write_text(text + "schedule: {beta_schedule: cosine}\n")
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        load_model_config(cfg)
