"""Train the small latent diffusion prior shipped as a MONAI model-zoo latent bundle layout.

Two stages on the Fashion-MNIST train split (``scripts/prepare_data.py``'s 32 x 32 PNGs, scaled to
[-1, 1]), each resumable from its checkpoint in ``--out`` (rerun the same command to continue):

1. ``autoencoder``: MONAI ``AutoencoderKL`` (one down-sampling: latent ``2 x 16 x 16``), loss
   ``L1 + MSE + kl_weight * KL``; the last 2,000 train images are kept out and report the
   reconstruction PSNR.
2. ``diffusion``: MONAI ``DiffusionModelUNet`` on the encoder means times ``scale_factor``
   (``1 / std`` of the latents, as MONAI's latent bundles compute it), v-prediction, the
   scaled-linear schedule of MONAI's BraTS latent bundle (0.0015-0.0195), AdamW with warm-up and
   an EMA of the weights.

The result is a bundle folder (``configs/inference.json`` with ``autoencoder_def``, ``network_def``,
``noise_scheduler``, ``scale_factor``; ``models/model.pt`` and ``models/model_autoencoder.pt``) that
``build_prior(<folder>)`` reads like any model-zoo latent bundle. Usage::

    OMP_NUM_THREADS=1 python scripts/train_latent_prior.py --data data_cache/fashion_mnist/train \
        --out runs/fashion_latent_16
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

from monai_dmilo.priors.schedules import make_alphas_cumprod

AUTOENCODER = {
    "_target_": "monai.networks.nets.AutoencoderKL", "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
    "channels": [16, 32], "latent_channels": 2, "num_res_blocks": 1, "attention_levels": [False, False],
    "norm_num_groups": 8, "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False,
    "include_fc": False,
}
NETWORK = {
    "_target_": "monai.networks.nets.DiffusionModelUNet", "spatial_dims": 2, "in_channels": 2, "out_channels": 2,
    "channels": [32, 64, 64], "attention_levels": [False, False, True], "num_res_blocks": 1,
    "num_head_channels": 32, "include_fc": False,
}
SCHEDULER = {"_target_": "monai.networks.schedulers.DDIMScheduler", "num_train_timesteps": 1000,
             "beta_start": 0.0015, "beta_end": 0.0195, "schedule": "scaled_linear_beta",
             "prediction_type": "v_prediction", "clip_sample": False}
HELD_OUT = 2000


def _build(definition: dict) -> torch.nn.Module:
    kwargs = {k: v for k, v in definition.items() if not k.startswith("_")}
    cls = AutoencoderKL if definition["_target_"].endswith("AutoencoderKL") else DiffusionModelUNet
    return cls(**kwargs)


def load_images(folder: Path) -> torch.Tensor:
    """The folder's PNGs as ``(N, 1, 32, 32)`` float32 in [-1, 1], sorted by name."""
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"--data {str(folder)!r} holds no PNG files; run scripts/prepare_data.py first.")
    array = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) for f in files])
    return torch.from_numpy(array / 127.5 - 1.0)[:, None]


def _log(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def train_autoencoder(images: torch.Tensor, out: Path, iterations: int, batch: int, kl_weight: float) -> AutoencoderKL:
    ckpt = out / "autoencoder_state.pt"
    model = _build(AUTOENCODER)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
    train, held = images[:-HELD_OUT], images[-HELD_OUT:]
    gen = torch.Generator().manual_seed(1000 + start)
    t0 = time.time()
    for it in range(start, iterations):
        for group in optimizer.param_groups:  # cosine decay to 10 %
            group["lr"] = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / iterations)))
        x = train[torch.randint(len(train), (batch,), generator=gen)]
        recon, mu, sigma = model(x)
        kl = 0.5 * (mu.square() + sigma.square() - torch.log(sigma.square() + 1e-12) - 1).flatten(1).sum(1).mean()
        loss = (recon - x).abs().mean() + (recon - x).square().mean() + kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (it + 1) % 250 == 0 or it + 1 == iterations:
            with torch.no_grad():
                model.eval()
                mse = torch.cat([(model.decode(model.encode(held[i:i + 500])[0]) - held[i:i + 500]).square().flatten(1).mean(1)
                                 for i in range(0, len(held), 500)])
                model.train()
            psnr = float((10 * torch.log10(4.0 / mse)).mean())
            _log(out / "autoencoder_log.jsonl", {"iteration": it + 1, "loss": float(loss), "kl": float(kl),
                                                   "held_out_psnr": psnr, "seconds": time.time() - t0})
            print(f"autoencoder {it + 1}/{iterations} loss {float(loss):.4f} held-out PSNR {psnr:.2f} dB", flush=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": it + 1}, ckpt)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def encode_all(model: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode(images[i:i + 500])[0] for i in range(0, len(images), 500)])


def train_diffusion(latents: torch.Tensor, out: Path, iterations: int, batch: int) -> DiffusionModelUNet:
    ckpt = out / "diffusion_state.pt"
    model = _build(NETWORK)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.0)
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
    abar = make_alphas_cumprod("scaled_linear", 1000, SCHEDULER["beta_start"], SCHEDULER["beta_end"]).float()
    gen = torch.Generator().manual_seed(2000 + start)
    t0 = time.time()
    losses = []
    for it in range(start, iterations):
        warm = min(1.0, (it + 1) / 100)
        cool = 1.0 if it < 0.7 * iterations else 1.0 - (it - 0.7 * iterations) / (0.3 * iterations)
        for group in optimizer.param_groups:
            group["lr"] = 4e-4 * warm * max(cool, 0.02)
        x0 = latents[torch.randint(len(latents), (batch,), generator=gen)]
        t = torch.randint(1000, (batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        loss = (model(zt, t) - v).square().mean()
        optimizer_step_with_ema(loss, optimizer, model, ema, it)
        losses.append(float(loss.detach()))
        if (it + 1) % 250 == 0 or it + 1 == iterations:
            _log(out / "diffusion_log.jsonl", {"iteration": it + 1, "v_mse": float(np.mean(losses[-250:])),
                                                 "seconds": time.time() - t0})
            print(f"diffusion {it + 1}/{iterations} v-MSE {np.mean(losses[-250:]):.4f}", flush=True)
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                        "iteration": it + 1}, ckpt)
    return ema.eval()


def optimizer_step_with_ema(loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                            ema: torch.nn.Module, iteration: int) -> None:
    """One optimiser step on ``loss``, then the EMA of the weights (decay ``min(0.999, (1 + t) / (10 + t))``)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    decay = min(0.999, (1 + iteration) / (10 + iteration))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1 - decay)


def write_bundle(folder: Path, autoencoder: AutoencoderKL, network: DiffusionModelUNet, scale_factor: float) -> None:
    """A model-zoo latent bundle layout: configs/inference.json, configs/metadata.json, models/*.pt."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    inference = {
        "bundle_root": ".",
        "spatial_dims": 2,
        "latent_shape": [2, 16, 16],
        "image_range": [-1.0, 1.0],
        "scale_factor": round(scale_factor, 6),
        "autoencoder_def": AUTOENCODER,
        "network_def": NETWORK,
        "load_autoencoder_path": "$@bundle_root + '/models/model_autoencoder.pt'",
        "load_diffusion_path": "$@bundle_root + '/models/model.pt'",
        "noise_scheduler": SCHEDULER,
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=2) + "\n")
    metadata = {"version": "0.1.0", "name": "fashion_latent_16",
                "description": "Latent diffusion prior (AutoencoderKL 1x32x32 -> 2x16x16 + DiffusionModelUNet) on "
                               "Fashion-MNIST, images in [-1, 1]; trained by scripts/train_latent_prior.py",
                "license": "weights: this project's licence; training data Fashion-MNIST (c) 2017 Zalando SE, MIT"}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    torch.save(autoencoder.state_dict(), folder / "models" / "model_autoencoder.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_cache/fashion_mnist/train"))
    parser.add_argument("--out", type=Path, default=Path("runs/fashion_latent_16"))
    parser.add_argument("--bundle", type=Path, default=None, help="write the bundle here (default: <out>/bundle)")
    parser.add_argument("--ae_iterations", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--kl_weight", type=float, default=1e-6)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    images = load_images(args.data)
    autoencoder = train_autoencoder(images, args.out, args.ae_iterations, args.batch, args.kl_weight)
    latents = encode_all(autoencoder, images[:-HELD_OUT])
    scale_factor = float(1.0 / latents.std())
    print(f"latents {tuple(latents.shape)}, std {float(latents.std()):.4f} -> scale_factor {scale_factor:.4f}", flush=True)
    network = train_diffusion(latents * scale_factor, args.out, args.iterations, args.batch)
    write_bundle(args.bundle or args.out / "bundle", autoencoder, network, scale_factor)
    print(f"bundle written to {args.bundle or args.out / 'bundle'}", flush=True)


if __name__ == "__main__":
    main()
