"""Train the small diffusers ``UNet2DModel`` prior shipped as a diffusers folder (the demo of that format).

On the Fashion-MNIST train split (``scripts/prepare_data.py``'s 32 x 32 PNGs, scaled to [-1, 1]):
v-prediction with diffusers' ``squaredcos_cap_v2`` schedule, AdamW 4e-4 with 100 warm-up
iterations, an EMA of the weights (decay 0.999). It stops after ``--iterations`` or ``--minutes``,
whichever comes first, and resumes from ``<out>/state.pt`` when run again. The EMA weights are saved
as a diffusers folder (``config.json``, ``diffusion_pytorch_model.safetensors``,
``scheduler_config.json``) that ``build_prior(<folder>)`` and ``--prior <folder>`` read::

    OMP_NUM_THREADS=1 python scripts/train_diffusers_prior.py --out runs/fashion_diffusers_32 --minutes 25
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_latent_prior import load_images, optimizer_step_with_ema  # noqa: E402

from monai_dmilo.priors.schedules import make_alphas_cumprod  # noqa: E402

UNET = {"sample_size": 32, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
        "block_out_channels": (32, 64, 64), "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), "norm_num_groups": 16, "attention_head_dim": 32}
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
             "clip_sample": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_cache/fashion_mnist/train"))
    parser.add_argument("--out", type=Path, default=Path("runs/fashion_diffusers_32"))
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = load_images(args.data)
    torch.manual_seed(0)
    model = UNet2DModel(**UNET)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.0)
    start, elapsed = 0, 0.0
    ckpt = args.out / "state.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start, elapsed = int(state["iteration"]), float(state["seconds"])
    abar = make_alphas_cumprod("squaredcos_cap_v2", 1000).float()
    gen = torch.Generator().manual_seed(3000 + start)
    t0, losses, it = time.time(), [], start
    for it in range(start, args.iterations):
        for group in optimizer.param_groups:
            group["lr"] = 4e-4 * min(1.0, (it + 1) / 100)
        x0 = images[torch.randint(len(images), (args.batch,), generator=gen)]
        t = torch.randint(1000, (args.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        loss = (model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t).sample - v).square().mean()
        optimizer_step_with_ema(loss, optimizer, model, ema, it)
        losses.append(float(loss.detach()))
        done = (time.time() - t0) / 60 >= args.minutes
        if (it + 1) % 100 == 0 or done or it + 1 == args.iterations:
            seconds = elapsed + time.time() - t0
            with (args.out / "log.jsonl").open("a") as f:
                f.write(json.dumps({"iteration": it + 1, "v_mse": float(np.mean(losses[-100:])), "seconds": seconds}) + "\n")
            print(f"iteration {it + 1} v-MSE {np.mean(losses[-100:]):.4f} ({seconds:.0f} s)", flush=True)
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                        "iteration": it + 1, "seconds": seconds}, ckpt)
        if done:
            break
    folder = args.out / "diffusers"
    ema.save_pretrained(folder)
    DDIMScheduler(**SCHEDULER).save_pretrained(folder)
    print(f"diffusers folder written to {folder} after {it + 1} iterations", flush=True)


if __name__ == "__main__":
    main()
