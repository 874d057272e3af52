"""The bundle runs the quality benchmark's validation-selected settings on the shipped priors.

``configs/solvers/validated/<prior>/<task>_<solver>.yaml`` is written by
``python benchmarks/quality.py --write_presets``; these tests check that a run picks them (and only
for the weights they were selected with), and that two cells of the README's table come out of
``python -m monai.bundle run`` with the benchmark's per-image PSNR.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO, error_line

from monai_dmilo.priors.checkpoints import sha256_of
from monai_dmilo.priors.loading import load_model_config
from monai_dmilo.solvers import SOLVERS, load_solver_preset, presets, run_solver_preset, solver_parameters, task_solver_preset
from monai_dmilo.workflow.tasks import load_task

FASHION = REPO / "configs" / "models" / "fashion_mnist_32.yaml"
CELL_IMAGES = REPO / "tests" / "data" / "quality_cells"  # two Fashion-MNIST test-split images of the benchmark


def test_every_validated_preset_builds_and_belongs_to_the_shipped_weights():
    files = sorted(presets.VALIDATED_DIR.glob("*/*.yaml"))
    assert len(files) >= 70  # 11 solvers x 7 (prior, task) pairs
    for path in files:
        data = yaml.safe_load(path.read_text())
        config = load_model_config(REPO / "configs" / "models" / f"{path.parent.name}.yaml")
        # a retrained prior needs `python benchmarks/quality.py --write_presets` after its benchmark
        assert data["prior_sha256"] == config["sha256"], f"{path} is stale: selected for other weights"
        assert path.name == f"{data['task']}_{data['solver']}.yaml"
        assert set(data["params"]) <= set(solver_parameters(data["solver"]))
        SOLVERS[data["solver"]](**data["params"])


def test_a_run_uses_the_validated_preset_only_for_the_weights_it_was_selected_with(tmp_path, monkeypatch, caplog):
    sr4 = load_task("sr4")
    chosen = run_solver_preset(sr4, "ddrm", str(FASHION))
    assert Path(chosen).parent == presets.VALIDATED_DIR / "fashion_mnist_32"
    family = load_solver_preset(task_solver_preset("sr4", "ddrm"))["params"]
    assert load_solver_preset(chosen)["params"]["eta"] != family["eta"]  # the benchmark moved it
    # other weights, a changed task or a prior without a validated preset: the papers' preset
    retrained = tmp_path / "retrained.pt"
    retrained.write_bytes(b"other weights")
    assert run_solver_preset(sr4, "ddrm", str(FASHION), checkpoint=str(retrained)) == "sr4_ddrm"
    shipped = load_model_config(FASHION)["checkpoint"]
    assert run_solver_preset(sr4, "ddrm", str(FASHION), checkpoint=str(shipped)) == chosen  # the same weights
    assert run_solver_preset({**sr4, "noise_sigma": 0.05}, "ddrm", str(FASHION)) == "sr4_ddrm"
    latent = REPO / "configs" / "models" / "fashion_latent_16.yaml"
    assert run_solver_preset(sr4, "dps", str(latent)) == "dps"
    # a preset selected for other weights of the same name is refused, with a warning
    folder = tmp_path / "fashion_mnist_32"
    folder.mkdir()
    (folder / "sr4_ddrm.yaml").write_text(yaml.safe_dump({"solver": "ddrm", "prior_sha256": "0" * 64, "params": {"eta": 0.5}}))
    monkeypatch.setattr(presets, "VALIDATED_DIR", tmp_path)
    with caplog.at_level("WARNING"):
        assert run_solver_preset(sr4, "ddrm", str(FASHION)) == "sr4_ddrm"
    assert "selected for other weights" in caplog.text


def test_a_datalist_item_may_fix_its_seed(tmp_path):
    from monai_dmilo.data import LoadImageForPriord

    load = LoadImageForPriord("image", base_seed=3)
    image = str(CELL_IMAGES / "test_00008.png")
    item = {"image": image, "name": "test_00008"}
    assert load({**item, "seed": 1000})["seed"] == 1000
    derived = load(dict(item))["seed"]
    assert derived != 1000 and derived == LoadImageForPriord("image", base_seed=3)(dict(item))["seed"]
    assert error_line(load, {**item, "seed": -1}) == (
        "monai_dmilo error: datalist item 'test_00008': seed must be an int in [0, 2147483647], got -1.")


def _cached_cell(task: str, solver: str, params: dict) -> dict[str, float]:
    """Per-image test PSNR of the benchmark's cached run (image name -> dB)."""
    digest = sha256_of(load_model_config(FASHION)["checkpoint"])[:16]
    cache = json.loads((REPO / "docs" / "benchmarks" / "quality" / f"{task}.json").read_text())
    from quality_bench.rule import cache_key

    key = cache_key(digest, "test", 16, solver, params)
    assert key in cache, f"the README cell {task} / {solver} is not in the benchmark's cache"
    return dict(zip(cache[key]["images"], cache[key]["psnr"]))


@pytest.mark.parametrize("task, solver", [("sr4", "ddrm"), ("gaussian_blur", "pigdm")])
def test_the_bundle_reproduces_a_readme_cell_per_image(tmp_path, task, solver):
    params = load_solver_preset(run_solver_preset(load_task(task), solver, str(FASHION)))["params"]
    expected = _cached_cell(task, solver, params)
    # the benchmark's test images are the split's first two, measured with seeds 1000 and 1001
    items = [{"image": str(CELL_IMAGES / f"{name}.png"), "seed": 1000 + b} for b, name in enumerate(["test_00008", "test_00319"])]
    datalist = tmp_path / "cells.json"
    datalist.write_text(json.dumps({"data": items}))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               "['bundle/configs/common.yaml','bundle/configs/evaluate.yaml']", "--datalist_file", str(datalist),
               "--task", task, "--solver", solver, "--output_dir", str(out), "--device", "cpu",
               "--solver_progress", "false"]
    # one thread, as the benchmark ran
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "metrics.csv") as f:
        measured = {row["name"]: float(row["psnr"]) for row in csv.DictReader(f)}
    assert set(measured) == {"test_00008", "test_00319"}
    for name, value in measured.items():
        assert abs(value - expected[name]) < 0.01, (name, value, expected[name])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["solver_params"] == params


def test_the_kspace_workflow_runs_its_own_validated_preset_before_the_mri_tasks(caplog):
    mri = load_task("mri")
    brain = REPO / "configs" / "models" / "brain_mri_32.yaml"
    with caplog.at_level("INFO"):
        chosen = run_solver_preset(mri, "dmilo", str(brain), workflow="kspace")
    assert Path(chosen) == presets.VALIDATED_DIR / "brain_mri_32" / "kspace_dmilo.yaml"
    assert "on the kspace workflow's validation files" in caplog.text
    assert load_solver_preset(chosen)["params"] != load_solver_preset(run_solver_preset(mri, "dmilo", str(brain)))["params"]
    # a solver without a k-space preset runs the MRI task's; another prior has neither
    assert Path(run_solver_preset(mri, "reddiff", str(brain), workflow="kspace")).name == "mri_reddiff.yaml"
    assert run_solver_preset(mri, "dmilo", str(FASHION), workflow="kspace") == task_solver_preset(mri["solver_task"], "dmilo")
