"""The prior-training routine and the bundle's train.yaml, on tiny synthetic images."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from monai_dmilo.priors.checkpoints import sha256_of
from helpers import ArrayImageDataset
from monai_dmilo.training import (
    RandAcquisitiond,
    RandScaleFromFloord,
    build_diffusion_unet,
    create_prior_trainer,
    save_image_grid,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"channels": (8, 16), "attention_levels": (False, True), "num_head_channels": 8, "norm_num_groups": 8}


def _blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """``(n, size, size)`` images in [0, 1]: one bright disc each at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), dtype=np.float32)
    for k in range(n):
        cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2, 4)
        out[k] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32)
    return out


def _loss_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _loader(n: int = 16, batch_size: int = 8) -> torch.utils.data.DataLoader:
    dataset = ArrayImageDataset(_blobs(n))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )


def test_train_checkpoint_export_and_resume(tmp_path):
    out = tmp_path / "run"
    torch.manual_seed(0)
    trainer = create_prior_trainer(
        network=build_diffusion_unet(**TINY), train_data_loader=_loader(), max_epochs=2, output_dir=out,
        image_shape=(1, 16, 16), checkpoint_interval=2, log_interval=1, ema_decay=0.9,
        export_name="tiny.pt", network_params={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, **TINY},
        num_grid_samples=4, grid_steps=2,
    )
    trainer.run()
    assert trainer.state.iteration == 4

    rows = _loss_rows(out / "loss.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)

    # exported plain state_dict = the EMA weights; it loads strictly into a fresh network
    state = torch.load(out / "tiny.pt", weights_only=True)
    fresh = build_diffusion_unet(**TINY)
    fresh.load_state_dict(state, strict=True)
    ema = trainer.ema_network.state_dict()
    assert all(torch.equal(state[k], ema[k].cpu()) for k in state)
    raw = trainer.network.state_dict()
    assert any(not torch.equal(state[k], raw[k]) for k in state if state[k].is_floating_point())

    # model config next to it, with the right hash, in the configs/models format
    config = yaml.safe_load((out / "tiny.yaml").read_text())
    assert config["checkpoint"] == "tiny.pt" and config["sha256"] == sha256_of(out / "tiny.pt")
    assert config["image_shape"] == [1, 16, 16] and config["params"]["channels"] == [8, 16]

    from PIL import Image

    with Image.open(out / "samples.png") as im:
        assert im.size == (4 * 18, 18)

    final = out / "checkpoint" / "checkpoint_final.pt"
    assert final.is_file()
    saved = torch.load(final, weights_only=True)
    assert {"network", "optimizer", "trainer", "ema_network"} <= set(saved)

    # resume: continues at iteration 4 with the saved weights, appends to the same loss log
    resumed = create_prior_trainer(
        network=build_diffusion_unet(**TINY), train_data_loader=_loader(), max_epochs=3, output_dir=out,
        image_shape=(1, 16, 16), checkpoint_interval=2, log_interval=1, ema_decay=0.9,
        export_name="tiny.pt", resume_from=final, sample_grid=False,
    )
    first_iteration = []

    @resumed.on(__import__("ignite").engine.Events.ITERATION_STARTED(once=5))
    def _check_loaded(engine):
        first_iteration.append(engine.state.iteration)
        loaded = engine.network.state_dict()
        assert all(torch.equal(loaded[k], saved["network"][k]) for k in saved["network"])

    resumed.run()
    assert first_iteration == [5]
    assert resumed.state.iteration == 6
    rows = _loss_rows(out / "loss.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="attention_levels"):
        build_diffusion_unet(channels=(8, 16), attention_levels=("false", "true"), num_head_channels=8, norm_num_groups=8)
    with pytest.raises(ValueError, match="same length"):
        build_diffusion_unet(channels=(8, 16), attention_levels=(False,), norm_num_groups=8)
    net = build_diffusion_unet(**TINY)
    with pytest.raises(ValueError, match="max_epochs"):
        create_prior_trainer(network=net, train_data_loader=_loader(), max_epochs=0, output_dir=tmp_path, image_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="resume_from"):
        create_prior_trainer(
            network=net, train_data_loader=_loader(), max_epochs=1, output_dir=tmp_path, image_shape=(1, 16, 16),
            resume_from=tmp_path / "missing.pt",
        )
    with pytest.raises(ValueError, match="epoch_length"):
        create_prior_trainer(
            network=net, train_data_loader=_loader(), max_epochs=1, output_dir=tmp_path, image_shape=(1, 16, 16),
            epoch_length=0,
        )
    with pytest.raises(ValueError, match="factor"):
        RandScaleFromFloord("image", factor=1.5)
    with pytest.raises(ValueError, match="images"):
        save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")


def test_bundle_train_config(tmp_path):
    """`python -m monai.bundle run --config_file bundle/configs/train.yaml` on a folder of PNGs."""
    from monai.bundle import run
    from PIL import Image

    data = tmp_path / "images"
    data.mkdir()
    for k, img in enumerate(_blobs(6, size=20, seed=1)):
        Image.fromarray((img * 255).astype(np.uint8)).save(data / f"img_{k}.png")
    out = tmp_path / "out"
    run(
        config_file=str(ROOT / "bundle" / "configs" / "train.yaml"),
        dataset_dir=str(data), output_dir=str(out), max_epochs=2, batch_size=3, image_size=16,
        channels=[8, 16], attention_levels=[False, True], num_head_channels=8, norm_num_groups=8,
        num_grid_samples=2, grid_steps=2, log_interval=1, checkpoint_interval=2, affine_prob=0.5,
        flip_prob=0.5, device="cpu", model_name="tiny",
    )
    rows = _loss_rows(out / "loss.csv")
    assert len(rows) == 4 and all(math.isfinite(float(r["loss"])) for r in rows)
    config = yaml.safe_load((out / "tiny.yaml").read_text())
    assert config["sha256"] == sha256_of(out / "tiny.pt")
    assert config["image_shape"] == [1, 16, 16]
    assert (out / "samples.png").is_file()
    assert (out / "checkpoint" / "checkpoint_final.pt").is_file()

    # the exported prior plugs into the project's loader through its model config
    from monai_dmilo.priors.loading import build_prior

    gen = build_prior(out / "tiny.yaml", num_steps=2, schedule="uniform")
    x = gen.sample(torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()


def test_rand_scale_from_floor_keeps_background_and_range():
    x = torch.tensor([[[-1.0, -0.5, 0.0, 0.9]]])
    scaled = [RandScaleFromFloord("image", prob=1.0, factor=0.3).set_random_state(seed=s)({"image": x})["image"]
              for s in range(20)]
    ratios = {round(float((y[0, 0, 1] + 1) / 0.5), 6) for y in scaled}
    assert len(ratios) > 10 and all(0.7 <= r <= 1.3 for r in ratios)  # one random factor per call
    for y in scaled:
        assert y[0, 0, 0] == -1.0  # background unchanged
        assert y.max() <= 1.0  # clipped to the ceiling
        torch.testing.assert_close((y[0, 0, 2] + 1), (y[0, 0, 1] + 1) * 2)  # linear about the floor
    assert torch.equal(RandScaleFromFloord("image", prob=0.0, factor=0.3)({"image": x})["image"], x)


def _brain_like(size: int = 32) -> torch.Tensor:
    x = torch.full((1, size, size), -1.0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    x[0][inside] = 0.2 + 0.05 * torch.sin(xx[inside].float())
    return x


def test_rand_acquisition_keeps_background_range_and_seed():
    x = _brain_like()
    background = x == -1.0
    make = lambda **kw: RandAcquisitiond("image", **kw).set_random_state(seed=3)  # noqa: E731
    full = make(bias_field_prob=1.0, blur_prob=1.0, noise_prob=1.0, noise_std=0.05)
    outs = [full({"image": x})["image"] for _ in range(4)]
    for y in outs:
        assert y.shape == x.shape and torch.all(y[background] == -1.0)       # the mask is kept
        assert -1.0 <= float(y.min()) and float(y.max()) <= 1.0
        assert float((y - x)[~background].abs().mean()) > 1e-3               # the brain did change
    assert not torch.equal(outs[0], outs[1])                                  # a new draw per call
    again = make(bias_field_prob=1.0, blur_prob=1.0, noise_prob=1.0, noise_std=0.05)
    assert torch.equal(again({"image": x})["image"], outs[0])                 # reproducible by seed
    # each step alone: noise makes neighbouring brain pixels differ more, blur makes them differ less
    # (measured in the middle of the disc, away from its edge)
    rough = lambda y: float((y[0, 12:21, 13:21] - y[0, 12:21, 12:20]).abs().mean())  # noqa: E731
    assert rough(make(noise_prob=1.0, noise_std=0.05)({"image": x})["image"]) > rough(x) + 0.005
    assert rough(make(blur_prob=1.0)({"image": x})["image"]) < rough(x)
    assert torch.equal(RandAcquisitiond("image")({"image": x})["image"], x)   # all probabilities 0: unchanged
    with pytest.raises(ValueError, match="noise_prob must be in \\[0, 1\\], got 2"):
        RandAcquisitiond("image", noise_prob=2)
    with pytest.raises(ValueError, match="blur_sigma"):
        RandAcquisitiond("image", blur_sigma=(0.8, 0.3))


def test_oblique_stacks_rotate_the_volume_and_keep_its_content():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from prepare_data import oblique_stacks, rotate_volume

    vol = np.zeros((40, 48, 36), np.float32)
    vol[8:32, 10:38, 6:30] = 1.0                                       # a box, 1 mm voxels
    unrotated = rotate_volume(vol, (0.0, 0.0, 0.0))
    assert unrotated.shape == (int(np.ceil(np.linalg.norm(vol.shape))),) * 3
    assert abs(float(unrotated.sum()) - float(vol.sum())) < 1e-3      # identity: the box moved to the centre
    turned = rotate_volume(vol, (0.0, 0.0, 90.0))
    assert abs(float(turned.sum()) - float(vol.sum())) / float(vol.sum()) < 0.02
    def spread(v: np.ndarray) -> list[float]:     # the mass's standard deviation along each axis
        grids = np.meshgrid(*[np.arange(n) for n in v.shape], indexing="ij")
        return [float(np.sqrt(np.average((g - np.average(g, weights=v)) ** 2, weights=v))) for g in grids]

    before = spread(vol)
    np.testing.assert_allclose(spread(turned), [before[1], before[0], before[2]], rtol=0.03)  # x, y swapped
    stacks = oblique_stacks(vol, (1.0, 1.0, 1.0), count=2, max_angle=20.0, size=16, min_brain_fraction=0.1,
                            rng=np.random.default_rng(0))
    assert sorted(stacks) == sorted(f"oblique{k}_{o}" for k in range(2) for o in ("sagittal", "coronal", "axial"))
    assert all(s.ndim == 3 and s.shape[1:] == (16, 16) and len(s) > 0 for s in stacks.values())
    assert not np.allclose(stacks["oblique0_axial"][len(stacks["oblique0_axial"]) // 2],
                           stacks["oblique1_axial"][len(stacks["oblique1_axial"]) // 2])   # different angles
    with pytest.raises(ValueError, match="1 mm isotropic"):
        oblique_stacks(vol, (2.0, 2.0, 3.0), count=1, max_angle=20.0, size=16, min_brain_fraction=0.1,
                       rng=np.random.default_rng(0))


def test_bundle_train_config_on_nifti_stacks_with_intensity_augmentation(tmp_path):
    """A 3D NIfTI stack is read slice by slice; epoch_length sets the iterations per epoch."""
    import nibabel as nib
    from monai.bundle import run

    data = tmp_path / "volumes"
    data.mkdir()
    stack = np.moveaxis(_blobs(7, size=16, seed=2), 0, -1)  # (16, 16, 7): 7 slices
    nib.save(nib.Nifti1Image(stack, np.eye(4)), str(data / "stack.nii.gz"))
    out = tmp_path / "out"
    run(
        config_file=str(ROOT / "bundle" / "configs" / "train.yaml"),
        dataset_dir=str(data), output_dir=str(out), max_epochs=2, epoch_length=3, batch_size=4, image_size=16,
        channels=[8, 16], attention_levels=[False, True], num_head_channels=8, norm_num_groups=8,
        num_grid_samples=2, grid_steps=2, log_interval=1, checkpoint_interval=3, affine_prob=0.9,
        affine_translate=2.0, flip_prob=0.5, gamma_prob=0.5, intensity_scale_prob=0.5, bias_field_prob=0.5,
        blur_prob=0.5, noise_prob=0.5, device="cpu", model_name="stack_prior",
    )
    rows = _loss_rows(out / "loss.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert (out / "stack_prior.pt").is_file()


def test_training_refuses_an_existing_run_unless_resumed_or_overwritten(tmp_path):
    """Item 6 of the reliability issue: train.yaml into a used output_dir replaced prior.pt silently."""
    def trainer(**kwargs):
        return create_prior_trainer(
            network=build_diffusion_unet(**TINY), train_data_loader=_loader(8, 4), max_epochs=1,
            output_dir=tmp_path, image_shape=(1, 16, 16), device="cpu", log_interval=1,
            checkpoint_interval=100, export_name="tiny.pt", sample_grid=False, **kwargs,
        )

    trainer().run()
    before = (tmp_path / "tiny.pt").read_bytes()
    with pytest.raises(ValueError, match="holds a training run.*--resume_from.*--overwrite true"):
        trainer()
    assert (tmp_path / "tiny.pt").read_bytes() == before           # nothing touched
    trainer(overwrite=True).run()
    rows = _loss_rows(tmp_path / "loss.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]              # a fresh log, not appended
    trainer(resume_from=tmp_path / "checkpoint" / "checkpoint_final.pt")   # resuming is allowed
