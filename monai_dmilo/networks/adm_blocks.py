"""The building blocks of the guided-diffusion (ADM) UNet (:mod:`monai_dmilo.networks.adm_unet`): the
timestep embedding, group norm in float32, up/down-sampling, residual and attention blocks, with the
parameter names of the research checkpoints."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["timestep_embedding", "GroupNorm32", "zero_module", "Resample", "ResBlock", "AttentionBlock",
           "TimestepSequential"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep embedding, ``[cos | sin]`` halves as in the ADM checkpoints.

    Args:
        timesteps: ``(B,)`` timesteps (may be fractional).
        dim: embedding size.
        max_period: the longest period of the sinusoids.

    Returns:
        ``(B, dim)`` float32 embedding.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 (as ADM does for fp16) and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        weight = self.weight.to(dtype) if self.weight is not None else None
        bias = self.bias.to(dtype) if self.bias is not None else None
        return F.group_norm(x.to(dtype), self.num_groups, weight, bias, self.eps).to(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialise a module's parameters (the ADM init of residual output layers)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Resample(nn.Module):
    """2x up- or down-sampling, optionally followed/implemented by a conv (``conv`` / ``op``)."""

    def __init__(self, channels: int, *, up: bool, use_conv: bool) -> None:
        super().__init__()
        self.up = up
        if use_conv and up:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.use_conv = use_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if self.use_conv else x
        return self.op(x) if self.use_conv else F.avg_pool2d(x, kernel_size=2, stride=2)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling (up/down)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        *,
        out_channels: int,
        dropout: float,
        use_scale_shift_norm: bool,
        num_groups: int,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(num_groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if self.updown:
            self.h_upd = Resample(channels, up=up, use_conv=False)
            self.x_upd = Resample(channels, up=up, use_conv=False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(num_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions (1x1 conv qkv, zero-init projection).

    ``new_attention_order=False`` reads the fused qkv channels head by head as ``[q_h, k_h, v_h]``
    (the layout of the released ADM checkpoints); ``True`` reads them as ``[q, k, v]`` first.
    """

    def __init__(self, channels: int, *, num_heads: int, num_groups: int, new_attention_order: bool) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.new_attention_order = new_attention_order
        self.norm = GroupNorm32(num_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        length = qkv.shape[-1]
        head_ch = c // self.num_heads
        if self.new_attention_order:
            q, k, v = (t.reshape(b * self.num_heads, head_ch, length) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.num_heads, 3 * head_ch, length).split(head_ch, dim=1)
        # (B*heads, T, head_ch); SDPA's default scale 1/sqrt(head_ch) equals ADM's (1/ch^0.25)^2.
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h.transpose(1, 2).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class TimestepSequential(nn.Sequential):
    """A sequence of blocks; residual blocks also receive the timestep embedding."""

    def __init__(self, *blocks: nn.Module, use_checkpoint: bool = False) -> None:
        super().__init__(*blocks)
        self.use_checkpoint = use_checkpoint

    def _run(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x, emb) if isinstance(block, (ResBlock, AttentionBlock)) else block(x)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._run, x, emb, use_reentrant=False)
        return self._run(x, emb)
