"""Handlers: run directory and resume, metrics CSV, saved reconstructions and panels, summary."""
from __future__ import annotations

import csv
import importlib.util
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.utils import CommonKeys as Keys
from PIL import Image

from monai_dmilo import operators
from monai_dmilo.handlers import (
    MetricsCSVWriter,
    PanelSaver,
    ReconstructionSaver,
    RunSummary,
    pending_items,
    check_output_dir,
    start_run,
    read_results,
)


# ----------------------------------------------------------------------------- run directory
def prepare_output_dir(output_dir, *, settings, overwrite=False):
    """What the workflows do: every check first (check_output_dir), then start_run."""
    check_output_dir(output_dir, settings=settings, overwrite=overwrite)
    return start_run(output_dir, settings=settings, overwrite=overwrite)



def test_new_run_dir_and_resume_with_same_settings(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out, settings={"task": "inpainting", "seed": 0})
    assert json.loads((out / "run_settings.json").read_text()) == {"task": "inpainting", "seed": 0}
    (out / "metrics.csv").write_text("name,psnr\na,20\n")
    prepare_output_dir(out, settings={"task": "inpainting", "seed": 0})  # same settings: resume
    assert (out / "metrics.csv").is_file()


def test_other_settings_refused_without_overwrite(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(out, settings={"task": "inpainting", "seed": 0})
    (out / "metrics.csv").write_text("name,psnr\na,20\n")
    with pytest.raises(ValueError, match=r"other settings \(differs in \['task'\]\).*--overwrite true"):
        prepare_output_dir(out, settings={"task": "sr4", "seed": 0})
    assert (out / "metrics.csv").is_file()
    prepare_output_dir(out, settings={"task": "sr4", "seed": 0}, overwrite=True)
    assert not (out / "metrics.csv").exists()
    assert json.loads((out / "run_settings.json").read_text())["task"] == "sr4"


def test_foreign_non_empty_folder_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ValueError, match="not a monai_dmilo run directory"):
        prepare_output_dir(tmp_path, settings={"a": 1})
    prepare_output_dir(tmp_path, settings={"a": 1}, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "user data"  # only our own outputs are ever deleted


def test_pending_items_skips_finished_names_including_rank_files(tmp_path):
    (tmp_path / "metrics.csv").write_text("name,psnr\na,20\n")
    (tmp_path / "metrics.rank1.csv").write_text("name,psnr\nc,21\n")
    items = [{"name": n} for n in "abcd"]
    assert [i["name"] for i in pending_items(items, tmp_path)] == ["b", "d"]
    assert sorted(r["name"] for r in read_results(tmp_path)) == ["a", "c"]


# ----------------------------------------------------------------------------- metrics


def test_psnr_ssim_on_unit_scale():
    writer = MetricsCSVWriter(".", use_lpips=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=gen) * 2 - 1
    noisy = (x + 0.1 * torch.randn(2, 1, 16, 16, generator=gen)).clamp(-1, 1)
    m = writer.compute(noisy, x)
    mse = (((noisy + 1) / 2 - (x + 1) / 2) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(m["psnr"], 10 * torch.log10(1 / mse), rtol=1e-4, atol=1e-4)
    assert torch.all(m["ssim"] < 0.999) and torch.all(m["ssim"] > 0)
    same = writer.compute(x, x)
    torch.testing.assert_close(same["ssim"], torch.ones(2), rtol=1e-5, atol=1e-5)
    assert "lpips" not in m


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="checks the lpips-absent path")
def test_lpips_skipped_when_package_absent():
    writer = MetricsCSVWriter(".", use_lpips="auto")
    x = torch.zeros(1, 1, 16, 16)
    assert "lpips" not in writer.compute(x, x)


# ----------------------------------------------------------------------------- engine runs


def _run(handlers, batches, *, nfe=7, seconds=2.0):
    """An engine whose output is what InverseProblemEvaluator gives handlers: the batch's operator
    (built from its mask), NFE and solve seconds."""
    def step(engine, batch):
        return {Keys.IMAGE: batch["y"], Keys.LABEL: batch.get("image"), Keys.PRED: batch["pred"],
                "operator": operators.build_from_batch("inpainting", {}, batch) if "mask" in batch else None, "nfe": nfe, "seconds": seconds}

    engine = Engine(step)
    for h in handlers:
        h.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


def _png_batch(tmp_path, names, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    b = len(names)
    image = torch.rand(b, 1, size, size, generator=gen) * 2 - 1
    mask = (torch.rand(b, 1, size, size, generator=gen) > 0.7).float()
    return {
        "name": list(names),
        "image": image,
        "y": image * mask,
        "mask": mask,
        "pred": (image + 0.05).clamp(-1, 1),
        "format": ["png"] * b,
        "intensity_min": torch.zeros(b, dtype=torch.float64),
        "intensity_max": torch.full((b,), 255.0, dtype=torch.float64),
        "image_path": [str(tmp_path / f"{n}.png") for n in names],
        "volume": [""] * b,
        "slice": torch.full((b,), -1),
        "num_slices": torch.zeros(b, dtype=torch.long),
        "seed": torch.arange(b) + 100,
    }


def test_png_run_writes_csv_reconstructions_panels_summary(tmp_path):
    pytest.importorskip("monai_dmilo.operators", reason="needs the operator registry")
    out = tmp_path / "run"
    handlers = [
        ReconstructionSaver(out),
        PanelSaver(out),
        MetricsCSVWriter(out, use_lpips=False),
        RunSummary(out, settings={"task": "inpainting", "solver": "dmilo", "seed": 0}),
    ]
    batches = [_png_batch(tmp_path, ["a", "b"], seed=0), _png_batch(tmp_path, ["c"], seed=1)]
    _run(handlers, batches, nfe=7, seconds=2.0)

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert {r["nfe"] for r in rows} == {"7"}
    assert [float(r["seconds"]) for r in rows] == [1.0, 1.0, 2.0]
    assert [int(r["seed"]) for r in rows] == [100, 101, 100]
    for b, name in enumerate(["a", "b"]):
        saved = np.asarray(Image.open(out / "reconstructions" / f"{name}.png"))
        expect = np.rint(((batches[0]["pred"][b, 0] + 1) / 2).clamp(0, 1).numpy() * 255)
        assert saved.shape == (16, 16)
        np.testing.assert_array_less(np.abs(saved - expect), 1.01)
        panel = Image.open(out / "panels" / f"{name}.png")
        assert panel.size == (4 * 128 + 3 * 4, 128 + 16)  # 4 tiles upscaled x8 plus gaps and header

    summary = json.loads((out / "summary.json").read_text())
    psnrs = [float(r["psnr"]) for r in rows]
    assert summary["num_images"] == 3 and summary["task"] == "inpainting"
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(np.mean(psnrs))
    assert summary["metrics"]["psnr"]["std"] == pytest.approx(np.std(psnrs, ddof=1))
    assert "PSNR" in (out / "summary.md").read_text()


def test_metrics_csv_appends_on_resume_and_inference_has_no_metrics(tmp_path):
    out = tmp_path / "run"
    writer = MetricsCSVWriter(out, use_lpips=False)
    _run([writer], [_png_batch(tmp_path, ["a"])])
    _run([MetricsCSVWriter(out, use_lpips=False)], [_png_batch(tmp_path, ["b"])])
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b"]

    out2 = tmp_path / "infer"
    batch = _png_batch(tmp_path, ["z"])
    del batch["image"]
    _run([MetricsCSVWriter(out2, use_lpips=False)], [batch])
    header = next(csv.reader((out2 / "metrics.csv").open()))
    assert header == ["name", "nfe", "seconds", "seed"]


def test_nifti_volume_slices_reassembled_with_affine(tmp_path):
    shape = (16, 16, 3)
    data = np.random.default_rng(0).normal(50, 10, shape).astype(np.float32)
    affine = np.diag([0.5, 0.6, 3.0, 1.0])
    affine[:3, 3] = [4.0, 5.0, 6.0]
    src = tmp_path / "vol.nii.gz"
    nib.Nifti1Image(data, affine).to_filename(str(src))
    lo = [float(data[..., k].min()) for k in range(3)]
    hi = [float(data[..., k].max()) for k in range(3)]
    truth = torch.stack([torch.from_numpy((data[..., k] - lo[k]) / (hi[k] - lo[k]) * 2 - 1) for k in range(3)])[:, None]

    def batch(ks):
        return {
            "name": [f"vol_s{k:03d}" for k in ks],
            "image": truth[ks],
            "y": truth[ks],
            "pred": truth[ks],
            "format": ["nifti"] * len(ks),
            "intensity_min": torch.tensor([lo[k] for k in ks], dtype=torch.float64),
            "intensity_max": torch.tensor([hi[k] for k in ks], dtype=torch.float64),
            "image_path": [str(src)] * len(ks),
            "volume": ["vol"] * len(ks),
            "slice": torch.tensor(ks),
            "num_slices": torch.full((len(ks),), 3),
        }

    out = tmp_path / "run"
    saver = ReconstructionSaver(out)
    _run([saver], [batch([0, 1])])
    assert not (out / "reconstructions" / "vol.nii.gz").exists()  # slice 2 missing: not assembled yet
    _run([ReconstructionSaver(out)], [batch([2])])  # a resumed run finishes the volume
    img = nib.load(str(out / "reconstructions" / "vol.nii.gz"))
    assert img.shape == shape
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(img.get_fdata(), data, rtol=1e-4, atol=1e-3)


def test_summary_merges_rank_files(tmp_path):
    (tmp_path / "metrics.rank0.csv").write_text("name,psnr,ssim\nb,20.0,0.5\n")
    (tmp_path / "metrics.rank1.csv").write_text("name,psnr,ssim\na,22.0,0.7\nc,24.0,0.9\n")
    summary = RunSummary(tmp_path, settings={"task": "t"})()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert not list(tmp_path.glob("metrics.rank*.csv"))
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(22.0)
    assert summary["metrics"]["ssim"]["std"] == pytest.approx(0.2)


# ----------------------------------------------------------------------------- measurement views


def test_super_resolution_view_is_upsampled():
    y = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    v = operators.build("super_resolution", scale=4).view(y, (1, 16, 16))
    assert v.shape == (1, 1, 16, 16)
    torch.testing.assert_close(v[0, 0, :4, :4], torch.full((4, 4), float((y[0, 0, 0, 0] + 1) / 2)))


def test_mri_view_is_zero_filled_real_part():
    x = torch.rand(1, 1, 8, 8) * 2 - 1  # an image in [-1, 1]: a magnitude view would fold the negatives
    mri = operators.build("mri", mask=torch.ones(8))
    v = mri.view(mri(x), (1, 8, 8))
    assert v.shape == (1, 1, 8, 8) and v.dtype == torch.float32
    expect = (x - x.min()) / (x.max() - x.min())
    torch.testing.assert_close(v, expect, atol=1e-5, rtol=1e-4)
    assert math.isclose(float(v.max()), 1.0, abs_tol=1e-6)


def test_lpips_distance_repeats_one_channel_to_three_and_returns_one_value_per_sample():
    from monai_dmilo.handlers.metrics import lpips_distance

    seen = []

    def model(a, b):
        seen.append(a.shape)
        return (a - b).pow(2).mean((1, 2, 3)).reshape(-1, 1, 1, 1)

    a, b = torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)
    out = lpips_distance(model, a, b)
    assert seen == [torch.Size([3, 3, 4, 4])] and out.shape == (3,) and torch.allclose(out, torch.ones(3))
    lpips_distance(model, torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    assert seen[-1] == torch.Size([2, 3, 4, 4])
