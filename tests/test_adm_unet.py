"""ADMUNet: checkpoint layout of every preset, numerics of its pieces, gradients with frozen weights."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

from monai_dmilo.priors.stepwise import StepwiseDDIM
from monai_dmilo.networks import ADM_PRESETS, ADMUNet, timestep_embedding
from monai_dmilo.networks.adm_blocks import AttentionBlock

# The parameter manifests of the released checkpoints (name<TAB>shape per line, shapes as AxB).
# They live in the design folder next to the repository; their sha256 is pinned here so the test
# still checks the exact layout where that folder is absent.
MANIFESTS = {
    "ffhq_10m": ("adm_ffhq_10m_manifest.tsv", "aeadb2b2ef48b101e388179e009c12b72589adde34ccb7389f5910d1741b6a3d"),
    "celebahq_p2": ("adm_ffhq_10m_manifest.tsv", "aeadb2b2ef48b101e388179e009c12b72589adde34ccb7389f5910d1741b6a3d"),
    "lsun_bedroom": (
        "adm_imagenet256_uncond_manifest.tsv", "dcf04a6a3d3fbc422bb34f57788dd3df6cac028d8d1d7d9157c11e3ce93ca2ee"
    ),
    "imagenet256_uncond": (
        "adm_imagenet256_uncond_manifest.tsv", "dcf04a6a3d3fbc422bb34f57788dd3df6cac028d8d1d7d9157c11e3ce93ca2ee"
    ),
}
_REPO = Path(__file__).resolve().parents[1]
_MANIFEST_DIRS = [_REPO / "tests" / "data", _REPO.parent / "shared" / "design"]


def manifest_text(model: torch.nn.Module) -> str:
    lines = ["name\tshape"] + [
        f"{k}\t{'x'.join(str(s) for s in v.shape)}" for k, v in model.state_dict().items()
    ]
    return "\n".join(lines) + "\n"


def parse_manifest(text: str) -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in text.splitlines()[1:] if line]
    return {name: tuple(int(s) for s in shape.split("x")) for name, shape in rows}


def tiny_adm(**overrides) -> ADMUNet:
    params = dict(
        image_size=32, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
        attention_resolutions=(16, 8), channel_mult=(1, 2), num_head_channels=16, norm_num_groups=8,
    )
    params.update(overrides)
    torch.manual_seed(0)
    model = ADMUNet(**params)
    # ADM zero-initialises its residual outputs; randomise everything so every path carries signal.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("preset", sorted(MANIFESTS))
def test_preset_state_dict_matches_checkpoint_manifest(preset):
    filename, digest = MANIFESTS[preset]
    model = ADMUNet.from_preset(preset, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    text = manifest_text(model)
    for folder in _MANIFEST_DIRS:
        if (folder / filename).is_file():
            expected = parse_manifest((folder / filename).read_text())
            got = parse_manifest(text)
            assert sorted(set(expected) - set(got)) == [], "missing parameters"
            assert sorted(set(got) - set(expected)) == [], "unexpected parameters"
            assert {k: v for k, v in got.items() if expected[k] != v} == {}, "shape mismatches"
            break
    assert hashlib.sha256(text.encode()).hexdigest() == digest


def test_presets_are_the_documented_architectures():
    assert set(ADM_PRESETS) == {"ffhq_10m", "celebahq_p2", "lsun_bedroom", "imagenet256_uncond"}
    ffhq = ADMUNet.from_preset("ffhq_10m", device="meta")
    big = ADMUNet.from_preset("imagenet256_uncond", device="meta")
    assert ffhq.out_channels == 6 and big.out_channels == 6
    assert sum(p.numel() for p in ffhq.parameters()) < sum(p.numel() for p in big.parameters())
    assert ADMUNet.from_preset("ffhq_10m", device="meta", use_checkpoint=True).middle_block.use_checkpoint
    with pytest.raises(ValueError, match="unknown ADM preset"):
        ADMUNet.from_preset("ffhq_1m")


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 5.0, 999.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    for j in range(4):
        freq = math.exp(-math.log(10000.0) * j / 4)
        torch.testing.assert_close(emb[2, j], torch.tensor(math.cos(999.0 * freq)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(emb[2, 4 + j], torch.tensor(math.sin(999.0 * freq)), rtol=1e-4, atol=1e-4)
    assert timestep_embedding(t, 7).shape == (3, 7)


def explicit_attention(block: AttentionBlock, x: torch.Tensor, heads: int, legacy: bool) -> torch.Tensor:
    """Softmax attention written out with einsum, reading the fused qkv channels per layout."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    qkv = block.qkv(block.norm(flat))
    ch = c // heads
    if legacy:  # per head: [q_h; k_h; v_h]
        q, k, v = qkv.reshape(b * heads, 3 * ch, h * w).split(ch, dim=1)
    else:  # [q; k; v], then heads
        q, k, v = (part.reshape(b * heads, ch, h * w) for part in qkv.chunk(3, dim=1))
    weights = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
    out = torch.einsum("bts,bcs->bct", weights, v).reshape(b, c, h * w)
    return (flat + block.proj_out(out)).reshape(b, c, h, w)


@pytest.mark.parametrize("legacy", [True, False])
def test_attention_equals_explicit_formula(legacy):
    torch.manual_seed(1)
    block = AttentionBlock(32, num_heads=2, num_groups=8, new_attention_order=not legacy).double()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    x = torch.randn(2, 32, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(block(x), explicit_attention(block, x, 2, legacy), rtol=1e-10, atol=1e-10)
    # The two channel layouts really differ (so the legacy default matters for real checkpoints).
    assert not torch.allclose(block(x), explicit_attention(block, x, 2, not legacy))


def test_tiny_forward_shapes_and_timestep_forms():
    model = tiny_adm().eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x, torch.tensor([10, 500]))
    assert out.shape == (2, 6, 32, 32) and torch.isfinite(out).all()
    # A scalar timestep is broadcast; samples are independent of their batch mates.
    torch.testing.assert_close(model(x, torch.tensor(10)), model(x, torch.tensor([10, 10])))
    torch.testing.assert_close(model(x[:1], torch.tensor([10])), out[:1], rtol=1e-5, atol=1e-5)
    # The timestep matters.
    assert not torch.allclose(model(x, torch.tensor([10, 10])), model(x, torch.tensor([900, 900])))
    # ADM works at any size divisible by 2 ** (levels - 1).
    assert model(torch.randn(1, 3, 16, 48), torch.tensor([3])).shape == (1, 6, 16, 48)


def test_fresh_init_zero_output_layers():
    model = ADMUNet(
        image_size=16, model_channels=16, out_channels=3, num_res_blocks=1, attention_resolutions=(8,),
        channel_mult=(1, 2), num_head_channels=8, norm_num_groups=8,
    )
    assert torch.count_nonzero(model.out[2].weight) == 0
    assert torch.count_nonzero(model.input_blocks[1][0].out_layers[3].weight) == 0


@pytest.mark.parametrize("use_checkpoint", [False, True])
def test_frozen_network_backpropagates_to_input(use_checkpoint):
    model = tiny_adm(use_checkpoint=use_checkpoint).eval().requires_grad_(False)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2), requires_grad=True)
    model(x, torch.tensor([999, 1])).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    if use_checkpoint:  # checkpointing changes memory, not the gradient
        reference = tiny_adm().eval().requires_grad_(False)
        x2 = x.detach().clone().requires_grad_(True)
        reference(x2, torch.tensor([999, 1])).square().mean().backward()
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("conv_resample", [True, False])
def test_plain_resampling_variant(conv_resample):
    model = tiny_adm(resblock_updown=False, conv_resample=conv_resample, use_scale_shift_norm=False)
    names = set(model.state_dict())
    assert ("input_blocks.2.0.op.weight" in names) == conv_resample
    assert ("output_blocks.1.2.conv.weight" in names) == conv_resample  # res, attention, upsample
    assert model(torch.randn(1, 3, 32, 32), torch.tensor([5])).shape == (1, 6, 32, 32)


def test_tiny_adm_inside_stepwise_ddim():
    gen = StepwiseDDIM(tiny_adm(), num_steps=3, image_shape=(3, 32, 32))
    z = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    x = gen.sample(z)
    assert x.shape == (1, 3, 32, 32) and torch.isfinite(x).all()
    x.square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in gen.network.parameters())
    # The learned-variance half was dropped: eps has C channels.
    assert gen.eps(z.detach(), 0).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(model_channels=20), "norm_num_groups"),
        (dict(num_head_channels=12), "num_head_channels"),
        (dict(channel_mult=()), "channel_mult"),
        (dict(num_res_blocks=0), "num_res_blocks"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_bad_hyperparameters_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_adm(**overrides)


def test_bad_inputs_raise():
    model = tiny_adm()
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 3, 31, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(1, 1, 32, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 3, 32, 32), torch.tensor([1, 2, 3]))


@pytest.mark.slow
def test_full_size_ffhq_preset_forward_and_input_gradient():
    """The real ffhq_10m architecture at 256x256 (random weights): output shape, frozen backprop."""
    torch.manual_seed(0)
    model = ADMUNet.from_preset("ffhq_10m").eval().requires_grad_(False)
    with torch.no_grad():
        model.out[2].weight.normal_(0, 0.01)  # the zero-initialised output conv would hide the gradient
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    out = model(x, torch.tensor([999]))
    assert out.shape == (1, 6, 256, 256) and torch.isfinite(out).all()
    out[:, :3].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
