"""The small priors shipped in bundle/models: they load from their model configs, sample images of the
right shape and range that look like their data (coarse statistics), and come with held-out images."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from monai_dmilo.data import read_image_array
from monai_dmilo.priors.checkpoints import sha256_of

ROOT = Path(__file__).resolve().parents[1]
PRIORS = {
    # prior name: (held-out sample folder, file suffix)
    "fashion_mnist_32": ("fashion_mnist", ".png"),
    "brain_mri_32": ("brain_mri", ".nii.gz"),
    "ct_head_32": ("ct_head", ".nii.gz"),
}
FASHION_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _config(name: str) -> tuple[dict, Path]:
    path = ROOT / "configs" / "models" / f"{name}.yaml"
    return yaml.safe_load(path.read_text()), path


def _held_out(name: str) -> list[Path]:
    folder, suffix = PRIORS[name]
    return sorted((ROOT / "bundle" / "sample_images" / folder).glob(f"*{suffix}"))


def _held_out_unit(name: str) -> torch.Tensor:
    """Held-out images on the [-1, 1] scale the workflows use (PNG: /127.5 - 1; NIfTI: the prior's
    intensity window (CT, Hounsfield units), else min-max)."""
    window = _config(name)[0].get("intensity_window")
    out = []
    for path in _held_out(name):
        arr = read_image_array(str(path), channels=1)
        lo, hi = (0.0, 255.0) if path.suffix == ".png" else window or (float(arr.min()), float(arr.max()))
        out.append(torch.from_numpy((np.clip(arr, lo, hi) - lo) / (hi - lo) * 2 - 1))
    return torch.stack(out)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_checkpoint_matches_config(name):
    config, path = _config(name)
    checkpoint = (path.parent / config["checkpoint"]).resolve()
    assert checkpoint.is_file(), checkpoint
    assert checkpoint.stat().st_size < 10 * 2**20  # a few MB
    assert config["sha256"] == sha256_of(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())  # a plain state_dict


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_samples_shape_range_and_statistics(name):
    from monai_dmilo.priors.loading import build_prior

    config, path = _config(name)
    gen = build_prior(path, num_steps=10, schedule="uniform")
    c, h, w = config["image_shape"]
    assert gen.image_shape == (c, h, w) == (1, 32, 32)
    z = torch.randn(16, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = gen.sample(z)
    assert x.shape == (16, c, h, w)
    assert torch.isfinite(x).all()
    # last step: x = sqrt(abar_0) x0 + sqrt(1 - abar_0) eps with x0 in [-1, 1] and sqrt(1 - abar_0) = 0.01
    assert x.abs().max() <= 1.0 + 0.01 * 6
    # samples differ from each other and cover as much of the frame with bright content as the data
    # (object / brain on a dark background; noise or a flat image would not)
    assert x.std(dim=0).mean() > 0.1
    data = _held_out_unit(name)
    bright = lambda t: (t > 0.0).float().mean().item()  # noqa: E731
    assert abs(bright(x) - bright(data)) < 0.2, (bright(x), bright(data))
    # images, not noise: the mean absolute difference between neighbouring pixels is well below that
    # of Gaussian noise clipped to [-1, 1] (about 1.66), and no speckle: within 1.5x of the held-out
    # images' value (version 0.3.0: fashion 0.25 vs 0.21, brain 0.23 vs 0.29; the speckled 0.2.0
    # priors were about 2x the data's).
    tv = lambda t: ((t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., 1:] - t[..., :-1]).abs().mean()).item()  # noqa: E731
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    assert tv(x) < 0.5 * tv(noise), (tv(x), tv(noise), tv(data))
    assert tv(x) < 1.5 * tv(data), (tv(x), tv(data))


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_held_out_samples_exist(name):
    files = _held_out(name)
    assert len(files) >= 4
    config, _ = _config(name)
    for f in files:
        arr = read_image_array(str(f), channels=1)
        assert arr.shape == tuple(config["image_shape"])
        assert arr.max() > arr.min()


def test_ct_samples_are_hounsfield_gap_slices_of_the_held_out_slab():
    """The shipped CT slices are in HU and come from the held-out slab's gaps: neither trained on
    nor among the benchmark's validation / test slices (scripts/prepare_data.py)."""
    from prepare_data import CT_HELDOUT, CT_TEST, CT_VALIDATION

    files = _held_out("ct_head_32")
    for f in files:
        k = int(f.name.split("_")[-1].split(".")[0])
        assert k in CT_HELDOUT and k not in CT_VALIDATION and k not in CT_TEST, f
        arr = read_image_array(str(f), channels=1)
        assert arr.min() < -900 and arr.max() > 300  # air around the head, bone in it (HU)


@pytest.mark.skipif(not FASHION_TRAIN.is_file(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_held_out_not_in_training_split():
    with gzip.open(FASHION_TRAIN, "rb") as f:
        train = np.frombuffer(f.read()[16:], dtype=np.uint8).reshape(-1, 28, 28)
    seen = {img.tobytes() for img in train}
    for path in _held_out("fashion_mnist_32"):
        img = read_image_array(str(path), channels=1)[0].astype(np.uint8)
        assert img[2:30, 2:30].tobytes() not in seen, path
        assert not img[:2].any() and not img[30:].any()  # 28x28 zero-padded to 32x32
