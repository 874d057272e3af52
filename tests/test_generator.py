"""StepwiseDDIM against an independent float64 implementation of docs/algorithms.md section 2."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from monai_dmilo.priors.stepwise import StepwiseDDIM, reference_timesteps, uniform_timesteps


class TinyEps(nn.Module):
    """A small deterministic, timestep-dependent denoiser ``(B, C, H, W), (B,) -> (B, out, H, W)``."""

    def __init__(self, channels: int = 2, out_channels: int | None = None, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(0.3 * torch.randn(self.conv.weight.shape, generator=gen))
            self.conv.bias.copy_(0.1 * torch.randn(self.conv.bias.shape, generator=gen))
        self.seen_timesteps: list[list[int]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen_timesteps.append(t.tolist())
        scale = (1.0 + t.to(x.dtype) / 1000.0).view(-1, 1, 1, 1)
        out = self.conv.out_channels
        residual = torch.cat([x] * (out // x.shape[1] + 1), dim=1)[:, :out]
        return torch.tanh(self.conv(x)) * scale + 0.5 * residual


def abar_float64() -> np.ndarray:
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def reference_step(net: nn.Module, z: torch.Tensor, t: int, t_prev: int, *, clip: bool, channels: int) -> torch.Tensor:
    """g_i(z) written from docs/algorithms.md section 2, in float64."""
    abar = abar_float64()
    a_t, a_prev = float(abar[t]), float(abar[t_prev])
    e = net(z, torch.full((z.shape[0],), t, dtype=torch.long))[:, :channels]
    x0 = (z - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
    if clip:
        x0 = torch.clamp(x0, -1, 1)
        e = (z - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e


def make(clip: bool = True, channels: int = 2, out_channels: int | None = None, **kw) -> StepwiseDDIM:
    net = TinyEps(channels, out_channels).double()
    return StepwiseDDIM(net, clip_x0=clip, image_shape=(channels, 8, 8), **kw)


def test_default_reference_schedule_is_pinned():
    gen = StepwiseDDIM(TinyEps())
    assert gen.timesteps == [(999, 666), (666, 333), (333, 0)]
    assert gen.num_steps == 3
    assert reference_timesteps(3) == [(999, 666), (666, 333), (333, 0)]
    assert reference_timesteps(1) == [(999, 0)]
    assert reference_timesteps(10)[:2] == [(999, 900), (900, 800)]  # the capped first step meets step 1


@pytest.mark.parametrize("num_steps", [1, 2, 3, 4, 5, 7, 10, 20, 999])
def test_reference_chain_is_continuous(num_steps):
    """Each step ends at the timestep the next one starts from, and the chain ends at 0."""
    pairs = reference_timesteps(num_steps)
    assert len(pairs) == num_steps and pairs[0][0] == min(num_steps * (1000 // num_steps), 999) and pairs[-1][1] == 0
    assert all(pairs[i][1] == pairs[i + 1][0] for i in range(num_steps - 1)), pairs
    assert all(t > t_prev for t, t_prev in pairs), pairs
    assert uniform_timesteps(4) == [(999, 749), (749, 500), (500, 250), (250, 0)]
    assert StepwiseDDIM(TinyEps(), num_steps=4, schedule="uniform").timesteps == uniform_timesteps(4)
    explicit = [(900, 400), (400, 10)]
    assert StepwiseDDIM(TinyEps(), timesteps=explicit).timesteps == explicit


def test_uniform_schedule_takes_at_most_T_minus_1_distinct_steps():
    finest = uniform_timesteps(999)
    assert finest[0] == (999, 998) and finest[-1] == (1, 0) and len(set(finest)) == 999
    with pytest.raises(ValueError, match=r"num_steps must be an integer in \[1, 999\], got 1000"):
        uniform_timesteps(1000)


def test_schedule_buffer_matches_float64_formula():
    gen = make()
    np.testing.assert_allclose(gen.alphas_cumprod.numpy(), abar_float64(), rtol=1e-12)
    assert gen.alphas_cumprod.dtype == torch.float64


@pytest.mark.parametrize("clip", [True, False])
def test_step_equals_independent_float64_formula(clip):
    gen = make(clip)
    z = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for i, (t, t_prev) in enumerate(gen.timesteps):
        got = gen.step(z, i)
        want = reference_step(gen.network, z, t, t_prev, clip=clip, channels=2)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        z = got
    # The network saw the listed timesteps, one per sample.
    assert gen.network.seen_timesteps[-2] == [333, 333, 333]


def test_last_step_uses_abar_0_not_one():
    gen = make(True)
    z = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    i = gen.num_steps - 1
    assert gen.timesteps[i][1] == 0
    out = gen.step(z, i)
    x0, eps = gen.denoise(z, i)
    a0 = float(abar_float64()[0])
    assert a0 < 1.0
    torch.testing.assert_close(out, math.sqrt(a0) * x0 + math.sqrt(1 - a0) * eps, rtol=1e-12, atol=1e-12)
    # abar_prev = 1 would return x0 itself; the noise term 0.01 * eps is visible.
    assert (out - x0).abs().max() > 1e-3


def test_clipping_is_switchable_and_active_at_high_noise():
    z = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    clipped, unclipped = make(True), make(False)
    x0_c, _ = clipped.denoise(z, 0)
    x0_u, _ = unclipped.denoise(z, 0)
    assert x0_c.abs().max() <= 1.0
    assert x0_u.abs().max() > 1.0
    assert not torch.allclose(clipped.step(z, 0), unclipped.step(z, 0))


def test_learned_variance_output_is_split():
    plain = make(True, channels=2)
    learned = make(True, channels=2, out_channels=4)
    # Same eps weights; the variance half is large garbage that must be ignored.
    with torch.no_grad():
        learned.network.conv.weight[:2] = plain.network.conv.weight
        learned.network.conv.bias[:2] = plain.network.conv.bias
        learned.network.conv.bias[2:] = 1e6
    z = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(learned.sample(z), plain.sample(z), rtol=1e-12, atol=1e-12)
    wrong = make(True, channels=2, out_channels=3)
    with pytest.raises(ValueError, match="channels"):
        wrong.step(z, 0)


def test_sample_is_composition_of_steps():
    gen = make(True)
    z = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    chained = gen.step(gen.step(gen.step(z, 0), 1), 2)
    torch.testing.assert_close(gen.sample(z), chained, rtol=0, atol=0)
    torch.testing.assert_close(gen(z), chained, rtol=0, atol=0)


def test_buffers_move_with_to():
    gen = make(True)
    assert "alphas_cumprod" in dict(gen.named_buffers())
    # The network appears once in the state dict (no duplicated aliases).
    assert sum(k.startswith("network.") for k in gen.state_dict()) == 2
    assert set(gen.state_dict()) == {"alphas_cumprod", "network.conv.weight", "network.conv.bias"}
    moved = gen.to("meta")
    assert moved.alphas_cumprod.device.type == "meta"
    assert moved.network.conv.weight.device.type == "meta"


def test_network_is_frozen_and_gradients_reach_z():
    gen = make(True)
    assert all(not p.requires_grad for p in gen.network.parameters())
    gen.train()
    assert not gen.network.training
    z = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64, requires_grad=True)
    out = gen.sample(z)
    out.square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in gen.network.parameters())


def test_gradient_through_chain_matches_finite_differences():
    gen = make(False)  # no clipping: smooth, so central differences are exact up to O(h^2)
    z = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    direction = torch.randn(z.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return gen.step(gen.step(v, 1), 2).square().mean()

    zr = z.clone().requires_grad_(True)
    loss(zr).backward()
    analytic = (zr.grad * direction).sum()
    h = 1e-6
    numeric = (loss(z + h * direction) - loss(z - h * direction)) / (2 * h)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=2000), "num_steps"),
        (dict(schedule="cosine"), "schedule"),
        (dict(timesteps=[(500, 600)]), "timesteps"),
        (dict(timesteps=[(1000, 0)]), "timesteps"),
        (dict(image_shape=(8, 8)), "image_shape"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StepwiseDDIM(TinyEps(), **kwargs)


def test_bad_network_and_step_index():
    with pytest.raises(TypeError, match="network"):
        StepwiseDDIM(lambda x, t: x)  # type: ignore[arg-type]
    gen = make(True)
    z = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    for bad in (-1, 3):
        with pytest.raises(ValueError, match="step index"):
            gen.step(z, bad)


def test_monai_unet_float32_chain(tiny_generator):
    gen = tiny_generator(channels=1, size=16)
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    x = gen.sample(z)
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32 and torch.isfinite(x).all()
    # Batched == one at a time.
    torch.testing.assert_close(gen.sample(z[1:]), x[1:], rtol=1e-5, atol=1e-5)


def test_with_uniform_steps_is_a_sibling_on_the_same_network_and_schedule():
    prior = StepwiseDDIM(TinyEps(), num_steps=3, clip_x0=True, image_shape=(1, 8, 8), beta_end=0.03)
    sibling = prior.with_uniform_steps(10)
    assert sibling.network is prior.network and sibling.num_steps == 10
    assert sibling.timesteps == uniform_timesteps(10) and sibling.clip_x0 and sibling.image_shape == prior.image_shape
    torch.testing.assert_close(sibling.alphas_cumprod, prior.alphas_cumprod)  # same beta schedule (beta_end 0.03)
