"""Every solver on every task, tuned on a validation split and reported on a disjoint test split.

Tasks (measurements exactly as the bundle simulates them, from ``configs/tasks/<task>.yaml``):
``inpainting``, ``sr4``, ``gaussian_blur``, ``motion_blur`` on the shipped Fashion-MNIST prior and
``mri``, ``ct`` on the shipped brain prior.

Images (never the shipped sample images; ``--count`` per split, default 16):

* Fashion-MNIST: the test split of ``scripts/prepare_data.py``, every 311th PNG, validation from
  index 7, test from index 8 (disjoint: the starts differ modulo the stride).
* Brain: slices of the held-out ITK subject (``data_cache/brain_mri/heldout``, never trained on),
  validation the slices ``k % 4 == 0``, test ``k % 4 == 2``, each ``--count`` spread evenly over
  the three orientations' stacks.

Per-image seeds draw the mask / kernel / noise (validation 0.., test 1000..) and the solvers' noise.

The rule, the same for every solver: each solver's preset for the task family (its
``configs/solvers/<family>_<solver>.yaml``, or the generic preset) is the middle point of a grid
over its main strength knob (:data:`GRIDS`); the setting with the highest mean validation PSNR is
frozen and run once on the test split. DMPlug's iteration count is its plateau: one validation
run records PSNR every 50 iterations and the smallest count within 0.1 dB of the best is kept.
A winning edge grows the grid: while the best setting is at
the grid's largest (smallest) value, one more point at the same ratio is run, at most two per side
(every knob but DDRM's bounded eta). DMILO and DMILO-PGD start at 5 outer x 20 inner iterations,
N = 3 (318 NFE), with the grid over their step size; the best step is then also run at the
library's default 100 inner iterations (1,518 NFE); when that validates better, the step is
re-tuned at 100 inner iterations (the same factors and growth around it), and the best of all
these is frozen. Three GT-free rows use the discrepancy principle
(tau = 1, the task's sigma) with the frozen settings: DMILO-PGD choosing its outer iterate, DMPlug
stopping early, and DMILO ending its last layer's inner loop per sample.
Final iterates otherwise; nothing is picked per image with the ground truth.

Every run is cached in ``docs/benchmarks/quality/<task>.json`` (key: prior sha256, split,
solver, settings), written after each run, so an interrupted benchmark redoes nothing finished.

    python benchmarks/quality.py                                    # everything (hours on CPU)
    python benchmarks/quality.py --tasks inpainting mri             # some tasks
    python benchmarks/quality.py --report_only                      # tables and plots from the cache
    python benchmarks/quality.py --plan                             # the runs still missing, estimated
    python benchmarks/quality.py --report_only --readme             # and README's tables
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import REPO, markdown_table, paired, psnr, save_plot, split_images

from monai_dmilo.priors.checkpoints import sha256_of  # noqa: E402
from monai_dmilo.handlers.metrics import load_lpips, lpips_distance  # noqa: E402
from monai_dmilo.workflow.tasks import load_task, simulation_transform  # noqa: E402
from monai_dmilo.priors.loading import build_generator, load_model_config  # noqa: E402
from monai_dmilo.operators import build_from_batch  # noqa: E402
from monai_dmilo.workflow.run_files import atomic_path  # noqa: E402
from monai_dmilo.solvers import SOLVERS as SOLVER_CLASSES  # noqa: E402
from monai_dmilo.solvers import build as build_solver  # noqa: E402
from monai_dmilo.solvers import load_solver_preset, task_solver_preset  # noqa: E402

FASHION = REPO / "configs" / "models" / "fashion_mnist_32.yaml"
BRAIN = REPO / "configs" / "models" / "brain_mri_32.yaml"
BRAIN_HELDOUT = REPO / "data_cache" / "brain_mri" / "heldout"
BRAIN_SAMPLES = REPO / "bundle" / "sample_images" / "brain_mri"
OUT_DIR = REPO / "docs" / "benchmarks" / "quality"
REPORT = REPO / "docs" / "benchmarks" / "quality.md"

#: task -> the prior it runs on
TASKS = {"inpainting": FASHION, "sr4": FASHION, "gaussian_blur": FASHION, "motion_blur": FASHION,
         "mri": BRAIN, "ct": BRAIN}
#: solver -> (knob, multiplicative factors around its preset value), from the solver classes
#: (``Solver.tuning_knob`` / ``tuning_factors``); no knob or no factors: nothing to tune on a grid
GRIDS: dict[str, tuple[str | None, tuple[float, ...]]] = {
    name: (cls.tuning_knob, tuple(cls.tuning_factors)) for name, cls in SOLVER_CLASSES.items()}
#: solvers whose grid grows past a winning edge (not DDRM's eta, bounded by 1: ``tuning_extendable``)
EXTENDABLE = {name for name, cls in SOLVER_CLASSES.items() if cls.tuning_knob and cls.tuning_extendable}
EDGE_STEPS = 2
#: the order of the runs: cheap solvers first, so that an interrupted benchmark has the most rows
SOLVERS = ["adjoint", "tv", "ddrm", "diffpir", "pigdm", "dmilo", "dmilo_pgd", "reddiff", "daps", "dmplug", "dps"]
#: DMILO / DMILO-PGD: the grid's budget (benchmarks/validation_sweep.py: M = 20 ties 100 on Fashion
#: inpainting), then the library default's inner iterations at the best step (they win on brain MRI)
DMILO_BUDGET = {"num_outer": 5, "num_inner": 20}
DMILO_LONG_INNER = 100
DMPLUG_BASE = {"num_iters": 1000, "lr": 1e-2, "checkpointing": False}
DMPLUG_EVERY = 50
PLATEAU_DB = 0.1
SPLIT_SEED = {"validation": 0, "test": 1000}
#: the GT-free rules run on the test split with each solver's frozen setting (tau = 1, the task's sigma):
#: discrepancy = pick DMILO-PGD's outer iterate / stop DMPlug; inner discrepancy = end DMILO's last-layer loop
GT_FREE_RULES = {
    "final": lambda sigma: {},
    "discrepancy": lambda sigma: {"selection": "discrepancy", "selection_params": {"sigma": sigma, "tau": 1.0}},
    "inner_discrepancy": lambda sigma: {"inner_discrepancy": {"sigma": sigma, "tau": 1.0}},
}
RULES_OF = {"dmilo": ["inner_discrepancy"], "dmilo_pgd": ["discrepancy"], "dmplug": ["discrepancy"]}
PANEL_IMAGES = 4
#: the verdict table's cheap tier: at most this many network evaluations per image
CHEAP_NFE = 100
README = REPO / "README.md"
#: the README lines between which :func:`update_readme` writes the tables
README_MARKERS = ("<!-- quality-table-start -->", "<!-- quality-table-end -->")


# ----------------------------------------------------------------------------------------------
# images and problems

def fashion_split(split: str, count: int) -> tuple[list[str], torch.Tensor]:
    return split_images(7 if split == "validation" else 8, 311, count)


def brain_split(split: str, count: int) -> tuple[list[str], torch.Tensor]:
    """Held-out ITK slices ``k % 4 == 0`` (validation) or ``== 2`` (test), ``count`` spread evenly."""
    import nibabel as nib

    shipped = {p.name.split(".")[0] for p in BRAIN_SAMPLES.glob("*.nii.gz")}  # e.g. t1_axial_011
    remainder = 0 if split == "validation" else 2
    names, images = [], []
    for path in sorted(BRAIN_HELDOUT.glob("itk_t1_*.nii.gz")):
        orientation = path.name[len("itk_t1_"):].split(".")[0]
        stack = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # (32, 32, N) in [0, 1]
        for k in range(remainder, stack.shape[-1], 4):
            if f"t1_{orientation}_{k:03d}" not in shipped:
                names.append(f"{orientation}_{k:03d}")
                images.append(stack[..., k] * 2.0 - 1.0)
    if len(names) < count:
        raise SystemExit(f"only {len(names)} held-out brain slices for the {split} split; run scripts/prepare_data.py.")
    pick = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in pick], torch.from_numpy(np.stack([images[i] for i in pick]))[:, None]


def make_problem(task: dict, x: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.nn.Module]:
    """``(y, operator)`` for images ``(B, 1, H, W)`` as the bundle's evaluate workflow simulates them."""
    from monai.data import list_data_collate

    simulate = simulation_transform(task)
    items = [simulate({"image": x[b], "seed": int(s)}) for b, s in enumerate(seeds)]
    batch = list_data_collate(items)
    y = batch["y"].as_tensor() if hasattr(batch["y"], "as_tensor") else batch["y"]
    return y, build_from_batch(task["operator"], task["operator_params"], batch)


def ssim(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM ``(B,)`` (MONAI's, data range 2 for images in [-1, 1])."""
    from monai.metrics import SSIMMetric

    return SSIMMetric(spatial_dims=2, data_range=2.0, win_size=7)(x.clamp(-1, 1), reference).flatten()


@functools.lru_cache(maxsize=None)
def _lpips_model(device: str):
    return load_lpips(torch.device(device))


def lpips(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor | None:
    """Per-image LPIPS ``(B,)`` (AlexNet, images in [-1, 1]); ``None`` without the ``lpips`` package or its weights."""
    model = _lpips_model(str(x.device))
    return None if model is None else lpips_distance(model, x.clamp(-1, 1), reference).cpu()


# ----------------------------------------------------------------------------------------------
# solver settings

def preset_params(solver: str, family: str, sigma: float) -> dict:
    """The solver's preset for the task family (or its generic preset), at the benchmark's budget."""
    if solver == "dmplug":
        return dict(DMPLUG_BASE)
    params = dict(load_solver_preset(task_solver_preset(family, solver))["params"])
    if solver in ("dmilo", "dmilo_pgd"):
        params.update(DMILO_BUDGET)
    for key in ("sigma_y", "sigma_n"):
        if key in params:
            params[key] = sigma
    return params


def grid(solver: str, base: dict) -> list[dict]:
    knob, factors = GRIDS[solver]
    if knob is None or not factors:
        return [base]
    return [{**base, knob: float(f"{base[knob] * f:.6g}")} for f in factors]


# ----------------------------------------------------------------------------------------------
# runs

class Cache:
    """Run results of one task, on disk after every run (atomic replace, merged with the file's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str):
        if key not in self.data and self.path.is_file():
            # another process may have finished this run since (two processes can share a task)
            self.data = {**json.loads(self.path.read_text()), **self.data}
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        # merge with what other processes wrote since (several may run one task, e.g. --solvers dps)
        if self.path.is_file():
            self.data = {**json.loads(self.path.read_text()), **self.data}
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=1) + "\n")


def run_once(solver: str, params: dict, problem: dict, *, trace_every: int | None = None, **extra) -> dict:
    """Solve the split's problem; PSNR / SSIM of the final iterate (and of every ``trace_every``-th)."""
    truth = problem["truth"]
    trace: dict[int, list[float]] = {}

    def callback(record: dict) -> None:
        trace[record["record"]] = psnr(record["x"].clamp(-1, 1), truth).tolist()

    start = time.perf_counter()
    out = build_solver(solver, **params, **extra, callback=callback if trace_every else None).solve(
        problem["y"], problem["operator"], problem["generator"], seed=problem["seeds"])
    seconds = time.perf_counter() - start
    x = out.x.clamp(-1, 1)
    result = {"psnr": psnr(x, truth).tolist(), "ssim": ssim(x, truth).tolist(), "nfe": int(out.nfe),
              "seconds": round(seconds, 2), "images": problem["names"]}
    perceptual = lpips(x, truth)
    if perceptual is not None:
        result["lpips"] = perceptual.tolist()
    if trace_every:
        result["trace"] = {str(k): v for k, v in trace.items()}
    if problem["split"] == "test":
        result["panel"] = np.round(x[:PANEL_IMAGES, 0].numpy(), 3).tolist()
    return result


def mean_psnr(result: dict) -> float:
    """Mean PSNR of a run; a run that diverged (NaN) ranks below every other."""
    return float(np.nan_to_num(np.mean(result["psnr"]), nan=-np.inf))


def best_of(results: list[tuple[dict, dict]]) -> dict:
    """The setting of the run with the highest mean PSNR."""
    return max(results, key=lambda pr: mean_psnr(pr[1]))[0]


def trace_means(trace: dict[str, list[float]]) -> list[tuple[int, float]]:
    """``[(iteration, mean PSNR)]`` of a recorded PSNR trace, by iteration."""
    return sorted((int(k), float(np.mean(v))) for k, v in trace.items())


def plateau(trace: dict[str, list[float]]) -> int:
    """The smallest recorded iteration whose mean PSNR is within PLATEAU_DB of the best."""
    means = trace_means(trace)
    best = max(m for _, m in means)
    return min(k for k, m in means if m >= best - PLATEAU_DB)


def still_rising(trace: dict[str, list[float]]) -> str | None:
    """A caveat when the mean PSNR still gained over PLATEAU_DB in the last 100 recorded iterations."""
    means = trace_means(trace)
    last, final = means[-1]
    earlier = [m for k, m in means if k <= last - 100]
    if not earlier or final - earlier[-1] <= PLATEAU_DB:
        return None
    return (f"still gaining {final - earlier[-1]:.2f} dB per 100 iterations at the end of its validation run "
            f"({last} iterations): its count is the budget's cap, not a plateau, and more iterations may do better")


class TaskBench:
    """Validation, selection and test runs of every solver on one task."""

    def __init__(self, task_name: str, count: int) -> None:
        self.name = task_name
        self.task = load_task(task_name)
        self.model_path = TASKS[task_name]
        self.config = load_model_config(self.model_path)
        self.digest = sha256_of(self.config["checkpoint"])[:16]
        self.count = count
        self.cache = Cache(OUT_DIR / f"{task_name}.json")
        self._problems: dict[str, dict] = {}
        #: runs asked for with ``run=False`` and not cached: ``(split, solver, rule, params)``
        self.pending: list[tuple[str, str, str, dict]] = []

    def problem(self, split: str) -> dict:
        if split not in self._problems:
            brain = self.model_path == BRAIN
            names, truth = (brain_split if brain else fashion_split)(split, self.count)
            seeds = [SPLIT_SEED[split] + b for b in range(self.count)]
            y, operator = make_problem(self.task, truth, seeds)
            generator = build_generator(self.config, num_steps=3)
            self._problems[split] = {"split": split, "names": names, "truth": truth, "y": y, "operator": operator,
                                     "seeds": seeds, "generator": generator}
        return self._problems[split]

    def key(self, split: str, solver: str, params: dict, rule: str = "final") -> str:
        return f"{self.digest}|{split}|{self.count}|{solver}|{rule}|{json.dumps(params, sort_keys=True)}"

    @staticmethod
    def solver_and_params(key: str) -> tuple[str, dict]:
        """The solver and settings of a cache key made by :meth:`key`."""
        _, _, _, solver, _, params = key.split("|", 5)
        return solver, json.loads(params)

    def cached_or_run(self, split: str, solver: str, params: dict, *, rule: str = "final", run: bool = True,
                      **kwargs) -> dict | None:
        key = self.key(split, solver, params, rule)
        result = self.cache.get(key)
        if result is None and not run:
            self.pending.append((split, solver, rule, params))
        if result is None and run:
            label = f"{self.name} {split} {solver} {rule} {params}"
            print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
            extra = GT_FREE_RULES[rule](self.task["noise_sigma"])
            result = run_once(solver, params, self.problem(split), **extra, **kwargs)
            self.cache.put(key, result)
            print(f"    {np.mean(result['psnr']):.2f} dB, {result['nfe']} NFE, {result['seconds']:.0f} s", flush=True)
        return result

    def base(self, solver: str) -> dict:
        return preset_params(solver, self.task["solver_task"], self.task["noise_sigma"])

    def validation(self, solver: str, run: bool) -> list[tuple[dict, dict | None]]:
        """``[(params, result)]`` of the solver's validation grid (the preset first)."""
        base = self.base(solver)
        if solver == "dmplug":
            return [(base, self.cached_or_run("validation", solver, base, run=run, trace_every=DMPLUG_EVERY,
                                              report_every=DMPLUG_EVERY))]
        results = self._tuned(solver, base, run)
        if solver in ("dmilo", "dmilo_pgd") and all(r is not None for _, r in results):
            longer = {**best_of(results), "num_inner": DMILO_LONG_INNER}
            long_results = [(longer, self.cached_or_run("validation", solver, longer, run=run))]
            if long_results[0][1] is not None and best_of(results + long_results) is longer:
                # the longer budget wins: its step is re-tuned around the best (same factors and growth)
                long_results = self._tuned(solver, longer, run, done=long_results)
            results += long_results
        return results

    def _tuned(self, solver: str, centre: dict, run: bool, done: list = ()) -> list:
        """Validation runs of the knob's grid around ``centre`` (centre first; ``done`` reused),
        grown at winning edges."""
        results = list(done)
        for p in sorted(grid(solver, centre), key=lambda p: p != centre):
            if all(p != q for q, _ in results):
                results.append((p, self.cached_or_run("validation", solver, p, run=run)))
        if solver in EXTENDABLE:
            results = self._grow_at_winning_edges(solver, centre, results, run)
        return results

    def _grow_at_winning_edges(self, solver: str, base: dict, results: list, run: bool) -> list:
        knob, factors = GRIDS[solver]
        for edge_of, ratio in ((max, factors[-1] / factors[-2]), (min, factors[0] / factors[1])):
            for _ in range(EDGE_STEPS):
                if any(r is None for _, r in results):
                    return results
                edge = edge_of(p[knob] for p, _ in results)
                if best_of(results)[knob] != edge:
                    break
                point = {**base, knob: float(f"{edge * ratio:.6g}")}
                results.append((point, self.cached_or_run("validation", solver, point, run=run)))
        return results

    def chosen(self, solver: str, run: bool) -> dict | None:
        """The frozen setting for the test split (None while validation is unfinished)."""
        results = self.validation(solver, run)
        if any(r is None for _, r in results):
            return None
        if solver == "dmplug":
            params, result = results[0]
            return {**params, "num_iters": plateau(result["trace"])}
        return best_of(results)

    def caveat(self, solver: str) -> str | None:
        """What makes the solver's frozen setting doubtful, read from its validation runs: every point
        diverged, the grid was flat (a tie), the best sits at the grown grid's edge, or DMPlug had not
        plateaued when its validation run ended."""
        knob = GRIDS[solver][0]
        chosen = self.chosen(solver, run=False)
        if solver == "dmplug" and chosen is not None:
            (_, result), = self.validation(solver, run=False)
            return still_rising(result["trace"])
        if knob is None or chosen is None:
            return None
        same_stage = [(p[knob], mean_psnr(r)) for p, r in self.validation(solver, run=False)
                      if {k: v for k, v in p.items() if k != knob} == {k: v for k, v in chosen.items() if k != knob}]
        values = [v for v, _ in same_stage]
        finite = [m for _, m in same_stage if np.isfinite(m)]
        if not finite:
            return f"every validation point diverged ({knob} {min(values):g} to {max(values):g}); the centre is kept"
        if len(finite) > 1 and max(finite) - min(finite) < PLATEAU_DB:
            return (f"validation PSNR varies by under {PLATEAU_DB} dB over {knob} {min(values):g} to {max(values):g}: "
                    f"the knob did not matter, the choice is a tie")
        if solver in EXTENDABLE and chosen[knob] in (min(values), max(values)):
            return (f"the best {knob} ({chosen[knob]:g}) is at the edge of the grid after {EDGE_STEPS} growth steps: "
                    f"a value beyond it may do better")
        return None

    def test_rows(self, run: bool, solvers: list[str] = SOLVERS) -> dict[str, dict]:
        """Label -> test result with its setting, for every solver (of ``solvers``) whose validation is done;
        with ``run``, what is missing is run (validation, then test, one solver after the other)."""
        rows = {}
        for solver in solvers:
            params = self.chosen(solver, run)
            if params is None:
                continue
            for rule in ["final", *RULES_OF.get(solver, [])]:
                result = self.cached_or_run("test", solver, params, rule=rule, run=run)
                if result is not None:
                    label = solver if rule == "final" else f"{solver} + {rule.replace('_', ' ')}"
                    rows[label] = {**result, "params": params}
        return rows


# ----------------------------------------------------------------------------------------------
# reports

def _settings(solver: str, params: dict, base: dict) -> str:
    knob = GRIDS[solver.split(" ")[0]][0]
    if knob is None:
        return "-"
    text = f"{knob} {params[knob]:g}" + (" (preset)" if params[knob] == base.get(knob) else "")
    if "num_inner" in params and params["num_inner"] != base.get("num_inner"):
        text += f", num_inner {params['num_inner']}"
    return text


def _mean_std(values: list[float] | None) -> str:
    return "-" if values is None else f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def task_section(bench: TaskBench) -> tuple[str, dict[str, dict]]:
    rows = bench.test_rows(run=False)
    task = bench.task
    head = (f"### {bench.name} (`{bench.config['name']}`): {task['description']}\n\n")
    if not rows:
        return head + "Not run yet.\n", rows
    reference = rows.get("dmilo_pgd")
    with_lpips = any("lpips" in r for r in rows.values())
    table = []
    for label, r in sorted(rows.items(), key=lambda kv: -np.mean(kv[1]["psnr"])):
        p = np.array(r["psnr"])
        if reference is not None and label != "dmilo_pgd":
            diff = torch.tensor(p - np.array(reference["psnr"]))
            vs = paired(diff)
            wl = f"{int((diff > 0).sum())}/{int((diff < 0).sum())}"
        else:
            vs, wl = "-", "-"
        table.append([label, _settings(label, r["params"], bench.base(label.split(" ")[0])),
                      f"{p.mean():.2f} ± {p.std(ddof=1):.2f}", _mean_std(r["ssim"])]
                     + ([_mean_std(r.get("lpips"))] if with_lpips else [])
                     + [vs, wl, str(r["nfe"]), f"{r['seconds'] / len(p):.2f}"])
    text = head + markdown_table(["solver", "setting (chosen on validation)", "PSNR dB", "SSIM"]
                                 + (["LPIPS"] if with_lpips else [])
                                 + ["PSNR - DMILO-PGD (± s.e.)", "wins/losses vs PGD", "NFE / image",
                                    "s / image"], table)
    val = []
    for solver in SOLVERS:
        for params, r in bench.validation(solver, run=False):
            if r is None:
                continue
            if solver == "dmplug":
                curve = ", ".join(f"{k}: {np.mean(v):.2f}" for k, v in r["trace"].items())
                val.append([solver, "Adam steps: " + curve])
            else:
                val.append([solver, f"{_settings(solver, params, bench.base(solver))}: {np.mean(r['psnr']):.2f}"])
    caveats = [(solver, bench.caveat(solver)) for solver in SOLVERS if solver in rows]
    caveats = [f"- {solver}: {text}." for solver, text in caveats if text]
    if caveats:
        text += "\n\nSelection caveats (from the validation runs):\n\n" + "\n".join(caveats)
    names = rows[next(iter(rows))]["images"]
    text += (f"\n\nTest images: {', '.join(names)}.\n\n<details><summary>validation runs (mean PSNR dB)</summary>\n\n"
             + markdown_table(["solver", "setting: validation PSNR"], val) + "\n\n</details>\n")
    return text, rows


def overview(all_rows: dict[str, dict[str, dict]]) -> str:
    """One table: per task, every solver's test PSNR (NFE), the best in bold."""
    tasks = [t for t in TASKS if all_rows.get(t)]
    labels = [*SOLVERS, "dmilo + inner discrepancy", "dmilo_pgd + discrepancy", "dmplug + discrepancy"]
    lines = []
    for label in labels:
        cells = []
        for t in tasks:
            r = all_rows[t].get(label)
            if r is None:
                cells.append("-")
                continue
            best = max(np.mean(v["psnr"]) for v in all_rows[t].values())
            m = np.mean(r["psnr"])
            cell = f"{m:.2f} ({r['nfe']})"
            cells.append(f"**{cell}**" if m == best else cell)
        lines.append([label] + cells)
    done = {t: all(s in all_rows[t] for s in SOLVERS) for t in tasks}
    return markdown_table(["solver: test PSNR dB (NFE / image)"] + [t if done[t] else f"{t} (partial)" for t in tasks], lines)


def verdict(all_rows: dict[str, dict[str, dict]]) -> str:
    """One line per task: who wins, the best at most :data:`CHEAP_NFE` NFE, the best without a network,
    and where DMILO-PGD and DMILO stand (paired difference to the winner, rank among the rows)."""
    lines = []
    for t in [t for t in TASKS if all_rows.get(t)]:
        rows = all_rows[t]
        ranked = sorted(rows, key=lambda label: -mean_psnr(rows[label]))
        winner = rows[ranked[0]]

        def cost(label: str) -> str:
            r = rows[label]
            return f"{label} {np.mean(r['psnr']):.2f} ({r['nfe']} NFE, {r['seconds'] / len(r['psnr']):.1f} s)"

        def best_where(keep) -> str:
            return next((cost(label) for label in ranked if keep(rows[label])), "-")

        def standing(label: str) -> str:
            if label not in rows:
                return "-"
            if label == ranked[0]:
                return f"{np.mean(rows[label]['psnr']):.2f}, wins"
            diff = torch.tensor(np.array(rows[label]["psnr"]) - np.array(winner["psnr"]))
            return f"{np.mean(rows[label]['psnr']):.2f}: {paired(diff)}, {ranked.index(label) + 1} of {len(rows)}"

        complete = all(s in rows for s in SOLVERS)
        lines.append([t if complete else f"{t} (partial)", f"**{cost(ranked[0])}**",
                      best_where(lambda r: 0 < r["nfe"] <= CHEAP_NFE), best_where(lambda r: r["nfe"] == 0),
                      standing("dmilo_pgd"), standing("dmilo")])
    return markdown_table(["task", "winner: test PSNR dB (NFE, s / image)", f"best at <= {CHEAP_NFE} NFE",
                           "best without a network", "DMILO-PGD: PSNR, - winner (± s.e.), rank",
                           "DMILO: PSNR, - winner (± s.e.), rank"], lines)


def update_readme(all_rows: dict[str, dict[str, dict]], path: Path) -> None:
    """Replace the text between README's :data:`README_MARKERS` with the verdict and the overview tables."""
    start, end = README_MARKERS
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{path} must hold {start!r} once, then {end!r} once")
    head, rest = text.split(start)
    body = ("Who wins at what cost (test split; seconds per image on one CPU thread):\n\n" + verdict(all_rows)
            + "\n\nEvery solver (test PSNR dB, NFE per image in brackets; the best per task in bold):\n\n"
            + overview(all_rows))
    path.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")


def plot(all_rows: dict[str, dict[str, dict]], path: Path) -> None:
    tasks = [t for t in TASKS if all_rows.get(t)]
    if not tasks:
        return

    def draw(axes):
        for ax, t in zip(axes.flat, tasks):
            for label, r in all_rows[t].items():
                ax.scatter(max(r["nfe"], 1), np.mean(r["psnr"]), s=18)
                ax.annotate(label.replace(" + ", "+"), (max(r["nfe"], 1), np.mean(r["psnr"])),
                            fontsize=6)
            ax.set_xscale("log")
            ax.set_title(t, fontsize=9)
            ax.set_xlabel("NFE / image (0 plotted at 1)", fontsize=7)
            ax.set_ylabel("test PSNR dB", fontsize=7)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")

    cols = min(3, len(tasks))
    save_plot(path, draw, grid=((len(tasks) + cols - 1) // cols, cols), figsize=(4 * cols, 3.2 * ((len(tasks) + cols - 1) // cols)))


def panel(bench: TaskBench, rows: dict[str, dict], path: Path) -> None:
    """Test images (rows): truth, then every solver's output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    problem = bench.problem("test")
    truth = problem["truth"][:PANEL_IMAGES, 0]
    shown = problem["operator"].view(problem["y"], problem["truth"].shape[1:])[:PANEL_IMAGES, 0]  # [0, 1]
    labels = sorted(rows, key=lambda k: -np.mean(rows[k]["psnr"]))
    fig, axes = plt.subplots(len(truth), len(labels) + 2, figsize=(1.1 * (len(labels) + 2), 1.2 * len(truth)),
                             squeeze=False)
    for i in range(len(truth)):
        axes[i, 0].imshow(truth[i], cmap="gray", vmin=-1, vmax=1)
        axes[i, 1].imshow(shown[i], cmap="gray", vmin=0, vmax=1)
        for j, label in enumerate(labels):
            image = torch.tensor(rows[label]["panel"][i]).float()
            axes[i, j + 2].imshow(image, cmap="gray", vmin=-1, vmax=1)
            axes[i, j + 2].set_xlabel(f"{rows[label]['psnr'][i]:.1f}", fontsize=6, labelpad=1)
    for j, label in enumerate(["truth", "measurement"] + labels):
        axes[0, j].set_title(label.replace(" + ", "\n+"), fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{bench.name}: test images, PSNR dB under each", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(benches: list[TaskBench], command: str) -> dict[str, dict[str, dict]]:
    """Write quality.md, its plot and panels; returns task -> label -> test row."""
    from common import machine

    sections, all_rows = [], {}
    for bench in benches:
        text, rows = task_section(bench)
        all_rows[bench.name] = rows
        if rows:
            image = OUT_DIR / f"panel_{bench.name}.png"
            panel(bench, rows, image)
            text += f"\n![{bench.name} test panel]({OUT_DIR.name}/{image.name})\n"
        sections.append(text)
    plot(all_rows, REPORT.with_suffix(".png"))
    done = [t for t in TASKS if all_rows.get(t)]
    missing = [t for t in TASKS if t not in done]
    ssim_note = ("SSIM is MONAI's `SSIMMetric` with a 7 x 7 window on images in [-1, 1] (data range 2); the bundle's "
                 "metrics handler uses MONAI's default 11 x 11 window on [0, 1], so the two SSIMs are not comparable.")
    lpips = ("LPIPS (AlexNet) is a column where the runs had the `lpips` package and its weights."
             if any("lpips" in r for rows in all_rows.values() for r in rows.values()) else
             "LPIPS is not reported: the machine that ran these had no `lpips` package or weights (it is added "
             "to each run where they are).")
    text = (f"# Every solver on every task (validation-tuned, test-reported)\n\nCommand: `{command}`\n\n"
            f"Machine: {machine()}\n\n{__doc__.split('Every run is cached')[0].strip()}\n\n"
            f"{ssim_note} {lpips} Wall seconds are one CPU thread, batches of {benches[0].count if benches else 16} images, "
            "with another benchmark process on the second core; compare them within a task.\n\n"
            "## All tasks (test split)\n\n" + verdict(all_rows) + "\n\n" + overview(all_rows) + f"\n\n![test PSNR against NFE]({REPORT.with_suffix('.png').name})\n\n"
            + (f"Tasks not finished yet: {', '.join(missing)}.\n\n" if missing else "")
            + "## Per task\n\n" + "\n\n".join(sections) + "\n")
    REPORT.write_text(text)
    print(f"wrote {REPORT}")
    return all_rows


def seconds_estimate(caches: list[Cache], solver: str, params: dict) -> float | None:
    """Median wall seconds of the cached runs of ``solver`` at the same inner budget (every task and prior)."""
    same = []
    for cache in caches:
        for key, result in cache.data.items():
            run_solver, run_params = TaskBench.solver_and_params(key)
            if run_solver == solver and run_params.get("num_inner") == params.get("num_inner"):
                same.append(result["seconds"])
    return float(np.median(same)) if same else None


def plan(benches: list[TaskBench], solvers: list[str]) -> str:
    """The runs each task's next stage needs (later stages depend on their results), with estimates."""
    caches = [Cache(OUT_DIR / f"{t}.json") for t in TASKS]
    lines, total = [], 0.0
    for bench in benches:
        bench.test_rows(run=False, solvers=solvers)
        for split, solver, rule, params in bench.pending:
            estimate = seconds_estimate(caches, solver, params)
            total += estimate or 0.0
            keys = dict.fromkeys(k for k in (GRIDS[solver][0], "num_inner", "num_iters") if k in params)
            setting = ", ".join(f"{k} {params[k]:g}" for k in keys)
            lines.append([bench.name, split, solver, rule, setting or "-",
                          "?" if estimate is None else f"{estimate:.0f}"])
    if not lines:
        return "Nothing pending: every test row is cached."
    return (markdown_table(["task", "split", "solver", "rule", "setting", "est. s"], lines)
            + f"\n\n{len(lines)} runs pending in the next stage, about {total / 3600:.1f} h on one thread "
            "(median of cached runs of the solver); the stages after them are not counted.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--solvers", nargs="+", default=SOLVERS, choices=SOLVERS,
                        help="solvers to run (the report shows every cached one)")
    parser.add_argument("--count", type=int, default=16, help="images per split")
    parser.add_argument("--report_only", action="store_true", help="write the report from the cache, run nothing")
    parser.add_argument("--plan", action="store_true", help="list the runs still missing, run nothing")
    parser.add_argument("--readme", action="store_true", help="also rewrite the tables of README's quality section")
    args = parser.parse_args()
    if args.plan:
        print(plan([TaskBench(t, args.count) for t in args.tasks], [s for s in SOLVERS if s in args.solvers]))
        return
    if not args.report_only:
        for task in args.tasks:
            TaskBench(task, args.count).test_rows(run=True, solvers=[s for s in SOLVERS if s in args.solvers])
    all_rows = write_report([TaskBench(t, args.count) for t in TASKS], "python benchmarks/quality.py")
    if args.readme:
        update_readme(all_rows, README)
        print(f"updated the tables in {README}")


if __name__ == "__main__":
    main()
