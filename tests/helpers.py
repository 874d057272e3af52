"""What the tests share: tiny priors and generators, small operators, the solvers' fast settings,
problems with known answers, and the bundle-workflow runners. Import from here (``from helpers
import ...``); fixtures live in ``conftest.py``."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from monai.networks.nets import DiffusionModelUNet
from PIL import Image
from torch import nn

from monai_dmilo.priors.stepwise import StepwiseDDIM, linear_alphas_cumprod
from monai_dmilo.operators import build as build_operator
from monai_dmilo.operators import gaussian_kernel, kspace_mask, motion_kernel, simulate_coil_maps
from monai_dmilo.operators.base import ForwardOperator, LinearOperator


# ----------------------------------------------------------------------------- tiny priors

def tiny_unet(channels: int = 1, seed: int = 0) -> DiffusionModelUNet:
    """A ~40k-parameter MONAI DiffusionModelUNet with random weights (deterministic per seed)."""
    torch.manual_seed(seed)
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=channels,
        out_channels=channels,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=8,
        norm_num_groups=8,
    )


def error_line(fn, *args, **kwargs) -> str:
    """Run ``fn`` (a workflow step); return the one line a user sees for its user-input error.

    In a ``python -m monai.bundle run`` process that line is what ``monai_dmilo.workflow.errors``' hook
    prints instead of the traceback; here the exception chain is read directly. Fails the test when
    ``fn`` succeeds or raises something that is not a user-input error.
    """
    from monai_dmilo.workflow.errors import one_line_message, user_error

    try:
        fn(*args, **kwargs)
    except SystemExit as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the chain is inspected below
        root = user_error(err)
        if root is None:
            raise
        return one_line_message(root)
    pytest.fail(f"{getattr(fn, '__name__', fn)} raised no error")


# ----------------------------------------------------------------------------- operators: the one list of cases

def _rand(*shape, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def tiny_conv_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 3, padding=1))
    return net.double()


def _ct_angles(batch: int) -> torch.Tensor:
    return torch.stack([torch.tensor([0.0, 36.0, 72.0, 108.0]) + 7.0 * b for b in range(batch)])


@dataclass
class Case:
    """One operator configuration: ``params(batch)`` builds parameters for a batch of ``batch``."""

    id: str
    name: str
    params: Callable[[int], dict]
    image: tuple[int, int, int]  # (C, H, W)
    out: Callable[[int, int, int, int], tuple[int, ...]]  # (B, C, H, W) -> output shape
    batched: tuple[str, ...] = ()  # parameters with one entry per sample (dim 0)
    complex_out: bool = False

    @property
    def linear(self) -> bool:
        return build_operator(self.name, **self.params(1)).linear


def _same(b, c, h, w):
    return (b, c, h, w)


# The one list: every registered operator appears, with small example parameters.
OPERATOR_CASES = [
    Case(
        "inpainting_shared_mask",
        "inpainting",
        lambda b: {"mask": (_rand(b, 1, 16, 16, seed=1) > 0.5).double()},
        (3, 16, 16),
        _same,
        batched=("mask",),
    ),
    Case(
        "inpainting_channel_mask",
        "inpainting",
        lambda b: {"mask": (_rand(b, 2, 16, 16, seed=2) > 0.3).double()},
        (2, 16, 16),
        _same,
        batched=("mask",),
    ),
    Case(
        "inpainting_hw_mask",
        "inpainting",
        lambda b: {"mask": (_rand(16, 16, seed=3) > 0.5).double()},
        (1, 16, 16),
        _same,
    ),
    Case(
        "super_resolution_x2",
        "super_resolution",
        lambda b: {"scale": 2},
        (3, 16, 16),
        lambda b, c, h, w: (b, c, h // 2, w // 2),
    ),
    Case(
        "super_resolution_x3_rect",
        "super_resolution",
        lambda b: {"scale": 3},
        (2, 18, 12),
        lambda b, c, h, w: (b, c, h // 3, w // 3),
    ),
    Case(
        "super_resolution_x4",
        "super_resolution",
        lambda b: {"scale": 4},
        (1, 16, 16),
        lambda b, c, h, w: (b, c, h // 4, w // 4),
    ),
    Case(
        "blur_gaussian_odd_shared",
        "blur",
        lambda b: {"kernel": gaussian_kernel(5, 1.2, dtype=torch.float64)},
        (3, 16, 16),
        _same,
    ),
    Case(
        "blur_motion_even_per_sample",
        "blur",
        lambda b: {"kernel": torch.stack([motion_kernel(6, 0.5, seed=i, dtype=torch.float64) for i in range(b)])},
        (2, 16, 16),
        _same,
        batched=("kernel",),
    ),
    Case("blur_asymmetric_odd", "blur", lambda b: {"kernel": _rand(7, 7, seed=4)}, (1, 16, 16), _same),
    Case(
        "mri_single_coil",
        "mri",
        lambda b: {"mask": torch.stack([kspace_mask((16, 16), 4, 0.125, seed=i) for i in range(b)])[:, None, 0]},
        (2, 16, 16),
        _same,
        batched=("mask",),
        complex_out=True,
    ),
    Case(
        "mri_multi_coil",
        "mri",
        lambda b: {
            "mask": kspace_mask((16, 16), 4, 0.125, pattern="equispaced", seed=0)[0, 0],
            "coil_maps": simulate_coil_maps((16, 16), 4, dtype=torch.complex128)[None].repeat(b, 1, 1, 1)
            * (1 + 0.1 * torch.arange(b, dtype=torch.float64)).view(-1, 1, 1, 1),
        },
        (1, 16, 16),
        lambda b, c, h, w: (b, 4, h, w),
        batched=("coil_maps",),
        complex_out=True,
    ),
    Case(
        "ct_shared_angles",
        "ct",
        lambda b: {"angles": torch.tensor([0.0, 30.0, 60.0, 90.0, 135.0])},
        (2, 16, 16),
        lambda b, c, h, w: (b, c, 5, 24),
    ),
    Case(
        "ct_per_sample_angles",
        "ct",
        lambda b: {"angles": _ct_angles(b)},
        (1, 16, 16),
        lambda b, c, h, w: (b, c, 4, 24),
        batched=("angles",),
    ),
    Case(
        "ct_rectangular",
        "ct",
        lambda b: {"angles": torch.tensor([10.0, 100.0]), "image_size": (12, 16)},
        (1, 12, 16),
        lambda b, c, h, w: (b, c, 2, 20),
    ),
    Case(
        "phase_retrieval",
        "phase_retrieval",
        lambda b: {"oversampling": 2},
        (1, 16, 16),
        lambda b, c, h, w: (b, c, 2 * h, 2 * w),
    ),
    Case("module", "module", lambda b: {"module": tiny_conv_net()}, (2, 16, 16), _same),
]


# ----------------------------------------------------------------------------- solvers: toy priors, operators, problems

# Small, fast hyperparameters per solver (the algorithms are the same as with the presets).
FAST = {
    "dmilo": dict(num_outer=2, num_inner=15),
    "dmilo_pgd": dict(num_outer=2, num_inner=15, lr_x=0.3),
    "dmplug": dict(num_iters=30, lr=0.02),
    "dps": dict(num_steps=10, zeta=1.0),
    "tv": dict(num_iters=60, lam=0.01, lr=0.05),
    "diffpir": dict(num_steps=10, lam=1.0, zeta=0.5),
    "pigdm": dict(num_steps=10, guidance_weight=1.0),
    "reddiff": dict(num_steps=30, lam=0.25, lr=0.05),
    "ddrm": dict(num_steps=10),
    "daps": dict(num_steps=5, ode_steps=2, langevin_steps=10, langevin_lr=1e-3, sigma_y=0.05),
    "pseudo_inverse": dict(),
}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
class ToyDenoiser(nn.Module):
    """An eps-model whose clean prediction is ``tanh(conv(tanh(conv(z))))``: smooth, in range.

    A random MONAI UNet has a zero output layer, so its x0 prediction saturates the clip and
    G gives almost no gradient; this toy prior has a non-trivial, differentiable range.
    """

    def __init__(self, channels: int = 1, seed: int = 0, width: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.Tanh(), nn.Conv2d(width, channels, 3, padding=1)
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        self.register_buffer("abar", linear_alphas_cumprod().float())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1).to(x.dtype)
        x0 = torch.tanh(self.net(x))
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


class SubspaceDenoiser(nn.Module):
    """The exact eps-model of a degenerate Gaussian prior ``x = U w``, ``w ~ N(0, I_k)``.

    With ``P = U U^T`` (orthonormal ``U``) the posterior mean is ``E[x | z_t] = sqrt(abar_t) P z_t``,
    so this is a consistent diffusion model (DPS's assumptions hold) whose range is ``span(U)``.
    """

    def __init__(self, shape: tuple[int, int, int], rank: int = 16, seed: int = 0) -> None:
        super().__init__()
        dim = shape[0] * shape[1] * shape[2]
        basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=torch.Generator().manual_seed(seed)))
        self.register_buffer("basis", basis)
        self.register_buffer("abar", linear_alphas_cumprod().float())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].view(-1, 1, 1, 1).to(x.dtype)
        flat = x.flatten(1)
        x0 = a.sqrt() * ((flat @ self.basis) @ self.basis.T).view_as(x)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


def subspace_generator(size: int = 16, num_steps: int = 3) -> StepwiseDDIM:
    return StepwiseDDIM(SubspaceDenoiser((1, size, size)), num_steps=num_steps, image_shape=(1, size, size))


def toy_generator(channels: int = 1, size: int = 16, num_steps: int = 3, seed: int = 0) -> StepwiseDDIM:
    return StepwiseDDIM(ToyDenoiser(channels, seed), num_steps=num_steps, image_shape=(channels, size, size))


def unet_generator(channels: int = 1, size: int = 16, num_steps: int = 3) -> StepwiseDDIM:
    return StepwiseDDIM(tiny_unet(channels, 0), num_steps=num_steps, image_shape=(channels, size, size))


class Identity(ForwardOperator):
    linear = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PixelMask(LinearOperator):
    """``A(x) = m * x`` with a (B|1, 1|C, H, W) binary mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask


class Downsample2(LinearOperator):
    """2x average pooling: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1) / 4


class ConvBlur(ForwardOperator):
    """Blur by a ``(k, k)`` or per-sample ``(B, k, k)`` kernel, reflect padding, same size."""

    linear = True

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.kernel if self.kernel.ndim == 3 else self.kernel.expand(b, *self.kernel.shape)
        size = k.shape[-1]
        pad = (size // 2, size - 1 - size // 2) * 2
        xp = nn.functional.pad(x, pad, mode="reflect").reshape(1, b * c, h + size - 1, w + size - 1)
        weight = k.flip(-1, -2).repeat_interleave(c, dim=0).unsqueeze(1)
        return nn.functional.conv2d(xp, weight.to(x.dtype), groups=b * c).reshape(b, c, h, w)


class FourierSubsample(LinearOperator):
    """A complex measurement: the orthonormal 2D FFT restricted to a mask (toy MRI)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho") * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(y * self.mask, norm="ortho")


def random_mask(batch: int, size: int = 16, keep: float = 0.5, seed: int = 1) -> torch.Tensor:
    return (torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed)) < keep).float()


def in_range_image(generator: StepwiseDDIM, batch: int, seed: int = 7, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``clip(G(z*))`` for a fixed noise: an image in the generator's range."""
    z = torch.randn(batch, *generator.image_shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    with torch.no_grad():
        return generator.sample(z).clamp(-1, 1)


def unconditional(generator: StepwiseDDIM, seeds: list[int]) -> torch.Tensor:
    z = torch.stack([torch.randn(generator.image_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        return generator.sample(z).clamp(-1, 1)


def count_network_calls(generator: StepwiseDDIM) -> list[bool]:
    """Records ``torch.is_grad_enabled()`` for every forward call of the generator's network."""
    calls: list[bool] = []
    generator.network.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    return calls


def expected_nfe(name: str, params: dict, n: int) -> int:
    if name in ("dmilo", "dmilo_pgd"):
        intermediate = params.get("num_inner_intermediate")
        intermediate = params["num_inner"] if intermediate is None else intermediate
        return n + params["num_outer"] * (params["num_inner"] + (n - 1) * intermediate + n)
    if name == "dmplug":
        return n * params["num_iters"] + n
    if name in ("tv", "pseudo_inverse"):
        return 0
    if name == "daps":
        return params["num_steps"] * params["ode_steps"]
    return params["num_steps"]


def mask_problem(batch: int = 2, generator: StepwiseDDIM | None = None, dtype: torch.dtype = torch.float32):
    generator = generator or toy_generator()
    op = PixelMask(random_mask(batch).to(dtype))
    return op(in_range_image(generator, batch, dtype=dtype)), op, generator


# ---------------------------------------------------------------------------------------------
# contract tests, every solver
# ---------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------- bundle workflows

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
SIZE = 16


def make_prior(tmp_path: Path) -> Path:
    """A tiny UNet checkpoint plus its model config; returns the config path."""
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_unet(1, seed=0).state_dict(), ckpt)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "name: tiny\narchitecture: monai_unet\n"
        "params: {spatial_dims: 2, in_channels: 1, out_channels: 1, channels: [8, 16], "
        "attention_levels: [false, true], num_res_blocks: 1, num_head_channels: 8, norm_num_groups: 8}\n"
        f"image_shape: [1, {SIZE}, {SIZE}]\ncheckpoint: tiny.pt\n"
    )
    return cfg


def make_pngs(folder: Path, n: int = 3, size: int = SIZE) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        yy, xx = np.mgrid[:size, :size]
        arr = (127 + 100 * np.sin((xx + 2 * k) / 3.0) * np.cos(yy / (4.0 + k))).astype(np.uint8)
        paths.append(folder / f"img{k}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


#: the workflow configs that are layered on common.yaml
LAYERED_ON_COMMON = ("evaluate.yaml", "inference.yaml", "kspace.yaml")


def workflow(config: str | list[str], tmp_path: Path, **overrides):
    from monai.bundle import ConfigWorkflow

    names = [config] if isinstance(config, str) else list(config)
    if names[0] in LAYERED_ON_COMMON:  # as on the command line: common.yaml first, then the workflow
        names = ["common.yaml", *names]
    files = [str(CONFIGS / c) for c in names]
    defaults = dict(
        model_config=str(make_prior(tmp_path)) if not (tmp_path / "tiny.yaml").exists() else str(tmp_path / "tiny.yaml"),
        device="cpu",
        num_steps=2,
        batch_size=2,
        solver_overrides={"num_outer": 1, "num_inner": 2},
        solver_progress=False,
    )
    defaults.update(overrides)
    wf = ConfigWorkflow(
        config_file=files[0] if len(files) == 1 else files,
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="infer",
        **defaults,
    )
    return wf


def run(config, tmp_path, **overrides):
    wf = workflow(config, tmp_path, **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class ArrayImageDataset(torch.utils.data.Dataset):
    """In-memory images as ``{"image": (C, H, W) float tensor}`` items, with optional MONAI transforms
    (``images`` ``(N, H, W)`` or ``(N, C, H, W)`` in ``scale``, mapped to [-1, 1] after ``transform``)."""

    def __init__(self, images, *, scale=(0.0, 1.0), transform=None) -> None:
        data = torch.as_tensor(np.asarray(images))
        if data.ndim == 3:
            data = data[:, None]
        lo, hi = (float(s) for s in scale)
        if not hi > lo:
            raise ValueError(f"scale must be (lo, hi) with hi > lo, got {tuple(scale)}.")
        self.data, self.lo, self.hi, self.transform = data, lo, hi, transform

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.data[index].float()
        if self.transform is not None:
            image = torch.as_tensor(self.transform({"image": image})["image"]).float()
            if hasattr(image, "as_tensor"):
                image = image.as_tensor()
        return {"image": (image.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 2.0 - 1.0}


def write_dicom_series(volume: np.ndarray, folder, **kwargs) -> list[Path]:
    """Write ``monai_dmilo.kspace.dicom.dicom_series(volume, **kwargs)`` to ``folder``; returns the paths."""
    import pydicom

    from monai_dmilo.kspace.dicom import dicom_series

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ds in dicom_series(volume, **kwargs):
        pydicom.dcmwrite(folder / name, ds, enforce_file_format=True)
        paths.append(folder / name)
    return paths
