"""What the benchmark still has to run, with time estimates from the cached runs."""
from __future__ import annotations

import numpy as np

from common import markdown_table

from .cache import Cache
from .rule import TaskBench
from .settings import GRIDS, OUT_DIR, TASKS


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
