"""A UNet whose parameters match the guided-diffusion ("ADM") checkpoints, so they load strictly.

The layout (module names ``time_embed``, ``input_blocks``, ``middle_block``, ``output_blocks``,
``out`` and, inside them, ``in_layers`` / ``emb_layers`` / ``out_layers`` / ``skip_connection`` /
``norm`` / ``qkv`` / ``proj_out``) follows Dhariwal & Nichol, "Diffusion Models Beat GANs on Image
Synthesis" (2021), so that the state dicts of the checkpoints used by DPS / DMPlug / DMILO
(FFHQ, CelebA-HQ, LSUN bedroom, ImageNet 256 unconditional) load with ``strict=True``.

Differences from the research code, on purpose:

* attention is computed with :func:`torch.nn.functional.scaled_dot_product_attention` and is
  never gradient-checkpointed by force (the original always checkpointed attention with a custom
  autograd function that breaks when the parameters are frozen); ``use_checkpoint=True`` opts in
  to non-reentrant checkpointing of every block, which works with frozen parameters;
* no fp16 conversion methods: use ``torch.autocast`` (``StepwiseDDIM(autocast_dtype=...)``);
* hyperparameters are keyword-only and validated; named presets live in :data:`ADM_PRESETS`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .adm_blocks import AttentionBlock, GroupNorm32, Resample, ResBlock, TimestepSequential, timestep_embedding, zero_module

__all__ = ["ADMUNet", "ADM_PRESETS", "timestep_embedding"]


ADM_PRESETS: dict[str, dict[str, Any]] = {
    # DPS / DMPlug / DMILO FFHQ model (ffhq_10m.pt) and the P2-weighting CelebA-HQ model.
    "ffhq_10m": dict(
        image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=1,
        attention_resolutions=(16,), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
        use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
    "celebahq_p2": dict(
        image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=1,
        attention_resolutions=(16,), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
        use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
    # guided-diffusion's lsun_bedroom.pt and 256x256_diffusion_uncond.pt.
    "lsun_bedroom": dict(
        image_size=256, in_channels=3, model_channels=256, out_channels=6, num_res_blocks=2,
        attention_resolutions=(32, 16, 8), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
        use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
    "imagenet256_uncond": dict(
        image_size=256, in_channels=3, model_channels=256, out_channels=6, num_res_blocks=2,
        attention_resolutions=(32, 16, 8), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
        use_scale_shift_norm=True, resblock_updown=True, dropout=0.0,
    ),
}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


class ADMUNet(nn.Module):
    """The guided-diffusion (ADM) UNet, unconditional, epsilon (+ learned variance) output.

    Args:
        image_size: training resolution; with ``attention_resolutions`` it decides where attention
            goes (at downsampling factor ``image_size // resolution``).
        in_channels: image channels C.
        model_channels: base width.
        out_channels: ``C`` (eps) or ``2C`` (eps and learned variance).
        num_res_blocks: residual blocks per level (the decoder has one more per level).
        attention_resolutions: feature-map resolutions that get self-attention, e.g. ``(16,)``.
        channel_mult: width multiplier per level; the input is downsampled ``len - 1`` times.
        dropout: dropout in residual blocks (inactive in eval mode).
        num_heads: attention heads, used when ``num_head_channels`` is None.
        num_head_channels: channels per head (overrides ``num_heads``).
        use_scale_shift_norm: FiLM-like conditioning ``norm(h) * (1 + scale) + shift``.
        resblock_updown: resample with residual blocks instead of plain (conv) resampling.
        conv_resample: with ``resblock_updown=False``, use a conv in the resampling layers.
        new_attention_order: layout of the fused qkv channels (False for the released checkpoints).
        norm_num_groups: GroupNorm groups (32 in ADM; smaller values allow tiny test networks).
        use_checkpoint: gradient-checkpoint every block (non-reentrant, works with frozen weights).

    Shapes:
        ``forward(x, timesteps)``: x ``(B, in_channels, H, W)`` with H, W divisible by
        ``2 ** (len(channel_mult) - 1)``, timesteps ``(B,)`` (or a scalar) ->
        ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        *,
        image_size: int,
        in_channels: int = 3,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        dropout: float = 0.0,
        num_heads: int = 1,
        num_head_channels: int | None = None,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        conv_resample: bool = True,
        new_attention_order: bool = False,
        norm_num_groups: int = 32,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("image_size", image_size), ("in_channels", in_channels), ("model_channels", model_channels),
            ("out_channels", out_channels), ("num_res_blocks", num_res_blocks), ("num_heads", num_heads),
            ("norm_num_groups", norm_num_groups),
        ):
            _positive_int(name, value)
        if num_head_channels is not None:
            _positive_int("num_head_channels", num_head_channels)
        if not channel_mult:
            raise ValueError(f"channel_mult must be a non-empty sequence of positive ints, got {channel_mult!r}.")
        for m in channel_mult:
            _positive_int("channel_mult entries", m)
        for r in attention_resolutions:
            _positive_int("attention_resolutions entries", r)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        widths = [model_channels * m for m in channel_mult]
        for w in widths:
            if w % norm_num_groups:
                raise ValueError(
                    f"every level width (model_channels * channel_mult = {widths}) must be divisible "
                    f"by norm_num_groups={norm_num_groups}."
                )

        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.channel_mult = tuple(channel_mult)
        attention_ds = {image_size // r for r in attention_resolutions}

        def heads(ch: int) -> int:
            if num_head_channels is None:
                return num_heads
            if ch % num_head_channels:
                raise ValueError(f"width {ch} is not divisible by num_head_channels={num_head_channels}.")
            return ch // num_head_channels

        def res(ch: int, out: int, **kw: bool) -> ResBlock:
            return ResBlock(
                ch, emb_dim, out_channels=out, dropout=dropout,
                use_scale_shift_norm=use_scale_shift_norm, num_groups=norm_num_groups, **kw,
            )

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(
                ch, num_heads=heads(ch), num_groups=norm_num_groups, new_attention_order=new_attention_order
            )

        def seq(*blocks: nn.Module) -> TimestepSequential:
            return TimestepSequential(*blocks, use_checkpoint=use_checkpoint)

        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        ch = widths[0]
        self.input_blocks = nn.ModuleList([seq(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        ds = 1
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, width)]
                ch = width
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(seq(*layers))
                skip_channels.append(ch)
            if level != len(widths) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Resample(ch, up=False, use_conv=conv_resample)
                self.input_blocks.append(seq(down))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = seq(res(ch, ch), attn(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), width)]
                ch = width
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Resample(ch, up=True, use_conv=conv_resample))
                    ds //= 2
                self.output_blocks.append(seq(*layers))

        self.out = nn.Sequential(
            GroupNorm32(norm_num_groups, ch), nn.SiLU(), zero_module(nn.Conv2d(widths[0], out_channels, 3, padding=1))
        )

    @classmethod
    def from_preset(cls, name: str, *, device: torch.device | str | None = None, **overrides: Any) -> "ADMUNet":
        """Build a named ADM architecture (see :data:`ADM_PRESETS`).

        Args:
            name: one of ``ffhq_10m``, ``celebahq_p2``, ``lsun_bedroom``, ``imagenet256_uncond``.
            device: where to allocate the parameters; ``"meta"`` builds a weightless skeleton
                (fast, no memory) e.g. to inspect the state-dict layout.
            overrides: hyperparameters replacing the preset's (e.g. ``use_checkpoint=True``).
        """
        if name not in ADM_PRESETS:
            raise ValueError(f"unknown ADM preset {name!r}; expected one of {sorted(ADM_PRESETS)}.")
        params = {**ADM_PRESETS[name], **overrides}
        if device is None:
            return cls(**params)
        with torch.device(device):
            return cls(**params)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Predict eps (and the variance interpolation if ``out_channels = 2C``).

        Args:
            x: ``(B, in_channels, H, W)`` noisy images.
            timesteps: ``(B,)`` timesteps, or a scalar applied to the whole batch.

        Returns:
            ``(B, out_channels, H, W)``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"H and W must be divisible by {factor}, got {tuple(x.shape[-2:])}.")
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must have shape ({x.shape[0]},) or be a scalar, got {tuple(timesteps.shape)}.")
        t_emb = timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype)
        emb = self.time_embed(t_emb)
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))
