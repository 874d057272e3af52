"""Model configs: one YAML file per diffusion prior, and the functions that turn it into a generator.

A model config (``configs/models/<name>.yaml``) says which architecture to build, with which
parameters, where its weights are and which DDPM schedule it was trained with::

    name: fashion_mnist_32
    architecture: monai_unet            # a key of ARCHITECTURES: monai_unet | adm
    params: {spatial_dims: 2, in_channels: 1, out_channels: 1, channels: [32, 64, 64], ...}
    # adm only: preset: ffhq_10m        (params then override the preset's values)
    image_shape: [1, 32, 32]            # (C, H, W) the prior generates
    checkpoint: ../../bundle/models/fashion_mnist_32.pt   # relative to this YAML file, or absolute
    sha256: null                        # hex digest checked before loading, when known
    schedule: {num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02}
                                        # beta_schedule: linear (default) | scaled_linear | squaredcos_cap_v2;
                                        # or alphas_cumprod: [...] (T values)
    parameterization: eps               # what the network predicts inside: eps (default) | v; the
                                        # built module outputs eps either way (priors/parameterization.py)
    intensity_window: null              # [lo, hi]: stored intensities mapped to [-1, 1] (e.g. CT in HU,
                                        # [-1000, 1000]); null: each image min-max scaled
    clip_x0: true                       # clip the predicted x0 to [-1, 1] at each step (diffusers' clip_sample)
    intensity_range: [-1, 1]            # the images' range the network was trained on ([0, 1] for MONAI's
                                        # mednist_ddpm); workflows scale images to it
    latent: null                        # a latent prior: {params: <AutoencoderKL params>, checkpoint: <weights>,
                                        # scale_factor: s, latent_shape: [c, h, w], sha256: <of the weights>};
                                        # the network then runs on
                                        # latents and image_shape is the decoded image (priors/latent.py)
    prior_folder: null                  # a diffusers folder or MONAI bundle folder this YAML starts from
                                        # (relative to the YAML); the YAML's other keys override its values
    source: where to obtain the checkpoint (shown when the file is missing)
    description: free text (any other key is kept as metadata, e.g. intensity)

A diffusers ``UNet2DModel`` or pipeline folder and a MONAI model-zoo bundle folder are read as model
configs too (:mod:`~monai_dmilo.priors.formats`): pass the folder wherever a model config goes.

Usage::

    gen = build_prior("configs/models/ffhq_10m.yaml", num_steps=3, device=device)
"""
from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from monai_dmilo.checks import as_bool
from monai_dmilo.data.transforms import check_intensity_window
from monai_dmilo.priors.checkpoints import load_into, load_state_dict
from monai_dmilo.priors.formats import diffusers_unet2d, folder_model_config, is_prior_folder
from monai_dmilo.priors.schedules import make_alphas_cumprod
from monai_dmilo.workflow.presets import CONFIG_ROOT, preset_names, read_yaml_mapping
from monai_dmilo.priors.stepwise import StepwiseDDIM
from monai_dmilo.priors.latent import AutoencoderDecoder, LatentDDIM
from monai_dmilo.networks.adm_unet import ADMUNet
from monai_dmilo.networks.monai_unet import monai_unet
from monai_dmilo.priors.parameterization import PARAMETERIZATIONS, network_in_channels, wrap_network

__all__ = ["ARCHITECTURES", "load_model_config", "build_network", "load_prior", "build_prior", "build_generator"]


def _build_monai_unet(config: Mapping[str, Any]) -> nn.Module:
    return monai_unet(**config["params"])


def _build_adm(config: Mapping[str, Any]) -> nn.Module:
    preset = config.get("preset")
    if preset is not None:
        return ADMUNet.from_preset(preset, **config["params"])
    return ADMUNet(**config["params"])


def _build_diffusers_unet2d(config: Mapping[str, Any]) -> nn.Module:
    return diffusers_unet2d(config["params"])


# name -> builder(config) -> randomly initialised network.
ARCHITECTURES: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "monai_unet": _build_monai_unet,
    "adm": _build_adm,
    "diffusers_unet2d": _build_diffusers_unet2d,
}

_KEYS = {
    "name", "architecture", "params", "preset", "image_shape", "checkpoint", "sha256", "schedule",
    "source", "description", "license", "parameterization", "intensity_window", "clip_x0", "format",
    "intensity_range", "latent", "prior_folder",
}
_LATENT_KEYS = {"params", "checkpoint", "scale_factor", "latent_shape", "sha256"}
_SCHEDULE_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear",
                      "alphas_cumprod": None}
# configs/models/ of a source checkout, used to resolve a bare prior name.
_CONFIG_DIR = CONFIG_ROOT / "models"


def _resolve_source(path_or_dict: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), None
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(f"model config must be a path, a prior name or a mapping, got {type(path_or_dict).__name__}.")
    path = Path(path_or_dict).expanduser()
    if is_prior_folder(path):  # another project's format (a diffusers folder)
        return folder_model_config(path), None
    if not path.is_file() and path.suffix == "" and len(path.parts) == 1:
        candidate = _CONFIG_DIR / f"{path.name}.yaml"
        if candidate.is_file():
            path = candidate
        else:
            known = preset_names(_CONFIG_DIR)
            raise FileNotFoundError(
                f"no model config {str(path_or_dict)!r}: not a file, and not a prior name in {str(_CONFIG_DIR)!r} "
                f"(known: {known})."
            )
    if not path.is_file():
        raise FileNotFoundError(f"model config file not found: {str(path)!r}.")
    config = read_yaml_mapping(path, "model config")
    folder = config.pop("prior_folder", None)
    if folder is not None:  # a YAML over another project's folder: its keys override the folder's
        folder_path = Path(str(folder)).expanduser()
        folder_path = folder_path if folder_path.is_absolute() else path.resolve().parent / folder_path
        if not is_prior_folder(folder_path):
            raise ValueError(f"model config {str(path)!r}: prior_folder {str(folder)!r} is not a diffusers folder or "
                             f"MONAI bundle folder ({str(folder_path)!r}).")
        given = config.pop("latent", None) or {}
        base = folder_model_config(folder_path, scale_factor=given.get("scale_factor") if isinstance(given, Mapping) else None)
        latent = {**(base.get("latent") or {}), **given}
        return {**base, **config, **({"latent": latent} if latent else {})}, path.resolve().parent
    return config, path.resolve().parent


def load_model_config(
    path_or_dict: str | os.PathLike | Mapping[str, Any], *, base_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Read and validate a model config.

    Args:
        path_or_dict: a YAML file, a prior name of ``configs/models/`` (e.g. ``"ffhq_10m"``), or a
            mapping (an already loaded config is returned re-validated).
        base_dir: directory that a relative ``checkpoint`` is resolved against for a mapping
            (default: the current directory); for a file it is the file's directory.

    Returns:
        A new dict with every key filled: ``checkpoint`` is an absolute path string or None,
        ``params`` a dict, ``image_shape`` a tuple ``(C, H, W)``, ``schedule`` complete,
        ``intensity_window`` a ``(lo, hi)`` tuple or None.

    Raises:
        FileNotFoundError: the config file does not exist.
        ValueError: missing / unknown keys or malformed values.
    """
    config, config_dir = _resolve_source(path_or_dict)
    where = f"model config {config.get('name', '<unnamed>')!r}"
    for key in sorted(set(config) - _KEYS):  # free metadata is kept; a misspelt known key is an error
        close = difflib.get_close_matches(str(key), _KEYS, n=1, cutoff=0.8)
        if close:
            raise ValueError(f"{where} has the unknown key {key!r}; did you mean {close[0]!r}?")
    for key in ("name", "architecture", "image_shape"):
        if key not in config:
            raise ValueError(f"{where} is missing the required key {key!r}.")
    if config["architecture"] not in ARCHITECTURES:
        raise ValueError(
            f"{where}: architecture must be one of {sorted(ARCHITECTURES)}, got {config['architecture']!r}."
        )
    params = config.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}: params must be a mapping, got {params!r}.")
    if config["architecture"] != "adm" and config.get("preset") is not None:
        raise ValueError(f"{where}: 'preset' is only used by architecture 'adm', got architecture {config['architecture']!r}.")
    shape = config["image_shape"]
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"{where}: image_shape must be three positive ints [C, H, W], got {shape!r}.")
    schedule = config.get("schedule") or {}
    if not isinstance(schedule, Mapping) or set(schedule) - set(_SCHEDULE_DEFAULTS):
        raise ValueError(
            f"{where}: schedule must be a mapping with keys among {sorted(_SCHEDULE_DEFAULTS)}, got {schedule!r}."
        )
    schedule = {**_SCHEDULE_DEFAULTS, **schedule}
    parameterization = config.get("parameterization", "eps")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"{where}: parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}."
        )
    try:  # a named schedule or an explicit abar must make a valid schedule
        make_alphas_cumprod(**schedule)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: schedule {dict(schedule)!r}: {err}") from None
    try:
        intensity_window = check_intensity_window(config.get("intensity_window"))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    intensity_range = config.get("intensity_range", (-1.0, 1.0))
    try:
        lo, hi = (float(v) for v in intensity_range)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: intensity_range must be two numbers [lo, hi], got {intensity_range!r}.") from None
    if not lo < hi:
        raise ValueError(f"{where}: intensity_range must have lo < hi, got {intensity_range!r}.")
    base = config_dir if config_dir is not None else Path(base_dir if base_dir is not None else os.getcwd())
    checkpoint = _absolute(config.get("checkpoint"), base, f"{where}: checkpoint")
    latent = _check_latent(config.get("latent"), base, where)
    sha256 = config.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64):
        raise ValueError(f"{where}: sha256 must be a 64-character hex digest or null, got {sha256!r}.")
    return {
        **config,
        "params": dict(params),
        "preset": config.get("preset"),
        "image_shape": tuple(shape),
        "schedule": schedule,
        "parameterization": parameterization,
        "intensity_window": intensity_window,
        "clip_x0": as_bool("clip_x0", config.get("clip_x0", True)),
        "intensity_range": (lo, hi),
        "latent": latent,
        "checkpoint": checkpoint,
        "sha256": sha256,
        "source": config.get("source"),
    }


def _absolute(path: Any, base: Path, what: str) -> str | None:
    """A config path made absolute against ``base``; None stays None."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path string or null, got {path!r}.")
    resolved = Path(path).expanduser()
    return str((resolved if resolved.is_absolute() else base / resolved).resolve())


def _check_latent(latent: Any, base: Path, where: str) -> dict[str, Any] | None:
    """The ``latent`` section checked: autoencoder params, weights, scale factor, latent shape."""
    if latent is None:
        return None
    if not isinstance(latent, Mapping) or set(latent) - _LATENT_KEYS or not {"params", "checkpoint"} <= set(latent):
        raise ValueError(f"{where}: latent must be a mapping with params and checkpoint (keys among "
                         f"{sorted(_LATENT_KEYS)}), got {latent!r}.")
    scale = latent.get("scale_factor", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"{where}: latent scale_factor must be a positive number, got {scale!r}.")
    shape = latent.get("latent_shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"{where}: latent latent_shape must be three positive ints [c, h, w], got {shape!r}.")
    sha256 = latent.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64):
        raise ValueError(f"{where}: latent sha256 must be a 64-character hex digest or null, got {sha256!r}.")
    return {"params": dict(latent["params"]), "checkpoint": _absolute(latent["checkpoint"], base, f"{where}: latent checkpoint"),
            "scale_factor": float(scale), "latent_shape": tuple(shape), "sha256": sha256}


def build_network(config: str | os.PathLike | Mapping[str, Any]) -> nn.Module:
    """The config's network with random weights (no checkpoint is read), as an eps-prediction module.

    Raises:
        ValueError: the network's input channels disagree with ``image_shape``.
    """
    config = load_model_config(config)
    network = ARCHITECTURES[config["architecture"]](config)
    sched = config["schedule"]
    network = wrap_network(network, config["parameterization"], **sched)
    in_channels = network_in_channels(network)
    shape = config["latent"]["latent_shape"] if config["latent"] else config["image_shape"]
    if in_channels is not None and in_channels != shape[0]:
        what = "latent_shape" if config["latent"] else "image_shape"
        raise ValueError(
            f"model config {config['name']!r}: the network takes {in_channels} channels but {what} is {list(shape)}."
        )
    return network


def _explicit_checkpoint_sha256(path: Path, given: str | None, config: Mapping[str, Any]) -> str | None:
    """The digest an explicitly named checkpoint is checked against (None: unverified, logged)."""
    if given is not None:
        return given
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        words = sidecar.read_text().split()
        if not words:
            raise ValueError(f"checkpoint digest file {str(sidecar)!r} is empty; expected a hex sha256.")
        return words[0]
    own = config.get("checkpoint")
    if own is not None and Path(own).resolve() == path.resolve():
        return config["sha256"]
    logging.getLogger(__name__).info(
        "loading checkpoint %s unverified (no checkpoint_sha256 given and no %s next to it)", path, sidecar.name
    )
    return None


def load_prior(
    config: str | os.PathLike | Mapping[str, Any],
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_sha256: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Build the config's network and load its weights; returned frozen and in eval mode.

    Args:
        config: model config (path, prior name or mapping; see :func:`load_model_config`).
        checkpoint: a weights file overriding the config's ``checkpoint`` (e.g. a prior trained with
            ``train.yaml``). It is checked against ``checkpoint_sha256``, else against the digest in a
            ``<checkpoint>.sha256`` file next to it, else against the config's ``sha256`` when it is
            the config's own file; otherwise it is loaded unverified (``weights_only``, strict) and a
            log line says so.
        checkpoint_sha256: expected hex sha256 of ``checkpoint``.
        device: where to put the network (default: CPU).

    Raises:
        FileNotFoundError: the checkpoint file is missing (the message says where to put it).
        ValueError: no checkpoint at all, a hash mismatch, or weights of another architecture.
    """
    config = load_model_config(config)
    name = config["name"]
    path = Path(checkpoint).expanduser().resolve() if checkpoint is not None else config["checkpoint"]
    if path is None:
        raise ValueError(f"model config {name!r} names no checkpoint; pass checkpoint=<path to the weights>.")
    if not Path(path).is_file():
        hint = f" {config['source']}" if config.get("source") else ""
        raise FileNotFoundError(
            f"checkpoint of prior {name!r} not found at {str(path)!r}.{hint} Place the weights file there, "
            "or pass checkpoint=<path> (or edit 'checkpoint' in the model config)."
        )
    network = build_network(config)
    expected = config["sha256"]
    if checkpoint is not None:
        expected = _explicit_checkpoint_sha256(Path(path), checkpoint_sha256, config)
    state = load_state_dict(path, sha256=expected)
    # another project's weights file holds the bare network's keys, not this project's wrapper's (network.*)
    target = network.network if config.get("format") and hasattr(network, "network") else network
    try:
        _load_strict_or_old(target, state, config.get("format"))
    except ValueError as err:
        beside = Path(path).with_suffix(".yaml")
        hint = (f" The model config written with it is {str(beside)!r}: pass --model_config {beside}."
                if checkpoint is not None and beside.is_file() else "")
        raise ValueError(
            f"checkpoint {str(path)!r} does not match prior {name!r} (architecture "
            f"{config['architecture']!r}{', preset ' + repr(config['preset']) if config['preset'] else ''}): {err}"
            f"{hint}"
        ) from err
    network = network.eval().requires_grad_(False)
    if device is not None:
        network = network.to(device)
    return network


def _load_strict_or_old(network: nn.Module, state: Mapping[str, torch.Tensor], fmt: str | None) -> None:
    """Strict loading; for a MONAI bundle whose keys do not match, MONAI's ``load_old_state_dict``
    (weights saved by MONAI Generative). That function starts from the network's own (random)
    weights and ignores what it cannot place, so it is accepted only when it placed every old
    weight and there were exactly as many as the network has: then each weight was set once."""
    try:
        load_into(network, state, strict=True)
        return
    except ValueError as err:
        if fmt != "monai_bundle" or not hasattr(network, "load_old_state_dict"):
            raise
        first = err
    old = dict(state)
    expected = len(network.state_dict())
    try:
        network.load_old_state_dict(old)  # pops every weight it places
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{first} (MONAI's load_old_state_dict could not convert them either: "
                         f"{type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if old or len(state) != expected:
        raise ValueError(f"{first} (MONAI's load_old_state_dict left {len(old)} weights unplaced and the file holds "
                         f"{len(state)} weights for the network's {expected})")
    logging.getLogger(__name__).info("converted weights saved by MONAI Generative with load_old_state_dict")


def load_autoencoder(config: Mapping[str, Any], device: torch.device | str | None = None) -> nn.Module:
    """The latent prior's MONAI ``AutoencoderKL`` with its weights (strict, weights-only), frozen."""
    from monai.networks.nets import AutoencoderKL
    import inspect

    latent = config["latent"]
    allowed = set(inspect.signature(AutoencoderKL.__init__).parameters) - {"self"}
    unknown = sorted(set(latent["params"]) - allowed)
    if unknown:
        raise ValueError(f"model config {config['name']!r}: unknown AutoencoderKL parameters {unknown}.")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in latent["params"].items()}
    autoencoder = AutoencoderKL(**params)
    path = latent["checkpoint"]
    if not Path(path).is_file():
        raise FileNotFoundError(f"autoencoder weights of prior {config['name']!r} not found at {path!r}.")
    try:
        _load_strict_or_old(autoencoder, load_state_dict(path, sha256=latent["sha256"]), config.get("format") or "monai_bundle")
    except ValueError as err:
        raise ValueError(f"autoencoder weights {path!r} do not match prior {config['name']!r}: {err}") from err
    autoencoder = autoencoder.eval().requires_grad_(False)
    return autoencoder.to(device) if device is not None else autoencoder


def build_prior(
    config: str | os.PathLike | Mapping[str, Any],
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_sha256: str | None = None,
    num_steps: int = 3,
    schedule: str = "reference",
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> StepwiseDDIM | LatentDDIM:
    """A :class:`~monai_dmilo.priors.stepwise.StepwiseDDIM` over the loaded prior (a
    :class:`~monai_dmilo.priors.latent.LatentDDIM` for a config with ``latent``).

    Args:
        config: model config (path, prior name or mapping).
        checkpoint, checkpoint_sha256: weights file overriding the config's, and its expected digest
            (see :func:`load_prior`).
        num_steps: DDIM steps N.
        schedule: ``"reference"`` or ``"uniform"`` timestep schedule.
        device: where to put the generator.
        kwargs: further ``StepwiseDDIM`` options (``clip_x0``, ``timesteps``, ``autocast_dtype``,
            ...); they override the config's ``image_shape`` and ``schedule`` values.
    """
    config = load_model_config(config)
    network = load_prior(config, checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256, device=device)
    sched = config["schedule"]
    latent = config["latent"]
    options: dict[str, Any] = {"image_shape": latent["latent_shape"] if latent else config["image_shape"],
                               "clip_x0": config["clip_x0"], "intensity_range": config["intensity_range"],
                               **sched, **kwargs}
    prior = StepwiseDDIM(network, num_steps=num_steps, schedule=schedule, **options)
    if latent:
        prior = LatentDDIM(prior, AutoencoderDecoder(load_autoencoder(config, device)),
                           scale_factor=latent["scale_factor"], image_shape=config["image_shape"])
    return prior.to(device) if device is not None else prior


def build_generator(*args: Any, **kwargs: Any) -> StepwiseDDIM:
    """Deprecated name of :func:`build_prior` (the prior was called "generator" before 0.5)."""
    import warnings

    warnings.warn("build_generator is now build_prior.", FutureWarning, stacklevel=2)
    return build_prior(*args, **kwargs)
