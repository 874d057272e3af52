"""Runs and the selection rule: each solver's validation grid, its growth at winning edges,
DMILO's budget stage, DMPlug's plateau, the frozen setting's test runs (:class:`TaskBench`)."""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from common import psnr

from monai_dmilo.priors.checkpoints import sha256_of  # noqa: E402
from monai_dmilo.priors.loading import build_prior, load_model_config  # noqa: E402
from monai_dmilo.solvers import SOLVERS as SOLVER_CLASSES  # noqa: E402
from monai_dmilo.solvers import build as build_solver  # noqa: E402
from monai_dmilo.solvers import load_solver_preset, task_solver_preset  # noqa: E402
from monai_dmilo.workflow.tasks import load_task  # noqa: E402

from .cache import Cache
from .problems import brain_split, ct_split, fashion_split, lpips, make_problem, ssim
from .settings import (BRAIN, CT_HEAD, CT_TASKS, DMILO_BUDGET, DMILO_LONG_INNER, DMPLUG_BASE, DMPLUG_EVERY, EDGE_STEPS, EXTENDABLE, GRIDS,
                       GT_FREE_RULES, OUT_DIR, PANEL_IMAGES, PLATEAU_DB, REVISIONS, RULES_OF, SOLVERS, SPLIT_SEED,
                       TASK_PRESETS, TASKS)


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


def run_once(solver: str, params: dict, problem: dict, *, trace_every: int | None = None, oracle: bool = False,
             **extra) -> dict:
    """Solve the split's problem; PSNR / SSIM of the final iterate (and of every ``trace_every``-th).

    ``oracle``: also the reference code's oracle, per image the best PSNR over every iterate the
    solver records (each step of the stepwise solvers; DMILO-PGD's projections and gradient
    iterates X'), as ``oracle_psnr`` with ``oracle_record`` (the record index, ``"k'"`` for X' of
    outer iteration k). It reads the ground truth: a column of its own, never a selection."""
    truth = problem["truth"]
    trace: dict[int, list[float]] = {}
    best = torch.full((truth.shape[0],), -float("inf"), dtype=torch.float64)
    best_at = ["-"] * truth.shape[0]

    def callback(record: dict) -> None:
        if trace_every:
            trace[record["record"]] = psnr(record["x"].clamp(-1, 1), truth).tolist()
        if oracle:
            for name, suffix in (("x", ""), ("x_prime", "'")):
                if name in record:
                    value = psnr(record[name].clamp(-1, 1), truth).double()
                    for b in torch.nonzero(value > best).flatten().tolist():
                        best[b], best_at[b] = value[b], f"{record['record']}{suffix}"

    if oracle and "report_every" in SOLVER_CLASSES[solver].__init__.__code__.co_varnames:
        extra["report_every"] = 1  # every recorded iterate reaches the callback (results unchanged)
    start = time.perf_counter()
    out = build_solver(solver, **params, **extra, callback=callback if trace_every or oracle else None).solve(
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
    if oracle:
        final = psnr(x, truth).double()
        result["oracle_psnr"] = torch.maximum(best, final).tolist()  # the final iterate counts too
        result["oracle_record"] = [at if b >= f else "final" for at, b, f in zip(best_at, best.tolist(), final.tolist())]
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


def cache_key(digest: str, split: str, count: int, solver: str, params: dict, rule: str = "final") -> str:
    """A run's cache key: the prior's sha256 prefix, split, image count, solver (with its code revision,
    :data:`~.settings.REVISIONS`), rule and settings."""
    revision = f"#{REVISIONS[solver]}" if solver in REVISIONS else ""
    return f"{digest}|{split}|{count}|{solver}{revision}|{rule}|{json.dumps(params, sort_keys=True)}"


class TaskBench:
    """Validation, selection and test runs of every solver on one task."""

    def __init__(self, task_name: str, count: int) -> None:
        self.name = task_name
        self.task = load_task(TASK_PRESETS.get(task_name, task_name))
        self.model_path = TASKS[task_name]
        self.config = load_model_config(self.model_path)
        self.digest = sha256_of(self.config["checkpoint"])[:16]
        self.count = min(count, CT_TASKS.get(task_name, count))
        self.cache = Cache(OUT_DIR / f"{task_name}.json")
        self._problems: dict[str, dict] = {}
        #: runs asked for with ``run=False`` and not cached: ``(split, solver, rule, params)``
        self.pending: list[tuple[str, str, str, dict]] = []

    def problem(self, split: str) -> dict:
        if split not in self._problems:
            if self.name in CT_TASKS:  # HU slices, windowed as the CT prior's training data (whichever prior runs)
                names, truth = ct_split(split, self.count, load_model_config(CT_HEAD)["intensity_window"])
            else:
                names, truth = (brain_split if self.model_path == BRAIN else fashion_split)(split, self.count)
            seeds = [SPLIT_SEED[split] + b for b in range(self.count)]
            y, operator = make_problem(self.task, truth, seeds)
            generator = build_prior(self.config, num_steps=3)
            self._problems[split] = {"split": split, "names": names, "truth": truth, "y": y, "operator": operator,
                                     "seeds": seeds, "generator": generator}
        return self._problems[split]

    def key(self, split: str, solver: str, params: dict, rule: str = "final") -> str:
        return cache_key(self.digest, split, self.count, solver, params, rule)

    @staticmethod
    def solver_and_params(key: str) -> tuple[str, dict]:
        """The solver and settings of a cache key made by :func:`cache_key`."""
        _, _, _, solver, _, params = key.split("|", 5)
        return solver.split("#")[0], json.loads(params)

    def cached_or_run(self, split: str, solver: str, params: dict, *, rule: str = "final", run: bool = True,
                      **kwargs) -> dict | None:
        key = self.key(split, solver, params, rule)
        result = self.cache.get(key)
        if result is None and not run:
            self.pending.append((split, solver, rule, params))
        if result is None and run:
            label = f"{self.name} {split} {solver} {rule} {params}"
            print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
            extra = GT_FREE_RULES[rule](self.task["noise_sigma"]) if rule in GT_FREE_RULES else {}
            result = run_once(solver, params, self.problem(split), oracle=rule == "oracle", **extra, **kwargs)
            self.cache.put(key, result)
            print(f"    {np.mean(result['psnr']):.2f} dB, {result['nfe']} NFE, {result['seconds']:.0f} s", flush=True)
        return result

    def base(self, solver: str) -> dict:
        return preset_params(solver, self.task["solver_task"], self.task["noise_sigma"])

    def paper_params(self, solver: str) -> dict:
        """The solver's shipped preset as it stands (the papers' defaults; DMILO's own inner budget and
        DMPlug's iteration count included), with the task's noise level where the solver takes one."""
        params = dict(load_solver_preset(task_solver_preset(self.task["solver_task"], solver))["params"])
        for key in ("sigma_y", "sigma_n"):
            if key in params:
                params[key] = self.task["noise_sigma"]
        return params

    def protocol_rows(self, run: bool, solvers: list[str] = SOLVERS,
                      settings: tuple[str, ...] = ("tuned", "paper")) -> dict[str, dict]:
        """The paper's protocol, measured on the test split: per solver, one run recording the oracle
        (:func:`run_once`) at the validation-frozen setting (``"<solver>"``) and one at the paper
        default (``"<solver> paper"``, the same run where the two settings agree). Each result has the
        final iterate's ``psnr`` and the ``oracle_psnr``; missing ones are run with ``run``."""
        rows = {}
        for solver in solvers:
            chosen = self.chosen(solver, run=False)
            candidates = {"tuned": (solver, chosen), "paper": (f"{solver} paper", self.paper_params(solver))}
            for label, params in (candidates[s] for s in settings):
                if params is None:
                    continue
                result = self.cached_or_run("test", solver, params, rule="oracle", run=run)
                if result is not None:
                    rows[label] = {**result, "params": params}
        return rows

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
