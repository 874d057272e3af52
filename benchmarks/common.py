"""Pieces the solver benchmarks share: the shipped prior, sample images, an inpainting problem, reports.

Benchmarks are evaluation code: they hold the ground truth and compute PSNR here; the solvers
only ever see the measurement.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_dmilo.operators import build as build_operator  # noqa: E402
from monai_dmilo.operators import random_pixel_mask  # noqa: E402
from monai_dmilo import metrics  # noqa: E402

DEFAULT_MODEL = REPO / "configs" / "models" / "fashion_mnist_32.yaml"
SAMPLE_DIR = REPO / "bundle" / "sample_images" / "fashion_mnist"
TEST_SPLIT_DIR = REPO / "data_cache" / "fashion_mnist" / "test"


def load_pngs(paths: list[Path], channels: int = 1) -> torch.Tensor:
    """PNGs as ``(len(paths), channels, H, W)`` in [-1, 1]; ``channels`` 1 (grey) or 3 (RGB)."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    mode = "L" if channels == 1 else "RGB"
    images = [np.asarray(Image.open(p).convert(mode), dtype=np.float32) / 127.5 - 1.0 for p in paths]
    batch = torch.from_numpy(np.stack(images))
    return batch[:, None] if channels == 1 else batch.permute(0, 3, 1, 2).contiguous()


def load_samples(count: int) -> torch.Tensor:
    """The first ``count`` shipped held-out Fashion-MNIST images, ``(count, 1, 32, 32)`` in [-1, 1]."""
    paths = sorted(SAMPLE_DIR.glob("*.png"))
    if count > len(paths):
        paths = (paths * (count // len(paths) + 1))[:count]  # repeat: timings only need the size
    return load_pngs(paths[:count])


def split_images(start: int, stride: int, count: int, directory: Path = TEST_SPLIT_DIR,
                 channels: int = 1) -> tuple[list[str], torch.Tensor]:
    """Names and ``(count, channels, H, W)`` images in [-1, 1]: every ``stride``-th PNG of ``directory``
    (default: the Fashion-MNIST test split prepared by ``scripts/prepare_data.py``) from ``start``,
    skipping the shipped sample images.

    Splits with starts that differ modulo ``stride`` share no image.
    """
    if not directory.is_dir():
        hint = ": run `python scripts/prepare_data.py` first" if directory == TEST_SPLIT_DIR else ""
        sys.exit(f"image folder {directory} not found{hint}.")
    shipped = {p.name for p in SAMPLE_DIR.glob("*.png")}
    paths = sorted(directory.glob("*.png"))[start::stride]
    paths = [p for p in paths if p.name not in shipped][:count]
    if len(paths) < count:
        sys.exit(f"only {len(paths)} images in {directory} from {start} every {stride} for {count}.")
    return [p.stem for p in paths], load_pngs(paths, channels)


def inpainting_problem(x: torch.Tensor, *, hidden: float = 0.7, sigma: float = 0.01, seed: int = 0):
    """The paper's inpainting measurement of ``x`` ``(B, C, H, W)``: ``(y, operator)``, seeded per image."""
    size = tuple(x.shape[-2:])
    mask = torch.stack([random_pixel_mask(size, hidden, seed=seed + b) for b in range(x.shape[0])]).to(x)
    operator = build_operator("inpainting", mask=mask)
    noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(10_000 + seed + b))
                         for b in range(x.shape[0])]).to(x)
    return operator(x + sigma * noise), operator


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(generator, z: torch.Tensor, *, repeats: int, backward: bool = True, warmup: bool = True) -> float:
    """Seconds of one ``g_i`` on ``z`` (with its backward to ``z``, or forward alone without a graph),
    averaged over the generator's steps and ``repeats`` (after one warm-up pass over the steps)."""
    def once(i: int) -> None:
        if backward:
            x = z.detach().clone().requires_grad_(True)
            generator.step(x, i).square().sum().backward()
        else:
            with torch.no_grad():
                generator.step(z, i)

    for i in range(generator.num_steps if warmup else 0):
        once(i)
    sync(z.device)
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(generator.num_steps):
            once(i)
    sync(z.device)
    return (time.perf_counter() - start) / (repeats * generator.num_steps)


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1] (data range 2): ``(..., B)`` for ``x`` ``(..., B, C, H, W)``
    (e.g. a trace of iterates ``(T, B, C, H, W)``) against ``reference`` ``(B, C, H, W)``
    (:func:`monai_dmilo.metrics.psnr`)."""
    return metrics.psnr(x, reference, data_range=2.0)


def paired(diff: torch.Tensor) -> str:
    """``"mean ± s.e."`` of per-image differences ``(B,)``."""
    return f"{diff.mean():+.2f} ± {diff.std() / len(diff) ** 0.5:.2f}"


def paired_psnr(a: dict, b: dict) -> str:
    """:func:`paired` of two results' per-image ``"psnr"`` lists (same images, same order): ``a - b``."""
    return paired(torch.tensor(np.array(a["psnr"]) - np.array(b["psnr"])))


def replace_between_markers(path: Path, markers: tuple[str, str], body: str) -> None:
    """Rewrite the text of ``path`` between its two ``markers`` (each present once, in order) with ``body``."""
    start, end = markers
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{path} must hold {start!r} once, then {end!r} once")
    head, rest = text.split(start)
    path.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")


def machine() -> str:
    """The processor, torch threads and version; and the GPU when this process has used CUDA."""
    threads = torch.get_num_threads()
    text = f"{platform.processor() or platform.machine()}, {threads} torch threads, torch {torch.__version__}"
    if torch.cuda.is_initialized():
        text += f", GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return text


def write_report(path: Path, title: str, command: str, table: str, notes: str = "") -> None:
    """Write a markdown report: title, command, machine, table, notes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\nCommand: `{command}`\n\nMachine: {machine()}\n\n{table}\n"
    if notes:
        text += f"\n{notes}\n"
    path.write_text(text)
    print(f"wrote {path}")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def save_plot(path: Path, draw, *, grid: tuple[int, int] = (1, 1), figsize: tuple[float, float] = (6, 4)) -> None:
    """Call ``draw(ax)`` on a matplotlib axis (an array of axes for a ``grid`` other than 1 x 1) and
    save to ``path``; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): plot skipped")
        return
    fig, ax = plt.subplots(*grid, figsize=figsize, squeeze=grid == (1, 1))
    draw(ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
