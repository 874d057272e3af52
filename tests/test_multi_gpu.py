"""multi_gpu_evaluate: torchrun with 2 CPU processes (gloo) gives the same per-image metrics as one.

Both runs go through the command line (`python -m monai.bundle run` and `torchrun ... -m
monai.bundle run`), as users run them.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, make_pngs, make_prior

OVERRIDES = [
    "--device", "cpu",
    "--num_steps", "2",
    "--batch_size", "2",
    "--solver_overrides", "{'num_outer': 1, 'num_inner': 3}",
]


def _bundle(args: list[str], *, torchrun: bool, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun else [sys.executable]
    cmd = launcher + ["-m", "monai.bundle", "run", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def _metrics(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_torchrun_two_processes_match_one(tmp_path):
    make_pngs(tmp_path / "data", 3)
    model = str(make_prior(tmp_path))
    common = ["--dataset_dir", str(tmp_path / "data"), "--model_config", model, *OVERRIDES]
    _bundle(["--config_file", "['bundle/configs/common.yaml','bundle/configs/evaluate.yaml']", "--output_dir", str(tmp_path / "one"), *common], torchrun=False)
    two = _bundle(
        [
            "--config_file", "['bundle/configs/common.yaml','bundle/configs/evaluate.yaml','bundle/configs/multi_gpu_evaluate.yaml']",
            "--output_dir", str(tmp_path / "two"), *common,
        ],
        torchrun=True,
    )
    assert "gloo" in two.stdout + two.stderr  # the process group really was initialised

    one, dist = _metrics(tmp_path / "one" / "metrics.csv"), _metrics(tmp_path / "two" / "metrics.csv")
    assert sorted(dist) == sorted(one) == ["img0", "img1", "img2"]
    assert not list((tmp_path / "two").glob("metrics.rank*.csv"))  # gathered into metrics.csv
    for name in one:
        assert dist[name]["seed"] == one[name]["seed"]
        for key in ("psnr", "ssim"):
            assert float(dist[name][key]) == pytest.approx(float(one[name][key]), rel=1e-3, abs=1e-4), (name, key)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["num_images"] == 3
    for k in range(3):
        assert (tmp_path / "two" / "reconstructions" / f"img{k}.png").is_file()
