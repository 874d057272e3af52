"""A latent diffusion prior: DDIM steps on an autoencoder's latent, then its decoder.

``G = D o g_{N-1} o ... o g_0``: the ``g_i`` are the latent diffusion's DDIM steps
(:class:`~monai_dmilo.priors.stepwise.StepwiseDDIM` on the latent shape) and ``D(z) =
decoder(z / scale_factor)`` maps the scaled latent to an image (MONAI's ``LatentDiffusionInferer``
convention). The decoder is step ``N`` of the chain, so DMILO treats it as its last layer: the
latent has a sparse deviation, and so has the decoded image; DMPlug differentiates through it.
Solvers that need an image-space denoiser at every step (DDRM, DiffPIR, PiGDM, RED-diff, DAPS)
refuse a latent prior (:attr:`~monai_dmilo.solvers.base.Solver.latent_priors`); DPS takes the
gradient of the data fit of the decoded ``x0`` with respect to the latent.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from monai_dmilo.priors.stepwise import StepwiseDDIM

__all__ = ["LatentDDIM"]


class LatentDDIM(nn.Module):
    """A :class:`StepwiseDDIM` over latents followed by a frozen decoder, as one stepwise prior.

    Args:
        latent: the DDIM chain on latents ``(B, c, h, w)``; its ``image_shape`` is the latent shape.
        decoder: ``latent (B, c, h, w) -> image (B, C, H, W)``, e.g. MONAI ``AutoencoderKL.decode``
            wrapped as a module; frozen here.
        scale_factor: the latents the diffusion was trained on are ``scale_factor * encoder(x)``.
        image_shape: ``(C, H, W)`` of the decoded images.

    Attributes:
        num_steps: ``N + 1`` (the decoder is the last step); ``num_diffusion_steps``: N.
        latent_shape: ``(c, h, w)``, what solvers draw ``z_0`` with.
    """

    is_latent = True

    def __init__(self, latent: StepwiseDDIM, decoder: nn.Module, *, scale_factor: float,
                 image_shape: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(latent, StepwiseDDIM):
            raise TypeError(f"latent must be a StepwiseDDIM, got {type(latent).__name__}.")
        if latent.image_shape is None:
            raise ValueError("latent must know its latent shape (StepwiseDDIM(image_shape=(c, h, w))).")
        if not float(scale_factor) > 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor!r}.")
        self.latent = latent
        self.decoder = decoder.eval().requires_grad_(False)
        self.scale_factor = float(scale_factor)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_shape = latent.image_shape
        self.intensity_range = getattr(latent, "intensity_range", (-1.0, 1.0))

    def train(self, mode: bool = True) -> "LatentDDIM":
        super().train(mode)
        self.latent.train(mode)
        self.decoder.eval()
        return self

    # -- the Prior protocol, latent steps first ----------------------------------------------------
    @property
    def network(self) -> nn.Module:
        return self.latent.network

    @property
    def timesteps(self) -> list[tuple[int, int]]:
        """The latent steps' ``(t, t_prev)``; the decoder step has none."""
        return self.latent.timesteps

    @property
    def step_coefficients(self) -> list[tuple[float, float]]:
        return self.latent.step_coefficients

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.latent.alphas_cumprod

    @property
    def num_train_timesteps(self) -> int:
        return self.latent.num_train_timesteps

    @property
    def num_diffusion_steps(self) -> int:
        """N, the latent DDIM steps."""
        return self.latent.num_steps

    @property
    def num_steps(self) -> int:
        """N + 1: the latent steps and the decoder."""
        return self.latent.num_steps + 1

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``D(z)``: scaled latent ``(B, c, h, w)`` -> image ``(B, C, H, W)``, differentiable in ``z``."""
        return self.decoder(z / self.scale_factor)

    def eps(self, z: torch.Tensor, i: int) -> torch.Tensor:
        return self.latent.eps(z, i)

    def denoise(self, z: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent ``(x0, eps)`` at latent step ``i`` (decode ``x0`` for the image)."""
        return self.latent.denoise(z, i)

    def step(self, z: torch.Tensor, i: int) -> torch.Tensor:
        """Latent DDIM step ``i < N``, or the decoder for ``i = N``."""
        if i == self.latent.num_steps:
            return self.decode(z)
        return self.latent.step(z, i)

    def _with_latent(self, latent: StepwiseDDIM) -> "LatentDDIM":
        return LatentDDIM(latent, self.decoder, scale_factor=self.scale_factor, image_shape=self.image_shape)

    def with_timesteps(self, timesteps: Sequence[Sequence[int]]) -> "LatentDDIM":
        return self._with_latent(self.latent.with_timesteps(timesteps))

    def with_uniform_steps(self, num_steps: int) -> "LatentDDIM":
        return self._with_latent(self.latent.with_uniform_steps(num_steps))

    def sample(self, z0: torch.Tensor) -> torch.Tensor:
        """``G(z0)``: the latent steps from ``z0`` ``(B, c, h, w)``, then the decoder."""
        return self.decode(self.latent.sample(z0))

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        return self.sample(z0)


class AutoencoderDecoder(nn.Module):
    """``autoencoder.decode`` as a module (MONAI ``AutoencoderKL``: ``post_quant_conv`` then the decoder)."""

    def __init__(self, autoencoder: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z)
