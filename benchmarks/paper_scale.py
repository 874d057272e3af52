"""Paper-scale cost: time and memory of the solvers with the 256 x 256 ADM (``ffhq_10m``) architecture.

Time and memory do not depend on the weights, so the network is the ``ffhq_10m`` preset's
architecture (93.6 M parameters) with random weights (seed 0; ADM's zero-initialised output
projections are filled with N(0, 0.02^2) so that the backward carries non-zero values); no
checkpoint is read. One 256 x 256 x 3 image (batch 1), the paper's inpainting operator (70 %
hidden, sigma 0.01).

Parts (``--parts``):

* ``memory``: peak memory against the number of DDIM steps N (default 1 2 3 4) for DMILO,
  DMILO-PGD, DMPlug, DMPlug with checkpointing (2 iterations each: enough for the peak) and the
  N-independent solvers (DPS, ...) once. On CPU each configuration runs in a fresh process and
  the number is its peak resident set size (``ru_maxrss``) and its growth during the solve; the
  worker runs with ``MALLOC_ARENA_MAX=1`` (one glibc arena: no per-thread arena fragmentation) and
  ``MALLOC_MMAP_THRESHOLD_=65536`` (large tensors get their own mapping and are returned when
  freed, so RSS follows live memory). On CUDA: ``torch.cuda.max_memory_allocated``, in fp32 and
  with bf16 autocast.
* ``timing``: one ``StepwiseDDIM`` step forward+backward (``t_fb``) and forward only (``t_f``)
  timed alone, then every solver over a short run at N = 3 (a few dozen network evaluations),
  giving its wall time per NFE and two overhead ratios: ``wall / (NFE x t_fb)`` (the definition of
  ``speed.py``) and ``wall / (n_fb x t_fb + n_f x t_f)`` (forward-only evaluations priced as
  such). Each solver's preset (``configs/solvers/inpainting_*``, the paper's 5 x 200 at N = 3 for
  DMILO, 5,000 iterations for DMPlug) is then projected: its NFE (counted by running the preset
  with a 1 x 1-convolution stand-in network on 8 x 8 images, so the count is the solver's own)
  times the short run's wall time per NFE. On CUDA the timing runs in fp32, with bf16 autocast,
  and with bf16 + ``torch.compile`` (first-call compile time reported apart).

Results are cached per device in ``docs/benchmarks/paper_scale_<device>.json``: a rerun after an
interruption redoes nothing finished (``--fresh`` starts over).

Usage::

    python benchmarks/paper_scale.py [--device cpu|cuda] [--parts memory timing] [--steps 1 2 3 4] \
        [--timing-nfe 24] [--fresh]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from common import REPO, inpainting_problem, markdown_table, save_plot, sync, time_step, write_report

from monai_dmilo.priors.stepwise import StepwiseDDIM  # noqa: E402
from monai_dmilo.priors.loading import build_network, load_model_config  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

MODEL_CONFIG = REPO / "configs" / "models" / "ffhq_10m.yaml"

# label: (registry name, parameters of a 2-iteration memory run); solvers whose memory depends on N.
MEMORY_BY_N = {
    "DMILO": ("dmilo", {"num_outer": 1, "num_inner": 2}),
    "DMILO-PGD": ("dmilo_pgd", {"num_outer": 1, "num_inner": 2, "lr_x": 0.5}),
    "DMPlug": ("dmplug", {"num_iters": 2}),
    "DMPlug-Ckpt": ("dmplug", {"num_iters": 2, "checkpointing": True}),
}
# Solvers with their own timestep schedule: memory independent of the generator's N.
MEMORY_ONCE = {
    "DPS": ("dps", {"num_steps": 2}),
    "PiGDM": ("pigdm", {"num_steps": 2}),
    "DDRM": ("ddrm", {"num_steps": 2}),
    "DiffPIR": ("diffpir", {"num_steps": 2}),
    "RED-diff": ("reddiff", {"num_steps": 2}),
    "DAPS": ("daps", {"num_steps": 1, "ode_steps": 2, "langevin_steps": 2}),
}
# label: (preset, the preset's iteration keys shrunk for the short timing run: key -> value at
# the default --timing-nfe 24); the paper's Table 11 (RTX 4090, CelebA inpainting): NFE, s, GB.
TIMING = {
    "DMILO": ("inpainting_dmilo", {"num_outer": 1, "num_inner": 8}),
    "DMILO-PGD": ("inpainting_dmilo_pgd", {"num_outer": 1, "num_inner": 8}),
    "DMPlug": ("inpainting_dmplug", {"num_iters": 8}),
    "DMPlug-Ckpt": ("inpainting_dmplug", {"num_iters": 8, "checkpointing": True}),
    "DPS": ("dps", {"num_steps": 24}),
    "PiGDM": ("inpainting_pigdm", {"num_steps": 12}),
    "DDRM": ("inpainting_ddrm", {"num_steps": 12}),
    "DiffPIR": ("inpainting_diffpir", {"num_steps": 12}),
    "RED-diff": ("inpainting_reddiff", {"num_steps": 12}),
    "DAPS": ("inpainting_daps", {"num_steps": 3, "ode_steps": 4, "langevin_steps": 2}),
}
PAPER_TABLE_11 = {
    "DDRM": (20, 1, 1.38), "DPS": (1000, 40, 2.89), "PiGDM": (50, 2, 4.69), "RED-diff": (50, 1, 4.61),
    "DiffPIR": (20, 1, 1.38), "DAPS": (500, 43, 1.37), "DMPlug": (15000, 925, 6.94),
    "DMPlug-Ckpt": (15000, 1256, 3.01), "DMILO": (3000, 150, 3.33), "DMILO-PGD": (3000, 151, 3.34),
}
# Table 1 (RTX 4090) is for a larger, 2.75 GB model: DMPlug 10.53 / 15.72 / 20.83 GB at N = 1 / 2 / 3
# (out of memory at 4), i.e. ~5.2 GB per step; DMILO and DMILO-PGD 10.53-10.54 GB at every N.
PAPER_TABLE_1_DMPLUG_GB_PER_STEP = (20.83 - 10.53) / 2
PRESET_N = 3  # the paper's DDIM steps for DMILO / DMPlug inpainting


def random_prior(num_steps: int, device: torch.device, *, size: int = 256, autocast: str | None = None,
                 compile_network: bool = False) -> StepwiseDDIM:
    """The ``ffhq_10m`` architecture with random weights (seed 0) as a ``StepwiseDDIM`` on ``size``^2 images."""
    config = load_model_config(MODEL_CONFIG)
    torch.manual_seed(0)
    network = build_network(config)
    with torch.no_grad():
        for p in network.parameters():
            if not p.any():  # ADM zero-initialises its output projections
                p.normal_(0.0, 0.02)
    sched = config["schedule"]
    generator = StepwiseDDIM(
        network, num_steps=num_steps, image_shape=(config["image_shape"][0], size, size), autocast_dtype=autocast,
        compile_network=compile_network, num_train_timesteps=sched["num_train_timesteps"],
        beta_start=sched["beta_start"], beta_end=sched["beta_end"],
    )
    return generator.to(device)


def problem(generator: StepwiseDDIM, device: torch.device):
    """A random 256 x 256 image's inpainting measurement ``(y, operator, z0)``, batch 1."""
    shape = (1, *generator.image_shape)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    y, operator = inpainting_problem(x)
    z0 = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)
    return y, operator, z0


# ----------------------------------------------------------------------------------------- memory
def measure_memory(label: str, steps: int, device: torch.device, autocast: str | None, size: int) -> dict:
    """Peak memory (MiB) of one 2-iteration solve in this process."""
    torch.set_flush_denormal(True)
    name, params = {**MEMORY_BY_N, **MEMORY_ONCE}[label]
    generator = random_prior(steps, device, size=size, autocast=autocast)
    y, operator, z0 = problem(generator, device)
    solver = build(name, **params)
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        solver.solve(y, operator, generator, z_init=z0)
        peak = torch.cuda.max_memory_allocated(device)
        del generator, solver
        return {"peak": peak / 2**20, "growth": (peak - before) / 2**20}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    solver.solve(y, operator, generator, z_init=z0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak": peak / 1024, "growth": (peak - before) / 1024}


def memory_in_fresh_process(label: str, steps: int, size: int) -> dict:
    """``measure_memory`` on CPU in a new Python process (a clean peak RSS per configuration)."""
    cmd = [sys.executable, __file__, "--device", "cpu", "--size", str(size), "--worker", label, str(steps)]
    env = dict(os.environ, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory worker {label} N={steps} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- timing
def time_network(generator: StepwiseDDIM, z: torch.Tensor, repeats: int, *, warmup: bool = True) -> tuple[float, float]:
    """Seconds of one step forward+backward and of one forward alone (no graph), over the N steps."""
    return (time_step(generator, z, repeats=repeats, warmup=warmup),
            time_step(generator, z, repeats=repeats, backward=False, warmup=warmup))


class _StandIn(nn.Module):
    """A 1 x 1 convolution ``(x, t) -> eps``: counts a preset's network evaluations in seconds."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.1 * self.conv(x)


def preset_counts(preset_name: str, overrides: dict, steps: int) -> dict:
    """NFE, forwards and backwards per image of a preset, counted by running it on a stand-in."""
    preset = load_solver_preset(preset_name)
    params = {**preset["params"], **overrides}
    generator = StepwiseDDIM(_StandIn(3), num_steps=steps, image_shape=(3, 8, 8))
    y, operator, z0 = problem(generator, torch.device("cpu"))
    out = build(preset["solver"], **params).solve(y, operator, generator, z_init=z0)
    return {"nfe": out.nfe, "forward": out.nfe_forward, "backward": out.nfe_backward}


def shrink(overrides: dict, nfe_scale: float) -> dict:
    return {k: (max(1, round(v * nfe_scale)) if isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in overrides.items()}


def time_solver(label: str, generator: StepwiseDDIM, device: torch.device, before: tuple[float, float],
                nfe_scale: float) -> dict:
    """Wall time and NFE of a short run of ``label``'s preset, the network timed alone right after it
    (``before``: the timing right before it, ``(t_fb, t_f)``), and the two overhead ratios with the
    mean of the two timings (a machine whose speed drifts shows up in before / after)."""
    preset_name, short = TIMING[label]
    preset = load_solver_preset(preset_name)
    overrides = shrink(short, nfe_scale)
    solver = build(preset["solver"], **{**preset["params"], **overrides})
    y, operator, z0 = problem(generator, device)
    out = solver.solve(y, operator, generator, z_init=z0)
    after = time_network(generator, z0, repeats=1, warmup=False)
    t_fb, t_f = ((a + b) / 2 for a, b in zip(before, after))
    n_fb, n_f = out.nfe_backward, out.nfe_forward - out.nfe_backward
    return {
        "wall": out.wall_time, "nfe": out.nfe, "forward": out.nfe_forward,
        "backward": out.nfe_backward, "overrides": overrides, "t_before": list(before), "t_after": list(after),
        "overhead_nfe": out.wall_time / (out.nfe * t_fb),
        "overhead_priced": out.wall_time / (n_fb * t_fb + n_f * t_f),
    }


# ------------------------------------------------------------------------------------------ cache
class Cache:
    """Finished measurements in a JSON file, written after each one (a rerun skips them)."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.data = {} if fresh or not path.exists() else json.loads(path.read_text())

    def get(self, key: str, compute):
        if key not in self.data:
            self.data[key] = compute()
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            tmp.replace(self.path)
        return self.data[key]


# ----------------------------------------------------------------------------------------- report
def memory_section(cache: Cache, steps: list[int], variants: list[str], cuda: bool) -> tuple[str, dict]:
    unit = "CUDA max allocated" if cuda else "peak RSS of a fresh process (MALLOC_ARENA_MAX=1)"
    text, curves = [], {}
    for variant in variants:
        rows = []
        for label in MEMORY_BY_N:
            by_n = {n: cache.data.get(f"memory/{variant}/{label}/N={n}") for n in steps}
            if any(v is None for v in by_n.values()):
                continue
            curves[(variant, label)] = [by_n[n]["growth"] / 1024 for n in steps]
            first, last = by_n[steps[0]], by_n[steps[-1]]
            per_step = (last["peak"] - first["peak"]) / 1024 / max(1, steps[-1] - steps[0])
            rows.append([label, *[f"{by_n[n]['peak'] / 1024:.2f} (+{by_n[n]['growth'] / 1024:.2f})" for n in steps],
                         f"{100 * (last['peak'] / first['peak'] - 1):+.1f} %", f"{per_step:.2f}",
                         f"{PAPER_TABLE_11[label][2]:.2f}"])
        for label in MEMORY_ONCE:
            r = cache.data.get(f"memory/{variant}/{label}/N=any")
            if r is not None:
                rows.append([label, f"{r['peak'] / 1024:.2f} (+{r['growth'] / 1024:.2f}) at every N",
                             *[""] * (len(steps) - 1), "0 (own schedule)", "0", f"{PAPER_TABLE_11[label][2]:.2f}"])
        if rows:
            header = ["solver", *[f"N={n}" for n in steps], f"peak N={steps[-1]} vs N={steps[0]}",
                      "GiB per extra step", "paper Table 11 (GB, N = 3)"]
            notes = []
            for label in ("DMILO", "DMILO-PGD"):
                if (variant, label) in curves:
                    a, b = (cache.data[f"memory/{variant}/{label}/N={n}"]["peak"] for n in (steps[0], steps[-1]))
                    notes.append(f"{label} peak at N = {steps[-1]} vs N = {steps[0]}: {100 * (b / a - 1):+.2f} % "
                                 "(target: within 5 %).")
            if (variant, "DMPlug") in curves:
                a, b = (cache.data[f"memory/{variant}/DMPlug/N={n}"]["peak"] for n in (steps[0], steps[-1]))
                notes.append(f"DMPlug grows {(b - a) / 1024 / (steps[-1] - steps[0]):.2f} GiB per DDIM step with this "
                             f"357 MB architecture; the paper's Table 1 shows ~{PAPER_TABLE_1_DMPLUG_GB_PER_STEP:.1f} GB "
                             "per step for a larger, 2.75 GB model (its Table 11 uses this one, at N = 3 only).")
            text.append(f"**{variant}**: {unit}, GiB, and in brackets the growth during the solve.\n\n"
                        + markdown_table(header, rows) + ("\n\n" + "\n".join(f"* {n}" for n in notes) if notes else ""))
    return "\n\n".join(text), curves


def timing_section(cache: Cache, variant: str, nfe_scale: float) -> str:
    net = cache.data.get(f"timing/{variant}/network")
    if net is None:
        return ""
    rows, proj = [], {}
    for label, (preset_name, short) in TIMING.items():
        r = cache.data.get(f"timing/{variant}/{label}")
        counts = cache.data.get(f"counts/{label}")
        if r is None or counts is None:
            continue
        per_nfe = r["wall"] / r["nfe"]
        proj[label] = counts["nfe"] * per_nfe
        paper_nfe, paper_s, _ = PAPER_TABLE_11[label]
        rows.append([
            label, str(r["nfe"]), f"{r['wall']:.1f}", f"{per_nfe:.2f}",
            f"{r['t_before'][0]:.2f} / {r['t_after'][0]:.2f}", f"{r['overhead_nfe']:.3f}",
            f"{r['overhead_priced']:.3f}", f"`{preset_name}`" + (" + checkpointing" if "Ckpt" in label else ""),
            str(counts["nfe"]), f"{proj[label]:,.0f}", str(paper_nfe), str(paper_s),
        ])
    header = ["solver", "short-run NFE", "wall s", "s / NFE", "t_fb before / after (s)", "wall / (NFE x t_fb)",
              "wall / (n_fb t_fb + n_f t_f)", "preset", "preset NFE", "projected s", "paper NFE", "paper s"]
    text = (f"**{variant}**: one step forward+backward t_fb = {net['t_fb']:.3f} s, forward only t_f = "
            f"{net['t_f']:.3f} s (N = {PRESET_N}, batch 1)"
            + (f"; first call (compile) {net['compile_s']:.1f} s" if "compile_s" in net else "") + ".\n\n"
            + markdown_table(header, rows))
    timings = [net["t_fb"]] + [cache.data[f"timing/{variant}/{k}"]["t_after"][0] for k in TIMING
                                 if f"timing/{variant}/{k}" in cache.data]
    lo, hi = min(timings), max(timings)
    text += (f"\n\nThe bare step forward+backward, timed alone between the solves, ranged {lo:.2f}-{hi:.2f} s "
             f"({100 * (hi - lo) / (hi + lo):.0f} % either side of the middle) during the run: the overhead "
             "ratios are only as precise as that (each uses the mean of the timings right before and after "
             "its solve).")
    if "DMILO" in proj and "DMPlug" in proj:
        nfe_ratio = cache.data["counts/DMILO"]["nfe"] / cache.data["counts/DMPlug"]["nfe"]
        text += (f"\n\nProjected DMILO / DMPlug preset time: {proj['DMILO'] / proj['DMPlug']:.3f} "
                 f"(paper 150 / 925 = {150 / 925:.3f}; target <= 1/6 = {1 / 6:.3f}). Their NFE ratio alone is "
                 f"{nfe_ratio:.3f} (3,018 / 15,003); the rest is DMPlug's higher cost per evaluation.")
    text += ("\n\nAssumptions of the projection: one image; every preset evaluation costs what one cost in the "
             "short run of the same solver (the same overhead, the same mix of forward-only and forward+backward "
             "evaluations); random weights (time does not depend on them); the CPU's numbers scale to a GPU "
             "only as ratios, not as seconds.")
    return text


def report(args, cache: Cache) -> None:
    cuda = args.device.startswith("cuda")
    variants = ["fp32", "bf16"] if cuda else ["fp32"]
    timing_variants = ["fp32", "bf16", "bf16+compile"] if cuda else ["fp32"]
    mem_text, curves = memory_section(cache, args.steps, variants, cuda)
    time_text = "\n\n".join(t for t in (timing_section(cache, v, args.nfe_scale) for v in timing_variants) if t)
    intro = ("Architecture `ffhq_10m` (ADM, 93.6 M parameters) with random weights: time and memory do not "
             "depend on the weights. Batch 1, 256 x 256 x 3, inpainting (70 % hidden, sigma 0.01). "
             "Projected s = the preset's NFE (counted by running the preset on a stand-in network) x the "
             "short run's wall seconds per NFE.")
    body = "\n\n".join(s for s in (intro, "## Memory", mem_text, "## Time", time_text) if s)
    command = "python benchmarks/paper_scale.py " + " ".join(sys.argv[1:])
    name = ("paper_scale_cuda" if cuda else "paper_scale") + ("" if args.size == 256 else f"_{args.size}")
    write_report(REPO / "docs" / "benchmarks" / f"{name}.md", "Paper-scale cost (256 x 256 ADM)", command.strip(), body)
    if curves:
        def draw(ax):
            for (variant, label), values in curves.items():
                ax.plot(args.steps, values, marker="o", label=f"{label} ({variant})" if cuda else label)
            ax.set_xlabel("DDIM steps N")
            ax.set_ylabel("memory growth during solve (GiB)")
            ax.set_xticks(args.steps)
            ax.set_title(f"{args.size} x {args.size} ADM, batch 1")
            ax.legend()

        save_plot(REPO / "docs" / "benchmarks" / f"{name}.png", draw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", nargs="+", choices=["memory", "timing"], default=["memory", "timing"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--timing-nfe", type=int, default=24, help="about this many NFE per short timing run")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the network timing (x N steps)")
    parser.add_argument("--size", type=int, default=256, help="image side (256: the paper's; smaller for a smoke run)")
    parser.add_argument("--fresh", action="store_true", help="ignore the cache and measure everything again")
    parser.add_argument("--worker", nargs=2, metavar=("SOLVER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.nfe_scale = args.timing_nfe / 24
    device = torch.device(args.device)
    if args.worker:
        print(json.dumps(measure_memory(args.worker[0], int(args.worker[1]), device, None, args.size)))
        return
    torch.set_flush_denormal(True)  # CPU: denormals in the backward cost ~30x
    cuda = device.type == "cuda"
    cache = Cache(REPO / "docs" / "benchmarks" / f"paper_scale_{device.type}{'' if args.size == 256 else f'_{args.size}'}.json", args.fresh)

    if "memory" in args.parts:
        for variant in (["fp32", "bf16"] if cuda else ["fp32"]):
            autocast = "bfloat16" if variant == "bf16" else None
            jobs = [(label, n) for label in MEMORY_BY_N for n in args.steps] + [(label, "any") for label in MEMORY_ONCE]
            for label, n in jobs:
                steps = PRESET_N if n == "any" else n
                def compute(label=label, steps=steps, autocast=autocast):
                    if cuda:
                        return measure_memory(label, steps, device, autocast, args.size)
                    return memory_in_fresh_process(label, steps, args.size)
                r = cache.get(f"memory/{variant}/{label}/N={n}", compute)
                print(f"memory {variant:5s} {label:12s} N={n}: peak {r['peak']:8.0f} MiB, growth {r['growth']:8.0f} MiB",
                      flush=True)

    if "timing" in args.parts:
        for label, (preset_name, short) in TIMING.items():
            counts = cache.get(f"counts/{label}", lambda p=preset_name, s=short: preset_counts(
                p, {k: v for k, v in s.items() if k == "checkpointing"}, PRESET_N))
            print(f"preset {preset_name}: {counts}", flush=True)
        variants = {"fp32": (None, False)}
        if cuda:
            variants.update({"bf16": ("bfloat16", False), "bf16+compile": ("bfloat16", True)})
        for variant, (autocast, compile_network) in variants.items():
            generator = random_prior(PRESET_N, device, size=args.size, autocast=autocast,
                                     compile_network=compile_network)
            z = torch.randn(1, *generator.image_shape, generator=torch.Generator().manual_seed(2)).to(device)

            def network(generator=generator, z=z, compile_network=compile_network):
                out = {}
                if compile_network:  # the first call of each step compiles
                    start = time.perf_counter()
                    for i in range(generator.num_steps):
                        x = z.detach().clone().requires_grad_(True)
                        generator.step(x, i).square().sum().backward()
                    sync(device)
                    out["compile_s"] = time.perf_counter() - start
                # warm-up: the largest graph (DMPlug, 2 iterations) first, so that the allocator's heap
                # has grown before anything is timed (first-touch page faults inflated the first timings)
                y, operator, z0 = problem(generator, device)
                build("dmplug", num_iters=2).solve(y, operator, generator, z_init=z0)
                out["t_fb"], out["t_f"] = time_network(generator, z, args.repeats)
                return out

            net = cache.get(f"timing/{variant}/network", network)
            print(f"timing {variant}: t_fb {net['t_fb']:.3f} s, t_f {net['t_f']:.3f} s", flush=True)
            before = (net["t_fb"], net["t_f"])
            for label in TIMING:
                r = cache.get(f"timing/{variant}/{label}", lambda label=label, before=before: time_solver(
                    label, generator, device, before, args.nfe_scale))
                before = tuple(r["t_after"])
                print(f"timing {variant} {label:12s}: {r['nfe']} NFE in {r['wall']:.1f} s, t_fb before / after "
                      f"{r['t_before'][0]:.2f} / {r['t_after'][0]:.2f} s, overhead {r['overhead_nfe']:.3f} "
                      f"(NFE x t_fb) / {r['overhead_priced']:.3f} (priced)", flush=True)
            del generator
    report(args, cache)


if __name__ == "__main__":
    main()
