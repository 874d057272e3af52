"""Simulated measurements ``y = noise(A(x))`` as MONAI transforms.

Operator parameters live in the data dictionary WITHOUT a batch dimension (as the parameter
transforms write them): mask ``(1|C, H, W)``, kernel ``(k, k)``, coil maps ``(coils, H, W)``,
angles ``(A,)``. The transform adds the batch dimension of one before building the operator, and
MONAI's collate later stacks them into the batched shapes the operators take (``(B, 1, H, W)``,
``(B, k, k)``, ...), so ``build(name, **batch_params)(x_batch)`` reproduces the noiseless part of
``y``. Noise is seeded per sample (see :mod:`.seeding`): the same sample gets the same ``y``
whether it is processed alone or in a batch, in any order. Entries the operator does not measure
(hidden pixels, unsampled k-space) stay exactly zero: ``y = keep_measured(A(x) + n)``.

Images are measured as they are: scale them to the prior's range (``[-1, 1]``, e.g. with
``ScaleIntensityd(minv=-1, maxv=1)``) before this transform so that ``sigma`` is on that scale.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Randomizable, Transform

from monai_dmilo.operators import ForwardOperator, batch_keys, build, build_noise

from monai_dmilo.seeds import MAX_SEED, sample_seed

from .seeded import SeededItemTransform

__all__ = [
    "SimulateMeasurement",
    "SimulateMeasurementd",
    "SimulateMeasurementD",
    "SimulateMeasurementDict",
]


def _as_torch(value: Any) -> Any:
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    return value


def _batched(value: Any) -> Any:
    value = _as_torch(value)
    return value.unsqueeze(0) if isinstance(value, torch.Tensor) else value


class SimulateMeasurement(Randomizable, Transform):
    """``img (C, H, W) -> y`` (no batch dimension): the operator, then the noise.

    Args:
        operator: a registered operator name, or a built :class:`ForwardOperator` (then
            ``operator_params`` must be empty).
        operator_params: fixed parameters; tensors are per sample (see the module docstring).
        noise: ``"gaussian"``, ``"poisson"``, ``"none"`` or None.
        sigma: Gaussian standard deviation, in the units of the measurement (the paper: 0.01 on
            the ``[-1, 1]`` image scale). Ignored by other noise models.
        noise_params: other noise parameters (e.g. ``{"scale": 100.0}`` for Poisson).
    """

    def __init__(
        self,
        operator: str | ForwardOperator = "inpainting",
        operator_params: Mapping[str, Any] | None = None,
        noise: str | None = "gaussian",
        sigma: float = 0.01,
        noise_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.operator = operator
        self.operator_params = dict(operator_params or {})
        if isinstance(operator, ForwardOperator) and self.operator_params:
            raise ValueError("operator_params must be empty when operator is an already built ForwardOperator.")
        if not isinstance(operator, (str, ForwardOperator)):
            raise TypeError(f"operator must be a registered name or a ForwardOperator, got {type(operator).__name__}.")
        params = dict(noise_params or {})
        if noise == "gaussian":
            params.setdefault("sigma", sigma)
        self.noise = build_noise(noise, **params)
        self._seed = 0

    def randomize(self, data=None) -> None:
        self._seed = int(self.R.randint(0, MAX_SEED))

    def build_operator(self, **params) -> ForwardOperator:
        """The operator for ONE sample: fixed and given parameters, tensors given a batch dim of 1."""
        if isinstance(self.operator, ForwardOperator):
            return self.operator
        merged = {**self.operator_params, **params}
        return build(self.operator, **{k: _batched(v) for k, v in merged.items()})

    def __call__(self, img, *, seed: int | None = None, randomize: bool = True, **params) -> torch.Tensor:
        """Measures one image.

        Args:
            img: ``(C, H, W)`` tensor or array.
            seed: the noise seed; None draws one from the transform's random state.
            randomize: draw a new seed when ``seed`` is None (else reuse the last one).
            params: per-sample operator parameters (override ``operator_params``).

        Returns:
            ``y`` without batch dimension (complex for ``mri``).
        """
        x = _as_torch(img)
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ValueError(
                f"img must be a channel-first 2D image (C, H, W), got shape {tuple(getattr(x, 'shape', ()))}."
            )
        if not x.is_floating_point() and not x.is_complex():
            x = x.float()
        if seed is None:
            if randomize:
                self.randomize()
            seed = self._seed
        with torch.no_grad():
            operator = self.build_operator(**params)
            y = operator.keep_measured(self.noise(operator(x.unsqueeze(0)), seed=[int(seed)]))
        return y[0]


class SimulateMeasurementd(SeededItemTransform):
    """Dictionary twin of :class:`SimulateMeasurement`; writes ``y`` and every operator parameter.

    Args:
        keys: the image key (one).
        operator, operator_params, noise, sigma, noise_params: as :class:`SimulateMeasurement`.
        param_keys: ``{parameter name: data key}``; default: the operator class's ``batch_keys``,
            each under its own name. A parameter present in the data is read from it; a tensor parameter given in
            ``operator_params`` is written to its key, so the dictionary always holds all of them.
        measurement_key: where ``y`` goes.
        seed_key: per-sample seed key (see :mod:`monai_dmilo.seeds`).

    Example:
        >>> Compose([LoadImaged("image", ensure_channel_first=True), ScaleIntensityd("image", minv=-1, maxv=1),
        ...          RandInpaintingMaskd("image", seed_key="seed"),
        ...          SimulateMeasurementd("image", operator="inpainting", sigma=0.01, seed_key="seed")])
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        operator: str | ForwardOperator = "inpainting",
        operator_params: Mapping[str, Any] | None = None,
        param_keys: Mapping[str, str] | None = None,
        noise: str | None = "gaussian",
        sigma: float = 0.01,
        noise_params: Mapping[str, Any] | None = None,
        measurement_key: str = "y",
        seed_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, seed_key, allow_missing_keys)
        self.simulator = self.inner = SimulateMeasurement(operator, operator_params, noise, sigma, noise_params)
        name = operator if isinstance(operator, str) else None
        self.param_keys = dict(param_keys) if param_keys is not None else {k: k for k in (batch_keys(name) if name else ())}
        self.measurement_key = measurement_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        key = self.image_key(d)
        if key is None:
            return d
        params = {}
        for name, data_key in self.param_keys.items():
            if data_key in d:
                params[name] = d[data_key]
            elif isinstance(self.simulator.operator_params.get(name), (torch.Tensor, np.ndarray, list, tuple)):
                d[data_key] = torch.as_tensor(_as_torch(self.simulator.operator_params[name]))
        seed = sample_seed(self.R, d, self.seed_key, "noise")
        d[self.measurement_key] = self.simulator(d[key], seed=seed, **params)
        return d


SimulateMeasurementD = SimulateMeasurementDict = SimulateMeasurementd
