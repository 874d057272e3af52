"""The validated presets: each solver's validation-frozen setting for each shipped prior and task,
written to ``configs/solvers/validated/<prior>/<task>_<solver>.yaml`` for the bundle to run."""
from __future__ import annotations

import numpy as np
import yaml

from monai_dmilo.priors.checkpoints import sha256_of  # noqa: E402
from monai_dmilo.solvers.presets import VALIDATED_DIR  # noqa: E402

from .rule import TaskBench, mean_psnr
from .settings import PRESET_TASKS, SOLVERS, TASK_PRESETS


def options_pick(bench: TaskBench, solver: str) -> tuple[str, dict, dict] | None:
    """DMILO's / DMILO-PGD's option chosen on validation by ``benchmarks/dmilo_options.py`` with its test
    run, ``(name, params, test result)``, once every option's validation run and the test run are cached."""
    if solver not in ("dmilo", "dmilo_pgd"):
        return None
    from dmilo_options import run_task

    result = run_task(bench, [solver], run=False)[solver]
    if result["pick"] is None or result["test"] is None:
        return None
    return (*result["pick"], result["test"])


def preset_text(bench: TaskBench, solver: str, params: dict, sha256: str) -> str:
    """The YAML of one validated preset, its provenance in the header."""
    picked = options_pick(bench, solver)
    if picked is not None:
        name, params, test = picked
        validation = mean_psnr(bench.cached_or_run("validation", solver, params, run=False))
        header = (f"# Written by `python benchmarks/quality.py --write_presets` from docs/benchmarks/quality/{bench.name}.json:\n"
                  f"# {solver}'s option chosen on the validation split by benchmarks/dmilo_options.py ({name}) for the\n"
                  f"# prior {bench.config['name']} on the task {bench.task['name']} (validation {validation:.2f} dB; test "
                  f"{np.mean(test['psnr']):.2f} dB,\n# {test['nfe']} NFE per image; docs/benchmarks/dmilo_options.md).\n"
                  "# A run uses it only on these very weights (prior_sha256); any other prior runs the family preset.\n")
        body = {"solver": solver, "prior": bench.config["name"], "prior_sha256": sha256, "task": bench.task["name"],
                "benchmark_task": bench.name, "option": name, "params": params}
        return header + yaml.safe_dump(body, sort_keys=False)
    validation = max(mean_psnr(r) for p, r in bench.validation(solver, run=False) if r is not None)
    if solver == "dmplug":  # the plateau's iteration count, read from the one traced run
        (_, result), = bench.validation(solver, run=False)
        validation = float(np.mean(result["trace"][str(params["num_iters"])]))
    test = bench.test_rows(run=False, solvers=[solver]).get(solver)
    tested = "" if test is None else (f"; test {np.mean(test['psnr']):.2f} dB on {len(test['psnr'])} held-out images, "
                                       f"{test['nfe']} NFE per image")
    header = (f"# Written by `python benchmarks/quality.py --write_presets` from docs/benchmarks/quality/{bench.name}.json:\n"
              f"# the setting of {solver} the quality benchmark froze on its validation split for the prior\n"
              f"# {bench.config['name']} on the task {bench.task['name']} (validation {validation:.2f} dB{tested}).\n"
              f"# A run uses it only on these very weights (prior_sha256); any other prior runs the family preset.\n")
    body = {"solver": solver, "prior": bench.config["name"], "prior_sha256": sha256, "task": bench.task["name"],
            "benchmark_task": bench.name, "params": params}
    return header + yaml.safe_dump(body, sort_keys=False)


def write_presets(count: int) -> list[str]:
    """Write every frozen setting of :data:`PRESET_TASKS`; returns the files written (stale ones of a
    prior whose weights changed are replaced, and files of solvers no longer frozen are removed)."""
    written = []
    for name in PRESET_TASKS:
        bench = TaskBench(name, count)
        sha256 = sha256_of(bench.config["checkpoint"])
        folder = VALIDATED_DIR / bench.config["name"]
        folder.mkdir(parents=True, exist_ok=True)
        task = TASK_PRESETS.get(name, name)
        for solver in SOLVERS:
            path = folder / f"{task}_{solver}.yaml"
            params = bench.chosen(solver, run=False)
            if params is None:
                path.unlink(missing_ok=True)
                continue
            path.write_text(preset_text(bench, solver, params, sha256))
            written.append(str(path))
    return written
