"""Safe checkpoint loading: ``weights_only`` unpickling, sha256 checks, readable mismatch errors.

Checkpoints are untrusted files: they are read with ``torch.load(..., weights_only=True)`` (no
arbitrary code), optionally verified against a known sha256, unwrapped from the usual containers
(``{"state_dict": ...}``, ``{"model": ...}``, DataParallel's ``module.`` prefix), and loaded into a
network only after the key sets and shapes were compared, so that a wrong file fails with a message
that says what differs and, for guided-diffusion (ADM) checkpoints, which preset it fits.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_state_dict", "load_into", "sha256_of", "guess_adm_preset"]

# Containers that training scripts wrap a state dict in, tried in this order: an explicit state
# dict first, then EMA weights (what diffusion models sample with), then the raw model weights
# (e.g. an Ignite checkpoint {"network", "ema_network", "optimizer", "trainer"} gives ema_network).
_CONTAINER_KEYS = (
    "state_dict", "model_state_dict", "ema_model", "ema_network", "ema", "model", "network", "net",
)
# Prefixes added by DataParallel / DistributedDataParallel and torch.compile.
_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5  # keys listed per category in error messages


def sha256_of(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint object and strip wrapper prefixes from its keys."""
    seen = 0
    while not _is_tensor_dict(obj):
        if not isinstance(obj, Mapping) or seen > 3:
            raise ValueError(
                f"checkpoint {str(path)!r} does not contain a state dict (a mapping of parameter names "
                f"to tensors); found {type(obj).__name__}"
                + (f" with keys {sorted(map(str, obj))[:_SHOW]}" if isinstance(obj, Mapping) else "")
                + "."
            )
        inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            raise ValueError(
                f"checkpoint {str(path)!r} is a mapping without tensors at the top level and without any "
                f"of the container keys {list(_CONTAINER_KEYS)}; found keys {sorted(map(str, obj))[:_SHOW]}."
            )
        obj = inner
        seen += 1
    state = dict(obj)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict(
    path: str | os.PathLike,
    *,
    sha256: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Read a state dict from an untrusted checkpoint file.

    Args:
        path: a ``.pt`` / ``.pth`` / ``.bin`` file written by ``torch.save`` (read weights-only), or a
            ``.safetensors`` file (read with ``safetensors``, which holds tensors and nothing else).
        sha256: expected hex digest of the file; checked before unpickling when given.
        map_location: where to put the tensors.

    Returns:
        The (unwrapped, prefix-stripped) state dict.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        ValueError: the hash differs, or the file holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r}.")
    if sha256 is not None:
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}.")
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise ValueError(
                f"checkpoint {str(path)!r} does not match the expected sha256 {sha256.lower()} (the file's is "
                f"{actual}): it is another checkpoint, or an incomplete copy."
            )
    if path.suffix == ".safetensors":
        return _read_safetensors(path, map_location)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise ValueError(
                f"checkpoint {str(path)!r} holds Python objects besides tensors, which a weights-only load "
                "refuses (checkpoints are never unpickled as code here); save its state_dict() with "
                "torch.save and pass that file."
            ) from None
        raise ValueError(f"checkpoint {str(path)!r} is not a PyTorch checkpoint (torch.save file).") from None
    except (RuntimeError, EOFError, OSError, KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a PyTorch checkpoint (torch.save file), or is incomplete "
            f"(reading it failed with {type(err).__name__})."
        ) from None
    return _unwrap(obj, path)


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"checkpoint {str(path)!r} is a safetensors file: pip install safetensors "
                         "(or monai_dmilo[diffusers]).") from None
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise ValueError(f"checkpoint {str(path)!r} is not a readable safetensors file "
                         f"({type(err).__name__}: {err}).") from None


@lru_cache(maxsize=None)
def _preset_shapes(name: str) -> frozenset[tuple[str, tuple[int, ...]]]:
    from monai_dmilo.networks.adm_unet import ADMUNet

    skeleton = ADMUNet.from_preset(name, device="meta")
    return frozenset((k, tuple(v.shape)) for k, v in skeleton.state_dict().items())


def _looks_like_adm(keys: object) -> bool:
    keys = set(keys)  # type: ignore[arg-type]
    return any(k.startswith("input_blocks.") for k in keys) and any(k.startswith("time_embed.") for k in keys)


def guess_adm_preset(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[str], float]:
    """Which ADM presets a state dict fits best.

    Args:
        state_dict: parameter names to tensors.

    Returns:
        ``(names, score)``: the presets with the highest overlap of (name, shape) pairs (several
        when they share one architecture, e.g. ``ffhq_10m`` and ``celebahq_p2``) and that overlap
        as a Jaccard index in [0, 1] (1.0 = exact match).
    """
    from monai_dmilo.networks.adm_unet import ADM_PRESETS

    given = frozenset((k, tuple(v.shape)) for k, v in state_dict.items())
    scores = {}
    for name in ADM_PRESETS:
        ref = _preset_shapes(name)
        scores[name] = len(given & ref) / max(len(given | ref), 1)
    best = max(scores.values())
    return sorted(n for n, s in scores.items() if s == best), best


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")
    return f"{len(keys)} {label} ({shown})"


def load_into(
    network: nn.Module,
    state_dict_or_path: Mapping[str, torch.Tensor] | str | os.PathLike,
    *,
    strict: bool = True,
    sha256: str | None = None,
) -> nn.Module:
    """Load weights into ``network`` after checking that names and shapes agree.

    Args:
        network: the module to fill (its parameters' device and dtype are kept).
        state_dict_or_path: a state dict, or a checkpoint path read with :func:`load_state_dict`.
        strict: require the key sets to be equal; shapes must always agree for shared keys.
        sha256: expected file digest when a path is given.

    Returns:
        ``network``, loaded.

    Raises:
        ValueError: missing / unexpected keys (when strict) or shape mismatches; the message lists
            the first few of each with counts and, for an ADM checkpoint, the preset that fits it.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        state = load_state_dict(state_dict_or_path, sha256=sha256)
        source = f"checkpoint {str(state_dict_or_path)!r}"
    elif isinstance(state_dict_or_path, Mapping):
        state = _unwrap(state_dict_or_path, Path("<state dict>"))
        source = "the state dict"
    else:
        raise TypeError(
            f"state_dict_or_path must be a mapping or a path, got {type(state_dict_or_path).__name__}."
        )
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if mismatched or (strict and (missing or unexpected)):
        parts = [f"{source} does not fit {type(network).__name__}:"]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mismatched:
            parts.append(_listing("shape mismatches", mismatched))
        if _looks_like_adm(state):
            names, score = guess_adm_preset(state)
            verdict = "matches exactly" if score == 1.0 else f"fits best ({score:.0%} of names and shapes agree)"
            parts.append(
                f"It looks like a guided-diffusion (ADM) checkpoint; preset {' / '.join(names)} {verdict}: "
                f"build the network with ADMUNet.from_preset({names[0]!r})."
            )
        raise ValueError("\n  ".join(parts))
    network.load_state_dict(state, strict=strict)
    return network
