"""DMILO and DMILO-PGD against the number of DDIM steps N: PSNR, data fit, NFE, and where the fit goes.

Validation split only (the Fashion-MNIST test PNGs of ``scripts/prepare_data.py``, every 311th from
index 7, as ``benchmarks/quality.py``), measurements as the bundle simulates them
(``configs/tasks/<task>.yaml``, per-image seeds 0..), the shipped Fashion prior, the reference
timesteps. Each solver runs its task-family preset at the quality benchmark's DMILO budget
(5 outer x 20 inner iterations) for every N; the budget variants of :data:`VARIANTS` run
too (more inner iterations at N = 10; the N steps grouped into 3 DMILO layers, ``num_layers``). Nothing here picks anything with the ground truth: PSNR is reported.

Per run, the last outer iteration's layer diagnostics (mean over the images; computing them costs
2N forward passes per outer iteration, which the ``seconds`` include and ``nfe`` does not):

* ``layer fit``: each layer's own loss term after its inner loop, before the regeneration
  (``mean((g_i(z_i) + nu_i - z_{i+1})^2)`` against the freshly optimised next latent;
  ``mean(|A(g_{N-1}(z) + nu) - y|^2)`` for the last layer);
* ``drift``: after the regeneration ``z_{i+1} = g_i(z_i) + nu_i``, how far each regenerated
  latent is from the one the sweep optimised (for the last layer: the regenerated data fit).

Cached in ``docs/benchmarks/dmilo_steps.json`` after every run (resumable); the report is
``docs/benchmarks/dmilo_steps.md`` with a plot.

    python benchmarks/dmilo_steps.py                       # everything missing (about 2 h on one thread)
    python benchmarks/dmilo_steps.py --tasks inpainting --solvers dmilo --steps 3 10
    python benchmarks/dmilo_steps.py --report_only
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from common import REPO, markdown_table, psnr, save_plot
from quality_bench.cache import Cache
from quality_bench.problems import fashion_split, make_problem
from quality_bench.settings import DMILO_BUDGET, FASHION

from monai_dmilo.priors.checkpoints import sha256_of  # noqa: E402
from monai_dmilo.priors.loading import build_prior  # noqa: E402
from monai_dmilo.solvers import DMILO, DMILOPGD, per_sample_mean_square, task_solver_preset  # noqa: E402
from monai_dmilo.solvers import load_solver_preset  # noqa: E402
from monai_dmilo.workflow.tasks import load_task  # noqa: E402

OUT = REPO / "docs" / "benchmarks" / "dmilo_steps.json"
REPORT = REPO / "docs" / "benchmarks" / "dmilo_steps.md"
PLOT = REPO / "docs" / "benchmarks" / "dmilo_steps.png"
TASKS = ["inpainting", "sr4"]
SOLVERS = {"dmilo": DMILO, "dmilo_pgd": DMILOPGD}
STEPS = [1, 2, 3, 4, 5, 7, 10, 15, 20]
#: budget variants: (N, label, overrides on the 5 x 20 budget, solvers)
VARIANTS = [
    (10, "M = 100 on every layer", {"num_inner": 100}, ("dmilo",)),
    (10, "M = 20 last, 100 intermediate", {"num_inner_intermediate": 100}, ("dmilo",)),
    (5, "5 x 20, 3 layers", {"num_layers": 3}, ("dmilo", "dmilo_pgd")),
    (10, "5 x 20, 3 layers", {"num_layers": 3}, ("dmilo", "dmilo_pgd")),
    (20, "5 x 20, 3 layers", {"num_layers": 3}, ("dmilo", "dmilo_pgd")),
    (10, "5 x 40, 3 layers", {"num_layers": 3, "num_inner": 40}, ("dmilo",)),
    # per-N learning rate (chosen on these validation images like any setting), N = 3's too, and N = 3's last jump kept:
    (3, "5 x 20, lr_z x 2", {"lr_z_factor": 2.0}, ("dmilo",)),
    (3, "5 x 20, lr_z x 4", {"lr_z_factor": 4.0}, ("dmilo",)),
    # nine uniform steps 999 -> 333 then 333 -> 0, layers of 3 + 3 + 3 + 1 steps
    (10, "5 x 20, 3 layers, lr_z x 0.5", {"num_layers": 3, "lr_z_factor": 0.5}, ("dmilo",)),
    (10, "5 x 20, 3 layers, lr_z x 2", {"num_layers": 3, "lr_z_factor": 2.0}, ("dmilo",)),
    (10, "5 x 20, 3 layers, lr_z x 4", {"num_layers": 3, "lr_z_factor": 4.0}, ("dmilo",)),
    (10, "5 x 20, last jump 333 -> 0, 4 layers", {"num_layers": [3, 3, 3, 1], "prior_timesteps": "last_jump"}, ("dmilo",)),
    (10, "5 x 20, last jump 333 -> 0, 4 layers, lr_z x 2", {"num_layers": [3, 3, 3, 1], "prior_timesteps": "last_jump",
                                                           "lr_z_factor": 2.0}, ("dmilo",)),
    (10, "5 x 20, last layer's own output", {"estimate": "last_layer"}, ("dmilo",)),
    (10, "5 x 20, 3 layers, last layer's own output", {"num_layers": 3, "estimate": "last_layer"}, ("dmilo",)),
    (10, "5 x 20, last jump 333 -> 0, 4 layers, lr_z x 4", {"num_layers": [3, 3, 3, 1], "prior_timesteps": "last_jump",
                                                           "lr_z_factor": 4.0}, ("dmilo",)),
]


def last_jump_timesteps(steps: int) -> list[tuple[int, int]]:
    """``steps - 1`` uniform DDIM steps from 999 to 333, then N = 3's last jump 333 -> 0."""
    grid = np.linspace(999, 333, steps).round().astype(int).tolist()
    return list(zip(grid[:-1], grid[1:])) + [(333, 0)]


def probing(cls):
    """``cls`` recording, after each backward sweep, every layer's fit and the regeneration's drift."""

    class LayerProbe(cls):
        def _sweep(self, ctx, target):
            super()._sweep(ctx, target)
            gen, z, nu, n = ctx.prior, ctx.latents, ctx.deviations, len(ctx.deviations)
            with torch.no_grad():
                fit, drift, chain = [], [], z[0]
                for i, block in enumerate(ctx.blocks):
                    out = self.apply_layer(gen, z[i], block) + nu[i]
                    chain = self.apply_layer(gen, chain, block) + nu[i]
                    if i == n - 1:
                        fit.append(per_sample_mean_square(ctx.operator(out) - target).mean().item())
                        drift.append(per_sample_mean_square(ctx.operator(chain.clamp(-1, 1)) - ctx.y).mean().item())
                    else:
                        fit.append(per_sample_mean_square(out - z[i + 1]).mean().item())
                        drift.append(per_sample_mean_square(chain - z[i + 1]).mean().item())
            self.layers = {"fit": fit, "drift": drift}

    return LayerProbe


def settings(task: str, solver: str, overrides: dict) -> dict:
    """The run's settings: the preset at the budget, the overrides (``lr_z_factor`` scales the
    preset's ``lr_z``; ``prior_timesteps`` names the prior's timestep list, see :func:`run`)."""
    params = {**dict(load_solver_preset(task_solver_preset(load_task(task)["solver_task"], solver))["params"]),
              **DMILO_BUDGET, **overrides}
    factor = params.pop("lr_z_factor", None)
    if factor is not None:
        params["lr_z"] = params["lr_z"] * factor
    return params


def run(task: str, solver: str, steps: int, params: dict, problem: dict) -> dict:
    params = dict(params)
    timesteps = {"last_jump": last_jump_timesteps}[params.pop("prior_timesteps")](steps) if "prior_timesteps" in params else None
    generator = build_prior(FASHION, num_steps=steps, **({"timesteps": timesteps} if timesteps else {}))
    probe = probing(SOLVERS[solver])(**params)
    start = time.perf_counter()
    out = probe.solve(problem["y"], problem["operator"], generator, seed=problem["seeds"])
    seconds = time.perf_counter() - start
    x = out.x.clamp(-1, 1)
    return {"psnr": psnr(x, problem["truth"]).tolist(), "data_fit": out.history["data_fit"][-1].tolist(),
            "nfe": int(out.nfe), "seconds": round(seconds, 2), "layers": probe.layers,
            "timesteps": generator.timesteps, "images": problem["names"]}


def plan(tasks, solvers, steps) -> list[tuple[str, str, int, str, dict]]:
    """``(task, solver, N, label, overrides)`` of every run, cheap first."""
    runs = [(t, s, n, "5 x 20", {}) for n in sorted(steps) for t in tasks for s in solvers]
    runs += [(t, s, n, label, o) for n, label, o, variant_solvers in VARIANTS if n in steps
             for t in tasks for s in variant_solvers if s in solvers]
    return runs


def key(digest: str, count: int, task: str, solver: str, steps: int, params: dict) -> str:
    return f"{digest}|validation|{count}|{task}|{solver}|{steps}|{json.dumps(params, sort_keys=True)}"


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.0e}" for v in values)


def report(cache: Cache, digest: str, count: int, tasks, solvers, steps) -> None:
    sections, curves = [], {}
    for task in tasks:
        rows = []
        for t, solver, n, label, overrides in plan([task], solvers, steps):
            params = settings(task, solver, overrides)
            result = cache.get(key(digest, count, task, solver, n, params))
            if result is None:
                continue
            p, fit = np.mean(result["psnr"]), np.mean(result["data_fit"])
            if label == "5 x 20":
                curves.setdefault((task, solver), []).append((n, p, fit))
            rows.append([solver, str(n), label, f"{p:.2f}", f"{fit:.1e}", str(result["nfe"]),
                         f"{result['seconds'] / count:.1f}", fmt(result["layers"]["fit"]), fmt(result["layers"]["drift"])])
        header = ["solver", "N", "budget (outer x inner)", "PSNR dB", "final data fit", "NFE",
                  "s / image", "layer fit, i = 0 .. L-1", "drift after regeneration, i = 0 .. L-1"]
        sections.append(f"## {task}\n\n" + markdown_table(header, rows))

    def draw(axes):
        for (task, solver), points in curves.items():
            n, p, fit = zip(*sorted(points))
            axes[0][0].plot(n, p, marker="o", label=f"{task} {solver}")
            axes[0][1].semilogy(n, fit, marker="o", label=f"{task} {solver}")
        axes[0][0].set(xlabel="DDIM steps N", ylabel="validation PSNR (dB)")
        axes[0][1].set(xlabel="DDIM steps N", ylabel="final data fit mean|A(x) - y|^2")
        axes[0][0].legend(fontsize=7)

    save_plot(PLOT, draw, grid=(1, 2), figsize=(10, 4))
    text = (f"# DMILO and DMILO-PGD against the number of DDIM steps N\n\n"
            f"Command: `python benchmarks/dmilo_steps.py` (then `--report_only`). Validation split, {count} "
            f"Fashion-MNIST images per task, shipped prior `fashion_mnist_32`, reference timesteps, presets "
            f"of `configs/solvers/<family>_<solver>.yaml` at 5 outer x 20 inner iterations. Layer columns: "
            f"the last outer iteration, mean over the images (see the module docstring); s / image includes the "
            f"diagnostics' 2N extra forward passes per outer iteration.\n\n"
            f"![PSNR and data fit against N](dmilo_steps.png)\n\n" + "\n\n".join(sections) + "\n")
    notes = REPORT.with_name("dmilo_steps_notes.md")
    if notes.is_file():
        text += "\n" + notes.read_text()
    REPORT.write_text(text)
    print(f"wrote {REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    parser.add_argument("--steps", nargs="+", type=int, default=STEPS)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args()
    digest = sha256_of(REPO / "bundle" / "models" / "fashion_mnist_32.pt")
    cache = Cache(OUT)
    if not args.report_only:
        problems = {}
        for task, solver, n, label, overrides in plan(args.tasks, args.solvers, args.steps):
            params = settings(task, solver, overrides)
            k = key(digest, args.count, task, solver, n, params)
            if cache.get(k) is not None:
                continue
            if task not in problems:
                names, truth = fashion_split("validation", args.count)
                seeds = list(range(args.count))
                y, operator = make_problem(load_task(task), truth, seeds)
                problems[task] = {"names": names, "truth": truth, "y": y, "operator": operator, "seeds": seeds}
            print(f"[{time.strftime('%H:%M:%S')}] {task} {solver} N={n} {label} ...", flush=True)
            result = run(task, solver, n, params, problems[task])
            cache.put(k, result)
            print(f"    {np.mean(result['psnr']):.2f} dB, fit {np.mean(result['data_fit']):.1e}, "
                  f"{result['nfe']} NFE, {result['seconds']:.0f} s", flush=True)
    report(Cache(OUT), digest, args.count, TASKS, list(SOLVERS), STEPS)


if __name__ == "__main__":
    main()
