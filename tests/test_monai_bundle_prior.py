"""MONAI model-zoo bundles as priors: pixel and latent layouts are read as data (allow-listed
networks, no expressions executed), give the same reconstructions as the same weights through a
model YAML, load MONAI Generative-era weights, refuse unsupported features in one line; latent
priors run DMILO (decoder as the last layer), DMPlug and DPS with DMILO's graph flat in N, and
the other solvers refuse them; a [0, 1] prior is used through the exact change of variables."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from monai.networks.nets import AutoencoderKL
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from helpers import REPO, SIZE, error_line, make_pngs, rows, run, tiny_unet
from monai_dmilo.operators import build as build_operator
from monai_dmilo.priors.latent import LatentDDIM
from monai_dmilo.priors.loading import build_prior, load_model_config
from monai_dmilo.solvers import DMILO, DMILOPGD, DMPlug, DPS, per_sample_mean_square
from monai_dmilo.solvers import build as build_solver
from monai_dmilo.solvers.base import prior_range_map

UNET = {"_target_": "monai.networks.nets.DiffusionModelUNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
        "channels": [8, 16], "attention_levels": [False, True], "num_res_blocks": 1, "num_head_channels": 8,
        "norm_num_groups": 8}
LATENT = {**UNET, "in_channels": 2, "out_channels": 2}
AUTOENCODER = {"_target_": "monai.networks.nets.autoencoderkl.AutoencoderKL", "spatial_dims": 2, "in_channels": 1,
               "out_channels": 1, "channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1,
               "attention_levels": [False, False], "norm_num_groups": 4, "with_encoder_nonlocal_attn": False,
               "with_decoder_nonlocal_attn": False, "include_fc": False}
SCHEDULER = {"_target_": "monai.networks.schedulers.DDIMScheduler", "num_train_timesteps": 1000,
             "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195,
             "prediction_type": "v_prediction", "clip_sample": False}


def _network(definition, seed=0):
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in definition.items() if not k.startswith("_")}
    return (AutoencoderKL if "Autoencoder" in definition["_target_"] else type(tiny_unet()))(**kwargs).eval()


def write_bundle(folder, *, latent=False, fmt="json", scheduler=SCHEDULER, extra=None, state=None):
    """A model-zoo bundle layout with random weights; returns the networks written."""
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    config = {"imports": ["$import torch"], "bundle_root": ".", "device": "$torch.device('cpu')",
              "image_dim": SIZE, "image_size": [1, "@image_dim", "@image_dim"],
              "network_def": LATENT if latent else UNET, "noise_scheduler": scheduler,
              "load_diffusion": "$@network_def.load_state_dict(torch.load(@bundle_root + '/models/model.pt', weights_only=True))",
              **(extra or {})}
    network = _network(config["network_def"])
    torch.save(state if state is not None else network.state_dict(), folder / "models" / "model.pt")
    autoencoder = None
    if latent:
        config.update(autoencoder_def=AUTOENCODER, latent_shape=[2, SIZE // 2, SIZE // 2], scale_factor=0.8)
        config.pop("image_size")
        autoencoder = _network(AUTOENCODER, seed=1)
        torch.save(autoencoder.state_dict(), folder / "models" / "model_autoencoder.pt")
    text = json.dumps(config) if fmt == "json" else yaml.safe_dump(config)
    (folder / "configs" / f"inference.{fmt}").write_text(text)
    return network, autoencoder


def _inpainting(prior, batch=2):
    op = build_operator("inpainting", mask=(torch.rand(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) > 0.5).float())
    with torch.no_grad():
        x = prior.sample(torch.randn(batch, *(getattr(prior, "latent_shape", None) or prior.image_shape),
                                     generator=torch.Generator().manual_seed(5))).clamp(-1, 1)
    return op, op(x)


# ------------------------------------------------------------------------------------ pixel bundles
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_bundle_and_a_model_yaml_of_the_same_weights_reconstruct_identically(tmp_path, fmt):
    network, _ = write_bundle(tmp_path / "bundle", fmt=fmt)
    config = load_model_config(tmp_path / "bundle")
    assert config["format"] == "monai_bundle" and config["image_shape"] == (1, SIZE, SIZE)
    assert config["parameterization"] == "v" and config["clip_x0"] is False
    assert config["schedule"]["beta_schedule"] == "scaled_linear"
    torch.save({f"network.{k}": v for k, v in network.state_dict().items()}, tmp_path / "ours.pt")
    params = {k: v for k, v in UNET.items() if not k.startswith("_")}
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump({
        "name": "ours", "architecture": "monai_unet", "params": params, "image_shape": [1, SIZE, SIZE],
        "checkpoint": "ours.pt", "parameterization": "v", "clip_x0": False,
        "schedule": {"beta_schedule": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0195}}))
    outputs = []
    for source in (tmp_path / "bundle", tmp_path / "ours.yaml"):
        prior = build_prior(source)
        op, y = _inpainting(build_prior(tmp_path / "bundle"))
        outputs.append(DMILO(num_outer=2, num_inner=3).solve(y, op, prior, seed=0).x)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_a_bundle_step_is_monai_ddim_schedulers_step(tmp_path, prediction):
    scheduler_def = {**SCHEDULER, "prediction_type": prediction, "schedule": "linear_beta", "beta_start": 1e-4,
                     "beta_end": 0.02}
    network, _ = write_bundle(tmp_path / "bundle", scheduler=scheduler_def)
    prior = build_prior(tmp_path / "bundle", timesteps=[(700, 600)])
    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="linear_beta", prediction_type=prediction,
                              clip_sample=False)
    scheduler.set_timesteps(10)
    z = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = torch.full((2,), 700)
        expected, _ = scheduler.step(network(z, t), 700, z, eta=0.0)
        torch.testing.assert_close(prior.step(z, 0), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, ours", [("cosine", "squaredcos_cap_v2"), ("scaled_linear_beta", "scaled_linear")])
def test_monai_schedules_map_to_the_same_alphas_cumprod(tmp_path, name, ours):
    write_bundle(tmp_path / "bundle", scheduler={**SCHEDULER, "schedule": name})
    prior = build_prior(tmp_path / "bundle")
    monai = DDPMScheduler(num_train_timesteps=1000, schedule=name,
                          **({} if name == "cosine" else {"beta_start": 0.0015, "beta_end": 0.0195}))
    torch.testing.assert_close(prior.alphas_cumprod.float(), monai.alphas_cumprod.float(), rtol=1e-5, atol=1e-6)
    assert load_model_config(tmp_path / "bundle")["schedule"]["beta_schedule"] == ours


def test_weights_saved_by_monai_generative_are_converted(tmp_path):
    network = _network(UNET)
    old = {}
    for key, value in network.state_dict().items():  # MONAI Generative's names of the attention weights
        key = key.replace(".attn.to_q", ".to_q").replace(".attn.to_k", ".to_k").replace(".attn.to_v", ".to_v")
        old[key.replace(".attn.out_proj", ".proj_attn").replace(".postconv", ".conv")] = value
    assert set(old) != set(network.state_dict())
    write_bundle(tmp_path / "bundle", state=old)
    prior = build_prior(tmp_path / "bundle")
    z = torch.randn(1, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(prior.network.network(z, torch.tensor([500])), network(z, torch.tensor([500])))
    # an old file missing a weight is refused, not loaded with that weight left at its random init
    incomplete = {k: v for k, v in old.items() if k != "out.2.conv.bias"}
    assert len(incomplete) == len(old) - 1
    torch.save(incomplete, tmp_path / "bundle" / "models" / "model.pt")
    assert "load_old_state_dict left 0 weights unplaced" in error_line(build_prior, tmp_path / "bundle")


def test_intensity_range_comes_from_the_bundles_scaling(tmp_path):
    write_bundle(tmp_path / "bundle", extra={"base_transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0.0, "a_max": 255.0, "b_min": 0.0, "b_max": 1.0}]})
    assert load_model_config(tmp_path / "bundle")["intensity_range"] == (0.0, 1.0)
    assert build_prior(tmp_path / "bundle").intensity_range == (0.0, 1.0)


@pytest.mark.parametrize("case, match", [
    ("target", "network_def _target_ 'os.system' is not supported; DiffusionModelUNet is"),
    ("expression", "'network_def.channels' is the expression '$[8, 16]'; only plain values"),
    ("3d", "3D networks are not supported"),
    ("conditioning", "text / cross-attention conditioning is not supported"),
    ("schedule", "the scheduler's schedule 'sigmoid_beta' is not supported"),
    ("weights", "has none of models/model.pt"),
    ("scale", "scale_factor '$scripts.utils.compute_scale_factor()' is not a number"),
])
def test_unsupported_bundles_are_refused_in_one_line(tmp_path, case, match):
    folder = tmp_path / "bundle"
    write_bundle(folder, latent=case == "scale")
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    if case == "target":
        config["network_def"]["_target_"] = "os.system"
    elif case == "expression":
        config["network_def"]["channels"] = "$[8, 16]"
    elif case == "3d":
        config["network_def"]["spatial_dims"] = 3
    elif case == "conditioning":
        config["network_def"].update(with_conditioning=True, cross_attention_dim=8)
    elif case == "schedule":
        config["noise_scheduler"]["schedule"] = "sigmoid_beta"
    elif case == "weights":
        (folder / "models" / "model.pt").unlink()
    elif case == "scale":
        config["scale_factor"] = "$scripts.utils.compute_scale_factor()"
    path.write_text(json.dumps(config))
    assert match in error_line(load_model_config, folder)


def test_a_model_yaml_over_a_bundle_folder_overrides_its_values(tmp_path):
    write_bundle(tmp_path / "bundle", latent=True)
    config = json.loads((tmp_path / "bundle" / "configs" / "inference.json").read_text())
    config["scale_factor"] = "$scripts.utils.compute_scale_factor()"  # computed at training time: not in the file
    (tmp_path / "bundle" / "configs" / "inference.json").write_text(json.dumps(config))
    (tmp_path / "prior.yaml").write_text(yaml.safe_dump(
        {"prior_folder": "bundle", "name": "mine", "latent": {"scale_factor": 0.5}}))
    loaded = load_model_config(tmp_path / "prior.yaml")
    assert loaded["name"] == "mine" and loaded["latent"]["scale_factor"] == 0.5
    assert loaded["format"] == "monai_bundle" and loaded["image_shape"] == (1, SIZE, SIZE)


# ------------------------------------------------------------------------------------ latent priors
def test_a_latent_bundle_is_the_latent_steps_then_the_decoder(tmp_path):
    network, autoencoder = write_bundle(tmp_path / "bundle", latent=True)
    prior = build_prior(tmp_path / "bundle", num_steps=3)
    assert isinstance(prior, LatentDDIM) and prior.num_steps == 4 and prior.num_diffusion_steps == 3
    assert prior.latent_shape == (2, SIZE // 2, SIZE // 2) and prior.image_shape == (1, SIZE, SIZE)
    z = torch.randn(2, *prior.latent_shape)
    with torch.no_grad():
        expected = autoencoder.decode(prior.latent.sample(z) / 0.8)
        torch.testing.assert_close(prior.sample(z), expected)
        torch.testing.assert_close(prior.step(prior.latent.sample(z), 3), expected)


def test_dmilo_on_a_latent_prior_has_a_latent_and_an_image_deviation_and_fits_its_own_range(tmp_path):
    write_bundle(tmp_path / "bundle", latent=True)
    prior = build_prior(tmp_path / "bundle", num_steps=2)
    op, y = _inpainting(prior)
    out = DMILO(num_outer=2, num_inner=25, lr_z=0.05, lr_nu=0.01, lambda_nu=0.0).solve(y, op, prior, seed=0)
    start = per_sample_mean_square(op(out.extras["initial_x"]) - y)
    shapes = [tuple(d.shape[1:]) for d in out.extras["deviations"]]
    assert shapes == [prior.latent_shape, prior.latent_shape, prior.image_shape]
    assert out.x.shape == (2, 1, SIZE, SIZE)
    assert float(out.history["data_fit"][-1].max()) < 0.1 * float(start.min())
    pgd = DMILOPGD(num_outer=2, num_inner=3).solve(y, op, prior, seed=0)
    assert pgd.x.shape == (2, 1, SIZE, SIZE) and torch.isfinite(pgd.x).all()


def _graph_sizes(solver, prior, y, op):
    events = []
    for net in (prior.network, prior.decoder):
        net.register_forward_hook(lambda *_: events.append("F") if torch.is_grad_enabled() else None)
    prior.network.register_full_backward_hook(lambda *_: events.append("B"))
    prior.decoder.register_full_backward_hook(lambda *_: events.append("B"))
    solver.solve(y, op, prior, seed=0)
    counts, pending = [], 0
    for event in events:
        if event == "F":
            pending += 1
        else:
            if pending:
                counts.append(pending)
            pending = 0
    return counts


@pytest.mark.parametrize("num_steps", [1, 2, 3, 4])
def test_dmilos_graph_on_a_latent_prior_holds_one_evaluation_whatever_n(tmp_path, num_steps):
    write_bundle(tmp_path / "bundle", latent=True)
    prior = build_prior(tmp_path / "bundle", num_steps=num_steps)
    op, y = _inpainting(prior, batch=1)
    sizes = _graph_sizes(DMILO(num_outer=1, num_inner=2), prior, y, op)
    assert sizes == [1] * (2 * (num_steps + 1))  # one network (or the decoder) per backward pass


def test_dmplug_and_dps_differentiate_through_the_decoder_and_the_others_refuse(tmp_path):
    write_bundle(tmp_path / "bundle", latent=True)
    prior = build_prior(tmp_path / "bundle", num_steps=3)
    op, y = _inpainting(prior)
    for solver in (DMPlug(num_iters=3), DPS(num_steps=5, zeta=0.5)):
        out = solver.solve(y, op, prior, seed=0)
        assert out.x.shape == (2, 1, SIZE, SIZE) and torch.isfinite(out.x).all()
        assert out.nfe_backward > 0
    for name in ("ddrm", "diffpir", "pigdm", "reddiff", "daps"):
        message = error_line(build_solver(name).solve, y, op, prior)
        assert f"solver {name!r} needs an image-space denoiser at every step and does not run on a latent prior" in message
    assert build_solver("tv", num_iters=3).solve(y, op, prior).x.shape == (2, 1, SIZE, SIZE)


# ------------------------------------------------------------------------------------ intensity range
def test_a_zero_one_prior_solves_the_exactly_rescaled_problem(tmp_path):
    write_bundle(tmp_path / "bundle", extra={"image_range": [0.0, 1.0]})
    prior = build_prior(tmp_path / "bundle")
    mapping = prior_range_map(prior)
    assert (mapping.scale, mapping.offset) == (2.0, -1.0)
    op, _ = _inpainting(prior)
    u = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    y = op(2 * u - 1)  # the measurement of the image 2u - 1 in the workflow's [-1, 1]
    torch.testing.assert_close(mapping.measurement(y, op, prior.image_shape), op(u))
    out = build_solver("pseudo_inverse").solve(y, op, prior)
    mask = op.mask.expand_as(out.x).bool()
    torch.testing.assert_close(out.x[mask], (2 * u - 1)[mask])  # observed pixels come back in [-1, 1] units
    assert float(out.x[~mask].max()) == -1.0  # unobserved: the prior's 0, black


@pytest.mark.parametrize("kind", ["latent", "zero_one"])
def test_evaluate_takes_a_bundle_folder_with_prior(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(REPO)
    write_bundle(tmp_path / "bundle", latent=kind == "latent", extra={"image_range": [0.0, 1.0]} if kind == "zero_one" else None)
    make_pngs(tmp_path / "data", 2)
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out),
        prior=str(tmp_path / "bundle"), solver="dmilo", solver_overrides={"num_outer": 1, "num_inner": 2})
    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["img0", "img1"]
    assert all(float(r["psnr"]) > 0 for r in rows(out / "metrics.csv"))


@pytest.mark.parametrize("safetensors", [False, True])
def test_the_shipped_prior_written_as_a_bundle_reconstructs_what_its_yaml_does(tmp_path, safetensors):
    from export_bundle_layout import export

    folder = export("fashion_mnist_32", tmp_path / "bundle", safetensors=safetensors)
    assert (folder / "models" / ("model.safetensors" if safetensors else "model.pt")).is_file()
    ours, theirs = build_prior("fashion_mnist_32"), build_prior(folder)
    op = build_operator("inpainting", mask=(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) > 0.5).float())
    y = op(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1)
    a = DMILO(num_outer=1, num_inner=2).solve(y, op, ours, seed=0).x
    b = DMILO(num_outer=1, num_inner=2).solve(y, op, theirs, seed=0).x
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_prior_names_a_yaml_a_name_a_folder_or_weights_with_their_yaml(tmp_path):
    from monai_dmilo.workflow.tasks import task_model_config

    task = {"prior": None}
    assert task_model_config(task, prior="fashion_mnist_32").endswith("configs/models/fashion_mnist_32.yaml")
    write_bundle(tmp_path / "bundle")
    assert task_model_config(task, prior=str(tmp_path / "bundle")) == str(tmp_path / "bundle")
    (tmp_path / "prior.pt").write_bytes(b"")
    message = error_line(task_model_config, task, prior=str(tmp_path / "prior.pt"))
    assert "is a weights file with no model config beside it (prior.yaml)" in message
    (tmp_path / "prior.yaml").write_text("name: x\n")
    assert task_model_config(task, prior=str(tmp_path / "prior.pt")) == str(tmp_path / "prior.yaml")


@pytest.mark.parametrize("name, kind", [("fashion_latent_16", "latent"), ("fashion_diffusers_32", "diffusers")])
def test_the_shipped_demo_priors_of_each_format_load_and_generate(name, kind):
    if kind == "diffusers":
        pytest.importorskip("diffusers")
    prior = build_prior(name, num_steps=3)
    config = load_model_config(name)
    assert config["format"] == ("monai_bundle" if kind == "latent" else "diffusers") and config["sha256"]
    assert isinstance(prior, LatentDDIM) == (kind == "latent") and prior.image_shape == (1, 32, 32)
    z = torch.randn(2, *(getattr(prior, "latent_shape", None) or prior.image_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = prior.sample(z)
    assert x.shape == (2, 1, 32, 32) and torch.isfinite(x).all() and float(x.std()) > 0.1
