"""Model configs -> networks -> generators: MONAI UNet factory, YAML round trips, clear errors."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from monai_dmilo.priors.stepwise import StepwiseDDIM
from monai_dmilo.networks import ADM_PRESETS, ADMUNet, monai_unet
from monai_dmilo.priors import build_prior, build_network, load_model_config, load_prior

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((REPO / "configs" / "models").glob("*.yaml"))
ADM_CONFIGS = sorted(p for p in MODEL_CONFIGS if p.stem in ADM_PRESETS)

TINY_MONAI = {
    "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 16],
    "attention_levels": [False, True], "num_res_blocks": 1, "num_head_channels": 8, "norm_num_groups": 8,
}
TINY_ADM = {
    "image_size": 16, "in_channels": 3, "model_channels": 16, "out_channels": 6, "num_res_blocks": 1,
    "attention_resolutions": [8], "channel_mult": [1, 2], "num_head_channels": 8, "norm_num_groups": 8,
}


def randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return net


def write_prior(tmp_path: Path, architecture: str, params: dict, image_shape: list[int], **extra) -> tuple[Path, torch.nn.Module]:
    """Save random weights under tmp/weights/ and a YAML config under tmp/configs/ pointing at them."""
    config = {"name": f"tiny_{architecture}", "architecture": architecture, "params": params, "image_shape": image_shape}
    source = randomise(build_network(config))
    (tmp_path / "weights").mkdir(exist_ok=True)
    (tmp_path / "configs").mkdir(exist_ok=True)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "weights" / "tiny.pt")
    config.update(checkpoint="../weights/tiny.pt", schedule={"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02})
    config.update(extra)
    path = tmp_path / "configs" / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, source


# ---------------------------------------------------------------- monai_unet factory


def test_monai_unet_builds_and_converts_lists():
    net = monai_unet(**TINY_MONAI)
    out = net(torch.randn(2, 1, 16, 16), torch.tensor([1, 500]))
    assert out.shape == (2, 1, 16, 16)
    learned = monai_unet(**{**TINY_MONAI, "out_channels": 2})
    assert learned(torch.randn(1, 1, 16, 16), torch.tensor([3])).shape == (1, 2, 16, 16)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"chanels": [8, 16]}, "unknown DiffusionModelUNet parameters"),
        ({"spatial_dims": 3}, "spatial_dims"),
        ({"out_channels": 3}, "out_channels"),
        ({"with_conditioning": True}, "with_conditioning"),
        ({"num_class_embeds": 10}, "num_class_embeds"),
        ({"attention_levels": [False]}, "attention_levels"),
        ({"channels": [8, 12]}, "norm_num_groups"),
    ],
)
def test_monai_unet_validation(change, match):
    with pytest.raises(ValueError, match=match):
        monai_unet(**{**TINY_MONAI, **change})
    params = dict(TINY_MONAI)
    del params["in_channels"]
    with pytest.raises(ValueError, match="in_channels"):
        monai_unet(**params)


# ---------------------------------------------------------------- round trips


def test_monai_unet_round_trip_yaml_to_generator(tmp_path):
    path, source = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16], sha256=None)
    gen = build_prior(path, num_steps=2)
    assert isinstance(gen, StepwiseDDIM)
    assert gen.image_shape == (1, 16, 16) and gen.num_steps == 2
    assert gen.timesteps == [(999, 500), (500, 0)]  # reference schedule for N = 2
    assert not gen.network.training and all(not p.requires_grad for p in gen.network.parameters())
    z = torch.randn(2, *gen.image_shape, generator=torch.Generator().manual_seed(0))
    x = gen.sample(z)
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()
    # The weights are the saved ones: same output as a generator over the source network.
    expected = StepwiseDDIM(source, num_steps=2, image_shape=(1, 16, 16)).sample(z)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)


def test_adm_round_trip_yaml_to_generator(tmp_path):
    path, source = write_prior(tmp_path, "adm", TINY_ADM, [3, 16, 16])
    gen = build_prior(path, num_steps=3, schedule="uniform", clip_x0=False)
    assert isinstance(gen.network, ADMUNet) and gen.clip_x0 is False
    z = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    x = gen.sample(z)
    assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()
    expected = StepwiseDDIM(source, num_steps=3, schedule="uniform", clip_x0=False, image_shape=(3, 16, 16)).sample(z)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)


def test_config_schedule_reaches_the_generator(tmp_path):
    path, _ = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16])
    config = load_model_config(path)
    config["schedule"] = {"num_train_timesteps": 500, "beta_start": 1e-3, "beta_end": 0.03}
    gen = build_prior(config, num_steps=1)
    betas = torch.linspace(1e-3, 0.03, 500, dtype=torch.float64)
    torch.testing.assert_close(gen.alphas_cumprod, torch.cumprod(1 - betas, 0))
    assert gen.timesteps == [(499, 0)]


def test_checkpoint_argument_and_sha256(tmp_path):
    path, source = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16])
    weights = tmp_path / "weights" / "tiny.pt"
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(weights.read_bytes())
    weights.unlink()
    config = load_model_config(path)
    net = load_prior(config, checkpoint=moved)
    torch.testing.assert_close(net.state_dict()["conv_in.conv.weight"], source.state_dict()["conv_in.conv.weight"])
    good = hashlib.sha256(moved.read_bytes()).hexdigest()
    load_prior({**config, "sha256": good}, checkpoint=moved)
    load_prior(config, checkpoint=moved, checkpoint_sha256=good)
    with pytest.raises(ValueError, match="does not match the expected sha256"):
        load_prior(config, checkpoint=moved, checkpoint_sha256="0" * 64)
    # a digest file next to the checkpoint is used when no digest is passed
    (tmp_path / "elsewhere.pt.sha256").write_text("0" * 64 + "  elsewhere.pt\n")
    with pytest.raises(ValueError, match="does not match the expected sha256"):
        load_prior(config, checkpoint=moved)
    (tmp_path / "elsewhere.pt.sha256").write_text(good + "\n")
    load_prior(config, checkpoint=moved)


def test_explicit_checkpoint_of_another_training_loads_unverified_with_a_log_line(tmp_path, caplog):
    """A prior the user trained (other weights than the preset's) is not refused as a sha256 mismatch."""
    import logging

    path, _ = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16])
    config = load_model_config(path)
    other = build_network(config)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    trained = tmp_path / "my_prior.pt"
    torch.save(other.state_dict(), trained)
    with caplog.at_level(logging.INFO):
        net = load_prior(config, checkpoint=trained)
    assert "unverified" in caplog.text and str(trained) in caplog.text
    torch.testing.assert_close(net.state_dict()["conv_in.conv.weight"], other.state_dict()["conv_in.conv.weight"])
    # the config's own file is still checked against the config's sha256
    with pytest.raises(ValueError, match="does not match the expected sha256"):
        load_prior({**config, "sha256": "0" * 64}, checkpoint=config["checkpoint"])


def test_device_argument(tmp_path):
    path, _ = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16])
    gen = build_prior(path, device="cpu")
    assert gen.alphas_cumprod.device.type == "cpu"
    assert next(gen.network.parameters()).device.type == "cpu"


# ---------------------------------------------------------------- errors


def test_missing_checkpoint_says_where_to_put_it(tmp_path):
    path, _ = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16], source="Train it with scripts/train.py.")
    (tmp_path / "weights" / "tiny.pt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_prior(path)
    msg = str(err.value)
    assert str((tmp_path / "weights" / "tiny.pt").resolve()) in msg
    assert "Train it with scripts/train.py." in msg and "checkpoint=" in msg
    config = load_model_config(path)
    config["checkpoint"] = None
    with pytest.raises(ValueError, match="names no checkpoint"):
        load_prior(config)


def test_architecture_mismatch_is_explained(tmp_path):
    path, _ = write_prior(tmp_path, "monai_unet", TINY_MONAI, [1, 16, 16])
    config = load_model_config(path)
    config["params"] = {**TINY_MONAI, "channels": [16, 16]}
    with pytest.raises(ValueError, match="does not match prior 'tiny_monai_unet'") as err:
        load_prior(config)
    assert "shape mismatches" in str(err.value)


def test_adm_weights_in_a_monai_config_suggest_the_preset(tmp_path):
    path, _ = write_prior(tmp_path, "adm", TINY_ADM, [3, 16, 16])
    config = load_model_config(path)
    config.update(architecture="monai_unet", params={**TINY_MONAI, "in_channels": 3, "out_channels": 3})
    with pytest.raises(ValueError, match="guided-diffusion \\(ADM\\) checkpoint"):
        load_prior(config)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"architecture": "vit"}, "architecture must be one of"),
        ({"image_shape": [16, 16]}, "image_shape"),
        ({"image_shape": [1, 16, 0]}, "image_shape"),
        ({"checkpiont": "x.pt"}, "did you mean 'checkpoint'"),
        ({"schedule": {"beta_begin": 0.1}}, "schedule"),
        ({"schedule": {"beta_schedule": "cosine"}}, "linear"),
        ({"sha256": "abc"}, "sha256"),
        ({"preset": "ffhq_10m"}, "preset"),
        ({"params": [1, 2]}, "params"),
    ],
)
def test_bad_configs_raise(change, match):
    config = {"name": "bad", "architecture": "monai_unet", "params": TINY_MONAI, "image_shape": [1, 16, 16], **change}
    with pytest.raises(ValueError, match=match):
        load_model_config(config)


def test_missing_required_key_and_channel_mismatch():
    with pytest.raises(ValueError, match="image_shape"):
        load_model_config({"name": "x", "architecture": "monai_unet", "params": TINY_MONAI})
    with pytest.raises(ValueError, match="takes 1 channels"):
        build_network({"name": "x", "architecture": "monai_unet", "params": TINY_MONAI, "image_shape": [3, 16, 16]})
    with pytest.raises(FileNotFoundError, match="known"):
        load_model_config("no_such_prior")
    with pytest.raises(TypeError):
        load_model_config(42)  # type: ignore[arg-type]


def test_free_metadata_is_kept():
    config = load_model_config(
        {"name": "x", "architecture": "monai_unet", "params": TINY_MONAI, "image_shape": [1, 16, 16], "intensity": "[-1, 1]"}
    )
    assert config["intensity"] == "[-1, 1]" and config["checkpoint"] is None


# ---------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_model_config_is_valid(path):
    config = load_model_config(path)
    assert config["name"] == path.stem
    assert config["checkpoint"] is not None and Path(config["checkpoint"]).is_absolute()
    assert load_model_config(path.stem)["checkpoint"] == config["checkpoint"]  # lookup by name


@pytest.mark.parametrize("path", ADM_CONFIGS, ids=lambda p: p.stem)
def test_adm_model_configs(path):
    config = load_model_config(path)
    assert config["architecture"] == "adm" and config["preset"] == path.stem
    assert config["image_shape"] == (3, 256, 256)
    assert Path(config["checkpoint"]).parent == (REPO / "checkpoints").resolve()
    with torch.device("meta"):
        net = build_network(config)
    reference = ADMUNet.from_preset(path.stem, device="meta")
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    if not Path(config["checkpoint"]).is_file():
        with pytest.raises(FileNotFoundError) as err:
            load_prior(config)
        assert config["checkpoint"] in str(err.value) and "Download" in str(err.value)


def test_all_adm_presets_have_a_config():
    assert {p.stem for p in ADM_CONFIGS} == set(ADM_PRESETS)


def test_the_old_import_paths_still_work_and_warn():
    import importlib

    from monai_dmilo import networks, priors

    with pytest.warns(DeprecationWarning, match="moved to monai_dmilo.priors.build_generator"):
        assert networks.build_generator is priors.build_generator
    with pytest.warns(FutureWarning, match="build_generator is now build_prior"):  # the prior's former name
        assert priors.build_generator("fashion_mnist_32", num_steps=2).num_steps == 2
    with pytest.warns(DeprecationWarning, match="moved to monai_dmilo.priors.stepwise"):
        old = importlib.reload(importlib.import_module("monai_dmilo.generator"))
    assert old.StepwiseDDIM is priors.StepwiseDDIM
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        networks.nope
