"""The MONAI bundle's evaluate and inference workflows on synthetic PNG and NIfTI files.

Each test runs ``monai.bundle.ConfigWorkflow`` (what ``python -m monai.bundle run`` builds) with
shrunken overrides: a tiny UNet prior saved as a checkpoint with its model config in tmp_path,
16x16 images, one outer and two inner solver iterations.
"""
from __future__ import annotations

import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONFIGS, REPO, SIZE, error_line, make_pngs, make_prior, rows, run, tiny_unet, workflow

@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    # the bundle configs name common.yaml and the presets relative to the repository root
    monkeypatch.chdir(REPO)


def test_evaluate_png_resume_overwrite_and_inference(tmp_path):
    make_pngs(tmp_path / "data", 3)
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out))

    table = rows(out / "metrics.csv")
    assert sorted(r["name"] for r in table) == ["img0", "img1", "img2"]
    assert all(float(r["psnr"]) > 0 and -1 <= float(r["ssim"]) <= 1 and int(r["nfe"]) > 0 for r in table)
    for k in range(3):
        rec = np.asarray(Image.open(out / "reconstructions" / f"img{k}.png"))
        assert rec.shape == (SIZE, SIZE) and rec.dtype == np.uint8
        assert (out / "panels" / f"img{k}.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["task"] == "inpainting" and summary["solver"] == "dmilo"
    assert set(summary["metrics"]) >= {"psnr", "ssim", "nfe", "seconds"}
    assert (out / "summary.md").read_text().count("±") >= 2

    # resume: drop img1's row (as if the run had been interrupted there); only img1 is redone
    kept = {r["name"]: r for r in table if r["name"] != "img1"}
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(kept.values())
    (out / "reconstructions" / "img1.png").unlink()
    before = {n: (out / "reconstructions" / f"{n}.png").stat().st_mtime_ns for n in kept}
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out))
    again = rows(out / "metrics.csv")
    assert sorted(r["name"] for r in again) == ["img0", "img1", "img2"]
    assert (out / "reconstructions" / "img1.png").is_file()
    assert {n: (out / "reconstructions" / f"{n}.png").stat().st_mtime_ns for n in kept} == before
    redone = next(r for r in again if r["name"] == "img1")
    original = next(r for r in table if r["name"] == "img1")
    assert float(redone["psnr"]) == pytest.approx(float(original["psnr"]), abs=1e-4)  # per-image seeds

    # other settings into the same output_dir: refused, nothing touched; --overwrite true redoes it
    line = error_line(run, "evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out), seed=1)
    assert re.search("other settings.*overwrite true", line)
    assert len(rows(out / "metrics.csv")) == 3
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out), seed=1,
        overwrite=True, max_images=1)
    assert [r["name"] for r in rows(out / "metrics.csv")] == ["img0"]
    assert not (out / "reconstructions" / "img2.png").exists()

    # inference on the measurements evaluate saved gives the same reconstructions (same seeds)
    datalist = out / "measurements" / "datalist.json"
    assert json.loads(datalist.read_text())["data"][0]["name"] == "img0"
    inf = tmp_path / "inf"
    run("inference.yaml", tmp_path, datalist_file=str(datalist), output_dir=str(inf), seed=1)
    a = np.asarray(Image.open(out / "reconstructions" / "img0.png")).astype(int)
    b = np.asarray(Image.open(inf / "reconstructions" / "img0.png")).astype(int)
    assert np.abs(a - b).max() <= 1
    assert rows(inf / "metrics.csv")[0]["name"] == "img0"
    assert (inf / "panels" / "img0.png").is_file()


def test_evaluate_nifti_volume_and_2d_keep_affine(tmp_path):
    data_dir = tmp_path / "nii"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    affine = np.array([[0.9, 0.0, 0.0, -10.0], [0.0, 1.1, 0.0, 4.0], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]])
    vol = rng.normal(300.0, 50.0, (SIZE, SIZE, 3)).astype(np.float32)
    nib.Nifti1Image(vol, affine).to_filename(str(data_dir / "vol.nii.gz"))
    flat = rng.normal(0.0, 1.0, (SIZE, SIZE)).astype(np.float32)
    nib.Nifti1Image(flat, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(str(data_dir / "flat.nii"))
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(data_dir), output_dir=str(out), task="gaussian_blur", batch_size=3)

    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["flat", "vol_s000", "vol_s001", "vol_s002"]
    rec = nib.load(str(out / "reconstructions" / "vol.nii.gz"))
    assert rec.shape == vol.shape
    np.testing.assert_allclose(rec.affine, affine, atol=1e-6)
    values = rec.get_fdata()
    for k in range(3):  # each slice back in its own intensity range
        assert values[..., k].min() >= vol[..., k].min() - 1e-3
        assert values[..., k].max() <= vol[..., k].max() + 1e-3
    rec2 = nib.load(str(out / "reconstructions" / "flat.nii.gz"))
    assert rec2.shape == flat.shape
    np.testing.assert_allclose(rec2.affine, np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "is not an existing folder"),
        ("empty", "holds no image files"),
        ("size", "is 20x20 but the prior takes 16x16"),
        ("checkpoint", "does not match prior"),
        ("task", "task 'nope' not found"),
    ],
)
def test_one_clear_error_before_any_work(tmp_path, case, match):
    data = tmp_path / "data"
    overrides = {"dataset_dir": str(data), "output_dir": str(tmp_path / "run")}
    if case == "empty":
        data.mkdir()
    elif case == "size":
        make_pngs(data, 1, size=20)
    elif case in ("checkpoint", "task"):
        make_pngs(data, 1)
    if case == "checkpoint":
        make_prior(tmp_path)
        torch.save(tiny_unet(1).state_dict() | {"extra.weight": torch.zeros(1)}, tmp_path / "tiny.pt")
        torch.save({k: v for k, v in tiny_unet(1).state_dict().items() if "out" not in k}, tmp_path / "tiny.pt")
    if case == "task":
        overrides["task"] = "nope"
    wf = workflow("evaluate.yaml", tmp_path, **overrides)
    line = error_line(wf.initialize)
    assert re.search(match, line), line
    assert line.startswith("monai_dmilo error: ") and "\n" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config", ["evaluate.yaml", "inference.yaml"])
def test_check_properties(tmp_path, config):
    make_pngs(tmp_path / "data", 1)
    np.save(tmp_path / "y.npy", np.zeros((SIZE, SIZE), np.float32))
    np.save(tmp_path / "mask.npy", np.ones((1, SIZE, SIZE), np.float32))
    (tmp_path / "list.json").write_text(json.dumps([{"name": "a", "y": "y.npy", "mask": "mask.npy"}]))
    wf = workflow(
        config, tmp_path, dataset_dir=str(tmp_path / "data"), datalist_file=None if config == "evaluate.yaml"
        else str(tmp_path / "list.json"), output_dir=str(tmp_path / "run"),
        **({} if config == "evaluate.yaml" else {"task": "inpainting"}),   # a datalist without provenance
    )
    wf.initialize()
    assert wf.check_properties() == []


def test_metadata_validates_against_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "schemas" / "metadata_schema.json").read_text())
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(meta, schema)
    broken = {k: v for k, v in meta.items() if k != "network_data_format"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    bad_tensor = json.loads(json.dumps(meta))
    bad_tensor["network_data_format"]["inputs"]["image"]["num_channels"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_tensor, schema)


def test_task_presets_load_and_name_existing_solver_presets():
    from monai_dmilo.workflow.tasks import available_tasks, load_task
    from monai_dmilo.operators import OPERATORS
    from monai_dmilo.solvers import available_presets

    tasks = available_tasks()
    assert {"inpainting", "sr4", "gaussian_blur", "motion_blur", "mri", "ct"} <= set(tasks)
    for name in tasks:
        task = load_task(name)
        assert task["operator"] in OPERATORS
        for solver in ("dmilo", "dmilo_pgd"):
            assert f"{task['solver_task']}_{solver}" in available_presets()


def test_every_solver_has_a_preset_on_every_task(monkeypatch):
    """``--task <t> --solver <s>`` resolves for every shipped task and registered solver: the
    task-family preset where one ships, else the solver's generic one, naming that solver."""
    from monai_dmilo.solvers import SOLVERS, load_solver_preset, task_solver_preset
    from monai_dmilo.workflow.tasks import available_tasks, load_task

    for name in available_tasks():
        family = load_task(name)["solver_task"]
        for solver in SOLVERS:
            preset = task_solver_preset(family, solver)
            assert preset in (f"{family}_{solver}", solver)
            assert load_solver_preset(preset)["solver"] == solver
    assert task_solver_preset("ct", "dps") == "ct_dps"
    assert task_solver_preset("sr4", "dps") == "dps"
    with pytest.raises(ValueError, match=r"solver name must be one of \['daps', .*got 'nope'"):
        task_solver_preset("sr4", "nope")
    monkeypatch.setitem(SOLVERS, "unshipped", SOLVERS["dps"])
    with pytest.raises(ValueError, match="'unshipped' has no preset for solver task 'sr4': looked for sr4_unshipped"):
        task_solver_preset("sr4", "unshipped")


def test_solver_preset_override_picks_another_preset(tmp_path):
    make_pngs(tmp_path / "data", 2)
    wf = workflow("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "run"),
                  solver_preset="inpainting_dmilo_fashion32", solver_overrides={})
    wf.initialize()
    solver = wf.parser.get_parsed_content("solver_def")
    assert (solver.num_outer, solver.num_inner) == (5, 20)


def test_solver_without_a_task_family_preset_runs_its_generic_one(tmp_path):
    make_pngs(tmp_path / "data", 2)
    wf = workflow("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "run"),
                  task="sr4", solver="dps", solver_overrides={})
    wf.initialize()
    assert wf.parser.get_parsed_content("solver_preset") == "dps"
    assert type(wf.parser.get_parsed_content("solver_def")).__name__ == "DPS"


def test_evaluate_dicom_series_like_a_volume(tmp_path):
    """A DICOM series folder (MONAI's PydicomReader) is degraded and reconstructed like a NIfTI
    volume; the reconstruction is a NIfTI volume with the series' geometry."""
    pytest.importorskip("pydicom")
    from monai_dmilo.data import read_dicom
    from helpers import write_dicom_series

    data_dir = tmp_path / "dcm"
    vol = np.random.default_rng(0).uniform(10.0, 200.0, (3, SIZE, SIZE))  # (slices, rows, columns)
    write_dicom_series(vol, data_dir / "series1", spacing=(1.5, 1.5, 4.0), description="input", uid_seed="in")
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(data_dir), output_dir=str(out), task="gaussian_blur", batch_size=3)

    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["series1_s000", "series1_s001", "series1_s002"]
    rec = nib.load(str(out / "reconstructions" / "series1.nii.gz"))
    source, affine = read_dicom(str(data_dir / "series1"))
    assert rec.shape == source.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(rec.affine, affine, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.diag(affine))[:3], [1.5, 1.5, 4.0])


def _low_resolution_series(folder, seed=0):
    from helpers import write_dicom_series

    vol = np.random.default_rng(seed).uniform(10.0, 200.0, (3, SIZE // 4, SIZE // 4))  # (slices, rows, columns)
    write_dicom_series(vol, folder, spacing=(4.0, 4.0, 3.0), description="low resolution", uid_seed=f"sr-{seed}")
    return vol


def test_inference_super_resolves_a_dicom_series_folder(tmp_path):
    """``--dataset_dir`` of measurement images (a low-resolution DICOM series) for a task without
    per-image parameter files: one item per slice, the reconstruction a NIfTI volume over the
    series' field of view on the prior's grid, in the series' units."""
    pytest.importorskip("pydicom")
    from monai_dmilo.data import read_dicom

    data_dir = tmp_path / "dcm"
    _low_resolution_series(data_dir / "lowres")
    out = tmp_path / "run"
    run("inference.yaml", tmp_path, dataset_dir=str(data_dir), output_dir=str(out), task="sr4", batch_size=3)

    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["lowres_s000", "lowres_s001", "lowres_s002"]
    rec = nib.load(str(out / "reconstructions" / "lowres.nii.gz"))
    source, affine = read_dicom(str(data_dir / "lowres"))
    assert source.shape == (SIZE // 4, SIZE // 4, 3) and rec.shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(np.abs(np.diag(rec.affine))[:3], [1.0, 1.0, 3.0], atol=1e-6)

    def corners(a, shape):  # outer edges of the first and last voxel in-plane, world coordinates
        lo = a @ np.array([-0.5, -0.5, 0.0, 1.0])
        hi = a @ np.array([shape[0] - 0.5, shape[1] - 0.5, 0.0, 1.0])
        return np.concatenate([lo[:3], hi[:3]])

    np.testing.assert_allclose(corners(rec.affine, rec.shape), corners(affine, source.shape), atol=1e-6)
    data = np.asarray(rec.dataobj)
    assert source.min() - 1e-3 <= data.min() and data.max() <= source.max() + 1e-3  # the series' units
    assert json.loads((out / "summary.json").read_text())["dataset"] == str(data_dir)


def test_inference_dataset_dir_for_a_task_with_parameter_files_is_one_line(tmp_path):
    make_pngs(tmp_path / "data", 1)
    line = error_line(run, "inference.yaml", tmp_path, dataset_dir=str(tmp_path / "data"),
                      output_dir=str(tmp_path / "run"), task="inpainting")
    assert "has no ['mask'] entry" in line and "--datalist_file" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config", ["common.yaml", "evaluate.yaml", "inference.yaml", "kspace.yaml",
                                    "multi_gpu_evaluate.yaml"])
def test_each_workflow_file_run_alone_says_in_one_line_what_to_layer(config):
    """``python -m monai.bundle run --config_file bundle/configs/<file>`` without the files it is
    layered on: no traceback, one line naming the full ``--config_file`` list (train.yaml stands
    alone and runs: test_training)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", f"bundle/configs/{config}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("monai_dmilo error: ") and "'bundle/configs/common.yaml'," in line
    if config != "common.yaml":
        assert line.rstrip().endswith("for the traceback)") and f"'bundle/configs/{config}']" in line
