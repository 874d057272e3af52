"""Measurement transforms inside MONAI pipelines (synthetic NIfTI and PNG files)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, list_data_collate
from monai.transforms import Compose, LoadImaged, ScaleIntensityd
from PIL import Image

from monai_dmilo.operators import build, simulate_coil_maps
from monai_dmilo.transforms import (
    RandBlurKernel,
    RandBlurKernelD,
    RandBlurKerneld,
    RandBlurKernelDict,
    RandInpaintingMask,
    RandInpaintingMaskd,
    RandKspaceMask,
    RandKspaceMaskd,
    SimulateMeasurement,
    SimulateMeasurementD,
    SimulateMeasurementd,
    SimulateMeasurementDict,
)


@pytest.fixture
def nifti_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"slice{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((16, 16)).astype(np.float32) * 100, np.eye(4)), str(path))
        paths.append(str(path))
    return paths


@pytest.fixture
def png_files(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _pipeline(*extra):
    return Compose(
        [
            LoadImaged("image", ensure_channel_first=True, image_only=True),
            ScaleIntensityd("image", minv=-1.0, maxv=1.0),
            *extra,
        ]
    )


def test_inpainting_on_nifti_batched_equals_alone(nifti_files):
    pipeline = _pipeline(
        RandInpaintingMaskd("image", mask_key="mask", seed_key="seed", hidden_fraction=0.7),
        SimulateMeasurementd("image", operator="inpainting", sigma=0.05, measurement_key="y", seed_key="seed"),
    )
    items = [{"image": p, "seed": 10 + i} for i, p in enumerate(nifti_files)]
    batch = next(iter(DataLoader(Dataset(items, pipeline), batch_size=3, num_workers=0)))
    assert batch["mask"].shape == (3, 1, 16, 16) and batch["y"].shape == (3, 1, 16, 16)
    hidden = (batch["mask"] == 0).float().mean(dim=(1, 2, 3))
    torch.testing.assert_close(hidden, torch.full((3,), round(0.7 * 256) / 256))
    assert not torch.equal(batch["mask"][0], batch["mask"][1])
    clean = build("inpainting", mask=batch["mask"])(batch["image"].as_tensor())
    residual = batch["y"] - clean
    observed = batch["mask"].expand_as(residual) == 1
    assert 0.04 < float(residual[observed].std()) < 0.06  # sigma = 0.05 on the [-1, 1] scale
    assert residual[~observed].abs().max() == 0  # hidden pixels stay exactly zero
    # alone and in another order: the same mask and the same noisy measurement
    for item in reversed(items):
        alone = pipeline(dict(item))
        b = item["seed"] - 10
        torch.testing.assert_close(alone["mask"], batch["mask"][b])
        torch.testing.assert_close(alone["y"], batch["y"][b])


def test_motion_blur_on_png_matches_the_batched_operator(png_files):
    pipeline = _pipeline(
        RandBlurKerneld("image", kernel_key="kernel", seed_key="name", kind="motion", size=7, intensity=0.5),
        SimulateMeasurementd("image", operator="blur", noise="none", seed_key="name"),
    )
    items = [{"image": p, "name": f"img{i}"} for i, p in enumerate(png_files)]
    batch = next(iter(DataLoader(Dataset(items, pipeline), batch_size=3, num_workers=0)))
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["kernel"].shape == (3, 7, 7)
    torch.testing.assert_close(batch["kernel"].sum(dim=(1, 2)), torch.ones(3))
    assert float(batch["image"].min()) >= -1.0 and float(batch["image"].max()) <= 1.0
    expected = build("blur", kernel=batch["kernel"])(batch["image"].as_tensor())
    torch.testing.assert_close(batch["y"], expected, rtol=1e-5, atol=1e-5)


def test_kspace_mask_and_coil_maps_are_written_and_collate():
    maps = simulate_coil_maps((16, 16), 4)
    simulate = Compose(
        [
            RandKspaceMaskd("image", mask_key="mask", seed_key="seed", acceleration=4, center_fraction=0.125),
            SimulateMeasurementd(
                "image", operator="mri", operator_params={"coil_maps": maps}, sigma=0.01, seed_key="seed"
            ),
        ]
    )
    samples = [simulate({"image": torch.rand(1, 16, 16), "seed": s}) for s in range(2)]
    for s in samples:
        assert s["y"].dtype == torch.complex64 and s["y"].shape == (4, 16, 16)
        assert torch.equal(s["coil_maps"], maps)
    batch = list_data_collate(samples)
    op = build("mri", mask=batch["mask"], coil_maps=batch["coil_maps"])
    residual = batch["y"] - op(batch["image"])
    observed = batch["mask"].expand_as(residual).bool()
    assert batch["y"][~observed].abs().max() == 0  # unsampled k-space stays exactly zero
    noise = torch.view_as_real(residual[observed])
    assert 0.008 < float(noise.std()) < 0.012  # sigma = 0.01 per real component
    # the same sample alone gives the same measurement
    torch.testing.assert_close(simulate({"image": batch["image"][1], "seed": 1})["y"], batch["y"][1])


def test_ct_and_super_resolution_measurements_collate():
    angles = torch.tensor([0.0, 60.0, 120.0])
    ct = SimulateMeasurementd("image", operator="ct", operator_params={"angles": angles}, noise="none")
    sr = SimulateMeasurementd(
        "image", operator="super_resolution", operator_params={"scale": 4}, noise="none", measurement_key="y_sr"
    )
    samples = [sr(ct({"image": torch.rand(1, 16, 16)})) for _ in range(2)]
    assert "scale" not in samples[0]  # scalars are configuration, not data
    listed = SimulateMeasurementd("image", operator="ct", operator_params={"angles": [0.0, 90.0]}, noise="none")
    assert torch.equal(listed({"image": torch.rand(1, 16, 16)})["angles"], torch.tensor([0.0, 90.0]))
    batch = list_data_collate(samples)
    assert batch["angles"].shape == (2, 3) and batch["y"].shape == (2, 1, 3, 24)
    torch.testing.assert_close(build("ct", angles=batch["angles"])(batch["image"]), batch["y"])
    torch.testing.assert_close(build("super_resolution", scale=4)(batch["image"]), batch["y_sr"])


def test_hidden_pixels_stay_zero_and_poisson_noise_is_configurable():
    image = torch.rand(2, 16, 16)
    mask = RandInpaintingMask(hidden_fraction=0.5)(image, seed=0)
    y = SimulateMeasurement("inpainting", noise="poisson", noise_params={"scale": 50.0})(image, seed=1, mask=mask)
    assert torch.all(y[:, mask[0] == 0] == 0)
    counts = y[:, mask[0] == 1] * 50.0
    torch.testing.assert_close(counts, counts.round())  # Poisson counts / scale
    assert not torch.allclose(y, image * mask)


def test_set_random_state_reproduces_draws_without_seed_key():
    def run(seed):
        pipeline = Compose([RandInpaintingMaskd("image"), SimulateMeasurementd("image", sigma=0.1)])
        pipeline.set_random_state(seed)
        image = torch.zeros(1, 8, 8)
        return [pipeline({"image": image}) for _ in range(2)]

    a, b, c = run(3), run(3), run(4)
    for x, y in zip(a, b):
        assert torch.equal(x["mask"], y["mask"]) and torch.equal(x["y"], y["y"])
    assert not torch.equal(a[0]["mask"], a[1]["mask"])  # a new draw per call
    assert not torch.equal(a[0]["mask"], c[0]["mask"])


def test_seed_key_is_written_and_salted():
    d = RandInpaintingMaskd("image", seed_key="seed").set_random_state(0)({"image": torch.zeros(1, 8, 8)})
    assert isinstance(d["seed"], int)
    again = RandInpaintingMaskd("image", seed_key="seed")({"image": torch.zeros(1, 8, 8), "seed": d["seed"]})
    assert torch.equal(again["mask"], d["mask"])
    # the noise of SimulateMeasurementd uses another stream than the mask drawn from the same seed
    y = SimulateMeasurementd(
        "image", operator="module", operator_params={"module": torch.nn.Identity()}, sigma=1.0, seed_key="seed"
    )({"image": torch.zeros(1, 8, 8), "seed": 3})["y"]
    mask = RandInpaintingMaskd("image", seed_key="seed", hidden_fraction=0.5)(
        {"image": torch.zeros(1, 8, 8), "seed": 3}
    )
    assert not torch.equal(y > 0, mask["mask"] > 0)


def test_array_generators():
    image = torch.zeros(3, 20, 24)
    mask = RandInpaintingMask("box", box_size=(5, 6))(image, seed=2)
    assert mask.shape == (1, 20, 24) and (mask == 0).sum() == 30
    kernel = RandBlurKernel("gaussian", size=9, std=(1.0, 3.0))
    k1, k2 = kernel(seed=1), kernel(seed=2)
    assert k1.shape == (9, 9) and not torch.allclose(k1, k2)
    torch.testing.assert_close(k1.sum(), torch.tensor(1.0))
    kmask = RandKspaceMask(acceleration=4, center_fraction=0.125, pattern="equispaced")(torch.zeros(1, 8, 32), seed=0)
    assert kmask.shape == (1, 8, 32) and kmask[0, :, 14:18].all()


def test_aliases_and_errors():
    assert RandBlurKernelD is RandBlurKerneld is RandBlurKernelDict
    assert SimulateMeasurementD is SimulateMeasurementd is SimulateMeasurementDict
    with pytest.raises(ValueError, match="kind"):
        RandInpaintingMask("circle")
    with pytest.raises(ValueError, match="hidden_fraction"):
        RandInpaintingMask("pixel", hidden_fraction=1.5)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        RandInpaintingMask()(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        SimulateMeasurement("super_resolution", {"scale": 2})(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="inpainting"):
        SimulateMeasurementd("image", operator="inpaint")({"image": torch.zeros(1, 8, 8), "mask": torch.ones(1, 8, 8)})
    with pytest.raises(ValueError, match="keys"):
        SimulateMeasurementd(["image", "label"])
    with pytest.raises(KeyError, match="image"):
        RandInpaintingMaskd("image")({"img": torch.zeros(1, 8, 8)})
