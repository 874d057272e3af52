"""The benchmark's images (validation / test splits, never the shipped samples), the measurements
simulated as the bundle does, and its SSIM / LPIPS."""
from __future__ import annotations

import functools

import numpy as np
import torch

from common import split_images

from monai_dmilo.handlers.metrics import load_lpips, lpips_distance  # noqa: E402
from monai_dmilo.operators import build_from_batch  # noqa: E402
from monai_dmilo.workflow.tasks import simulation_transform  # noqa: E402

from .settings import BRAIN_HELDOUT, BRAIN_SAMPLES, CT_HELDOUT


def fashion_split(split: str, count: int) -> tuple[list[str], torch.Tensor]:
    return split_images(7 if split == "validation" else 8, 311, count)


def brain_split(split: str, count: int) -> tuple[list[str], torch.Tensor]:
    """Held-out ITK slices ``k % 4 == 0`` (validation) or ``== 2`` (test), ``count`` spread evenly."""
    import nibabel as nib

    shipped = {p.name.split(".")[0] for p in BRAIN_SAMPLES.glob("*.nii.gz")}  # e.g. t1_axial_011
    remainder = 0 if split == "validation" else 2
    names, images = [], []
    for path in sorted(BRAIN_HELDOUT.glob("itk_t1_*.nii.gz")):
        orientation = path.name[len("itk_t1_"):].split(".")[0]
        stack = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # (32, 32, N) in [0, 1]
        for k in range(remainder, stack.shape[-1], 4):
            if f"t1_{orientation}_{k:03d}" not in shipped:
                names.append(f"{orientation}_{k:03d}")
                images.append(stack[..., k] * 2.0 - 1.0)
    if len(names) < count:
        raise SystemExit(f"only {len(names)} held-out brain slices for the {split} split; run scripts/prepare_data.py.")
    pick = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in pick], torch.from_numpy(np.stack([images[i] for i in pick]))[:, None]


def ct_split(split: str, count: int, window: tuple[float, float]) -> tuple[list[str], torch.Tensor]:
    """The held-out CT slab's ``validation`` or ``test`` slices (``scripts/prepare_data.py``: never
    trained on, and not the shipped demo slices, which are the slab's gap slices), windowed to
    [-1, 1] exactly as the prior's training was."""
    import nibabel as nib

    from monai_dmilo.data import LoadImageForPriord

    path = CT_HELDOUT / split / "cranium_axial.nii.gz"
    if not path.is_file():
        raise SystemExit(f"{path} is missing; run scripts/prepare_data.py --datasets ct_head.")
    load = LoadImageForPriord("image", intensity_window=window)
    total = nib.load(path).shape[-1]
    if total < count:
        raise SystemExit(f"only {total} held-out CT slices for the {split} split.")
    pick = np.linspace(0, total - 1, count).round().astype(int)
    images = [torch.as_tensor(load({"image": str(path), "slice": int(k), "name": f"{split}_{k:02d}"})["image"])
              for k in pick]
    return [f"{split}_{k:02d}" for k in pick], torch.stack(images).float()


def make_problem(task: dict, x: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.nn.Module]:
    """``(y, operator)`` for images ``(B, 1, H, W)`` as the bundle's evaluate workflow simulates them."""
    from monai.data import list_data_collate

    simulate = simulation_transform(task)
    items = [simulate({"image": x[b], "seed": int(s)}) for b, s in enumerate(seeds)]
    batch = list_data_collate(items)
    y = batch["y"].as_tensor() if hasattr(batch["y"], "as_tensor") else batch["y"]
    return y, build_from_batch(task["operator"], task["operator_params"], batch)


def ssim(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM ``(B,)``: a 7 x 7 window on images in [-1, 1] (data range 2), the convention the
    cached tables were measured with (:mod:`monai_dmilo.metrics` says how it differs from the handlers')."""
    from monai_dmilo.metrics import ssim as ssim_of

    return ssim_of(x.clamp(-1, 1), reference, data_range=2.0, win_size=7)


@functools.lru_cache(maxsize=None)
def _lpips_model(device: str):
    return load_lpips(torch.device(device))


def lpips(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor | None:
    """Per-image LPIPS ``(B,)`` (AlexNet, images in [-1, 1]); ``None`` without the ``lpips`` package or its weights."""
    model = _lpips_model(str(x.device))
    return None if model is None else lpips_distance(model, x.clamp(-1, 1), reference).cpu()
