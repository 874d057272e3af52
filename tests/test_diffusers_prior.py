"""A diffusers UNet2DModel folder (or pipeline folder) as a prior: read as a model config, its steps
are diffusers' DDIM steps, unsupported networks are refused in one line, and the workflows take it
with --model_config <folder>."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import REPO, SIZE, error_line, make_pngs, rows, run

diffusers = pytest.importorskip("diffusers")

from monai_dmilo.priors.loading import build_prior, load_model_config  # noqa: E402


def tiny_unet(**extra) -> "diffusers.UNet2DModel":
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8, **extra).eval()


def write_folder(folder, unet, *, pipeline=False, **scheduler_options):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, **scheduler_options)
    if pipeline:  # model_index.json + unet/ + scheduler/
        unet.save_pretrained(folder / "unet")
        scheduler.save_pretrained(folder / "scheduler")
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDIMPipeline"}))
    else:
        unet.save_pretrained(folder)
        scheduler.save_pretrained(folder)
    return scheduler


@pytest.mark.parametrize("pipeline", [False, True])
def test_folder_steps_are_diffusers_ddim_steps(tmp_path, pipeline):
    unet = tiny_unet()
    scheduler = write_folder(tmp_path / "prior", unet, pipeline=pipeline, beta_schedule="scaled_linear",
                             beta_start=0.0015, beta_end=0.0195, prediction_type="v_prediction", clip_sample=False)
    config = load_model_config(tmp_path / "prior")
    assert config["format"] == "diffusers" and config["parameterization"] == "v" and config["clip_x0"] is False
    assert config["image_shape"] == (1, SIZE, SIZE) and config["checkpoint"].endswith(".safetensors")
    scheduler.set_timesteps(10)
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for t in (900, 400):
        prior = build_prior(tmp_path / "prior", timesteps=[(t, t - 100)])
        with torch.no_grad():
            expected = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
            torch.testing.assert_close(prior.step(x, 0), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case, match", [
    ("class", "class conditioning (class_embed_type / num_class_embeds) is not supported"),
    ("text", "text conditioning is not supported"),
    ("weights", "has none of diffusion_pytorch_model.safetensors"),
    ("scheduler", "has no scheduler_config.json"),
    ("prediction", "prediction_type 'noise' is not one of"),
])
def test_unsupported_folders_are_refused_in_one_line(tmp_path, case, match):
    folder = tmp_path / "prior"
    write_folder(folder, tiny_unet(num_class_embeds=3) if case == "class" else tiny_unet())
    if case == "text":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    elif case == "weights":
        (folder / "diffusion_pytorch_model.safetensors").unlink()
    elif case == "scheduler":
        (folder / "scheduler_config.json").unlink()
    elif case == "prediction":
        config = json.loads((folder / "scheduler_config.json").read_text())
        (folder / "scheduler_config.json").write_text(json.dumps({**config, "prediction_type": "noise"}))
    assert match in error_line(load_model_config, folder)


def test_evaluate_takes_a_diffusers_folder_as_model_config(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    write_folder(tmp_path / "prior", tiny_unet(), prediction_type="epsilon")
    make_pngs(tmp_path / "data", 2)
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out),
        model_config=str(tmp_path / "prior"))
    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["img0", "img1"]
