"""scripts/export_prior.py carries a run's parameterization into the shipped model config."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from export_prior import match_run_config

ROOT = Path(__file__).resolve().parents[1]

SHIPPED = (ROOT / "configs" / "models" / "fashion_mnist_32.yaml").read_text()


def _run_config(tmp_path, **changes):
    params = dict(yaml.safe_load(SHIPPED)["params"], norm_num_groups=32)   # train.yaml writes every key
    run = {"params": {**params, **changes.pop("params", {})}, **changes}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def test_parameterization_is_written_and_removed(tmp_path):
    base = SHIPPED.replace("parameterization: v\n", "")
    with_v = match_run_config(base, _run_config(tmp_path, parameterization="v"), Path("shipped.yaml"))
    assert yaml.safe_load(with_v)["parameterization"] == "v"
    assert match_run_config(with_v, _run_config(tmp_path), Path("shipped.yaml")) == base
    assert match_run_config(with_v, tmp_path / "absent.yaml", Path("shipped.yaml")) == with_v


def test_other_network_params_are_refused(tmp_path):
    with pytest.raises(ValueError, match="network params"):
        match_run_config(SHIPPED, _run_config(tmp_path, params={"norm_num_groups": 16}), Path("shipped.yaml"))
    with pytest.raises(ValueError, match="network params"):
        match_run_config(SHIPPED, _run_config(tmp_path, params={"channels": [64, 128, 128]}), Path("shipped.yaml"))
