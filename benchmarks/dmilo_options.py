"""DMILO's ground-truth-free options on the quality benchmark's tasks, chosen on validation.

For DMILO and DMILO-PGD on each task, the quality benchmark's frozen setting (``TaskBench.chosen``)
is the base; each option (:func:`options`, docs/algorithms.md section 13) is added to it and run on
the validation split; then the two best options that beat the base are combined. The setting with
the highest mean validation PSNR (the base included) is frozen and run once on the test split, next
to the base's cached test run, RED-diff (the benchmark's winner) and TV. Runs share the quality
benchmark's cache (``docs/benchmarks/quality/<task>.json``), so nothing finished is redone.

    python benchmarks/dmilo_options.py                                   # every task (hours on CPU)
    python benchmarks/dmilo_options.py --tasks gaussian_blur --solvers dmilo_pgd
    python benchmarks/dmilo_options.py --report_only --readme            # docs/benchmarks/dmilo_options.md, README
    python benchmarks/dmilo_options.py --timing 4                        # wall time of the picks and RED-diff, together
    python benchmarks/dmilo_options.py --timing 4 --time_only budget     # the same for the budget pick alone
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from common import REPO, markdown_table, paired_psnr, replace_between_markers

from quality_bench.rule import TaskBench, mean_psnr, run_once

TASKS = ["gaussian_blur", "motion_blur", "ct_head", "sr4", "mri", "inpainting"]
REPORT = REPO / "docs" / "benchmarks" / "dmilo_options.md"
#: seconds per image of the chosen settings and the budget pick, each beside RED-diff's, timed in one process (:func:`time_picks`)
TIMING = REPO / "docs" / "benchmarks" / "dmilo_options_timing.json"
#: the budget options, name -> (RED-diff's steps, the fraction of the frozen inner iterations M kept): RED-diff's
#: forward-only evaluations plus a one-outer DMILO sweep, meant to cost no more wall time than RED-diff's
#: frozen setting (999 steps); --timing checks that
BUDGETS = {"budget: RED-diff 250 steps, 1 outer + refine 10": (250, 1.0),
           "budget: RED-diff 500 steps, 1 outer of M/2 + refine 10": (500, 0.5)}


#: options defined in docs/algorithms.md section 13 but left out of this study for CPU time (each is one
#: validation run per task and solver); the report lists them as not run
NOT_RUN = {
    "dmilo_pgd": ["refine 50 (auto step)", "lr_z x 0.5", "lr_z x 2"],
    "dmilo": ["refine 50 (auto step)", "warm start: TV"],
}


def options(bench: TaskBench, solver: str) -> dict[str, dict]:
    """Option name -> the parameters it adds to the frozen setting (all ground-truth free)."""
    sigma = bench.task["noise_sigma"]
    tv = bench.chosen("tv", run=False)
    tv_start = {"warm_start": {"solver": "tv", "params": tv}} if tv else None
    red = bench.chosen("reddiff", run=False)
    out = {"refine 10 (auto step)": {"refine": {"steps": 10, "lr": "auto"}},
           # a refiner of TV's estimate: one outer iteration from it (a fifth of the NFE), less time to drift away
           "warm start: TV, 1 outer": {**tv_start, "num_outer": 1} if tv_start else None,
           # the same refiner of the benchmark's winner (RED-diff's time plus a one-outer DMILO)
           "warm start: RED-diff, 1 outer": {"warm_start": {"solver": "reddiff", "params": red}, "num_outer": 1}
           if red else None}
    # the same refiner on fewer RED-diff steps (and inner iterations), to fit in RED-diff's own wall time
    inner_base = bench.chosen(solver, run=False)["num_inner"]
    for name, (steps, inner) in BUDGETS.items():
        out[name] = {"warm_start": {"solver": "reddiff", "params": {**red, "num_steps": steps}}, "num_outer": 1,
                     "num_inner": max(1, round(inner * inner_base)), "refine": {"steps": 10, "lr": "auto"}} if red else None
    if solver == "dmilo_pgd":
        out.update({
            "output X'": {"output": "gradient"},
            "output by discrepancy": {"output": "discrepancy", "output_params": {"sigma": sigma, "tau": 1.0}},
            "warm start: TV": tv_start,
        })
    return {k: v for k, v in out.items() if v is not None}


def validation_rows(bench: TaskBench, solver: str, run: bool, only: list[str] | None = None) -> list[tuple[str, dict, dict | None]]:
    """``[(name, params, validation result)]``: the base, each option, then the best two combined
    (``only``: run just these options now, the others only where cached)."""
    base = bench.chosen(solver, run=False)
    if base is None:
        return []
    rows = [("base (frozen setting)", base, bench.cached_or_run("validation", solver, base, run=run))]
    for name, extra in options(bench, solver).items():
        params = {**base, **extra}
        rows.append((name, params, bench.cached_or_run("validation", solver, params,
                                                       run=run and (only is None or name in only))))
    if any(r is None for _, _, r in rows):
        return rows
    better = sorted((r for r in rows[1:] if mean_psnr(r[2]) > mean_psnr(rows[0][2])), key=lambda r: -mean_psnr(r[2]))

    def changed(params: dict) -> dict:
        return {k: v for k, v in params.items() if base.get(k) != v}

    # the best two options that change different parameters (e.g. an output rule and a warm start), combined
    pair = next(((a, b) for i, a in enumerate(better) for b in better[i + 1:]
                 if set(changed(a[1])).isdisjoint(changed(b[1]))), None)
    if pair is not None:
        params = {**base, **changed(pair[0][1]), **changed(pair[1][1])}
        rows.append((f"{pair[0][0]} + {pair[1][0]}", params, bench.cached_or_run("validation", solver, params, run=run)))
    return rows


def chosen(rows: list[tuple[str, dict, dict | None]]) -> tuple[str, dict] | None:
    if not rows or any(r is None for _, _, r in rows):
        return None
    name, params, _ = max(rows, key=lambda r: mean_psnr(r[2]))
    return name, params


def run_task(bench: TaskBench, solvers: list[str], run: bool, only: list[str] | None = None) -> dict:
    """Validation rows, the chosen option and its test result, per solver."""
    out = {}
    for solver in solvers:
        rows = validation_rows(bench, solver, run, only)
        pick = chosen(rows)
        test = None if pick is None else bench.cached_or_run("test", solver, pick[1], run=run)
        out[solver] = {"rows": rows, "pick": pick, "test": test}
    return out


def run_budget(bench: TaskBench, results: dict, run: bool) -> dict | None:
    """Within RED-diff's wall time: of the :data:`BUDGETS` options for DMILO and DMILO-PGD, the one with the
    highest validation PSNR, and its test result: ``{"solver", "option", "params", "validation", "test"}``;
    None until every budget row of both solvers is cached."""
    found = {(solver, name): row for solver, res in results.items() for name, *row in res["rows"] if name in BUDGETS}
    if set(results) != {"dmilo", "dmilo_pgd"} or len(found) != 2 * len(BUDGETS) \
            or any(validation is None for _, validation in found.values()):
        return None
    solver, option = max(found, key=lambda key: mean_psnr(found[key][1]))
    params, validation = found[solver, option]
    return {"solver": solver, "option": option, "params": params, "validation": validation,
            "test": bench.cached_or_run("test", solver, params, run=run)}


def _s_per_image(result: dict) -> float:
    return result["seconds"] / len(result["psnr"])


def time_picks(task_names: list[str], count: int, images: int, keys: tuple[str, ...] = ("dmilo_pgd", "dmilo", "budget")) -> dict:
    """Wall time on equal terms: RED-diff's frozen setting, then each solver's chosen setting and the budget pick
    (:func:`run_budget`) of ``keys``, back to back on one thread in this process on ``images`` test images.
    Written to :data:`TIMING` per task as ``{key: {"params", "seconds_per_image", "reddiff_params",
    "reddiff_seconds_per_image"}}``, each entry with the RED-diff time measured beside it (the cached runs' times
    come from runs made at other loads); entries of keys not timed now are kept."""
    torch.set_num_threads(1)
    timing = json.loads(TIMING.read_text()) if TIMING.is_file() else {}
    for name in task_names:
        bench = TaskBench(name, count)
        results = run_task(bench, ["dmilo_pgd", "dmilo"], run=False)
        settings = {solver: (solver, res["pick"][1]) for solver, res in results.items() if res["pick"] is not None}
        budget = run_budget(bench, results, run=False)
        if budget is not None:
            settings["budget"] = (budget["solver"], budget["params"])
        settings = {key: value for key, value in settings.items() if key in keys}
        if not settings:
            continue
        problem = TaskBench(name, images).problem("test")
        red = bench.chosen("reddiff", run=False)
        red_seconds = round(run_once("reddiff", red, problem)["seconds"] / len(problem["seeds"]), 2)
        print(f"{name} reddiff: {red_seconds:.1f} s / image", flush=True)
        row = timing.setdefault(name, {})
        for key, (solver, params) in settings.items():
            seconds = round(run_once(solver, params, problem)["seconds"] / len(problem["seeds"]), 2)
            row[key] = {"solver": solver, "params": params, "seconds_per_image": seconds,
                        "reddiff_params": red, "reddiff_seconds_per_image": red_seconds, "images": len(problem["seeds"])}
            print(f"{name} {key} ({solver}): {seconds:.1f} s / image", flush=True)
        TIMING.write_text(json.dumps(timing, indent=1) + "\n")
    return timing


def timed(task: str, key: str, params: dict, reddiff_params: dict) -> tuple[float, float] | None:
    """``(seconds per image, RED-diff's beside it)`` of ``params`` from :data:`TIMING` (``key``: a solver or
    ``"budget"``), or None where that setting, or RED-diff's, is not the one timed."""
    entry = (json.loads(TIMING.read_text()) if TIMING.is_file() else {}).get(task, {}).get(key)
    if not entry or entry["params"] != params or entry["reddiff_params"] != reddiff_params:
        return None
    return entry["seconds_per_image"], entry["reddiff_seconds_per_image"]


def timing_cell(bench: TaskBench, key: str, params: dict) -> str:
    """The tables' last column: ``"<setting's s> / <RED-diff's s>"`` per image as timed together, or "not timed"."""
    seconds = timed(bench.name, key, params, bench.chosen("reddiff", run=False))
    return "not timed" if seconds is None else f"{seconds[0]:.1f} / {seconds[1]:.1f}"


SUMMARY_HEAD = ["task", "solver", "chosen option (validation)", "base test dB", "chosen test dB",
                "- RED-diff (± s.e.)", "- TV (± s.e.)", "NFE (chosen / RED-diff)", "s / image, timed together (chosen / RED-diff)"]
README_MARKERS = ("<!-- options-table-start -->", "<!-- options-table-end -->")


def summary_row(bench: TaskBench, solver: str, res: dict, tests: dict) -> list[str]:
    """One test-split row: the chosen option against the base, RED-diff and TV on the same images."""
    test, red, tv = res["test"], tests["reddiff"], tests["tv"]
    return [bench.name, solver, res["pick"][0], f"{np.mean(tests[solver]['psnr']):.2f}", f"{np.mean(test['psnr']):.2f}",
            paired_psnr(test, red), paired_psnr(test, tv), f"{test['nfe']} / {red['nfe']}",
            timing_cell(bench, solver, res["pick"][1])]


BUDGET_HEAD = ["task", "solver", "budget option (validation)", "validation dB", "test dB", "- RED-diff (± s.e.)", "- TV (± s.e.)",
               "NFE (budget / RED-diff)", "s / image, timed together (budget / RED-diff)"]


def budget_row(bench: TaskBench, budget: dict, tests: dict) -> list[str]:
    """One test-split row of the budget pick (:func:`run_budget`) against RED-diff and TV on the same images."""
    test, red = budget["test"], tests["reddiff"]
    return [bench.name, budget["solver"], budget["option"], f"{mean_psnr(budget['validation']):.2f}", f"{np.mean(test['psnr']):.2f}",
            paired_psnr(test, red), paired_psnr(test, tests["tv"]), f"{test['nfe']} / {red['nfe']}",
            timing_cell(bench, "budget", budget["params"])]


def report(task_names: list[str], count: int) -> tuple[str, str]:
    """The full report and its test-split summary table (empty while no test run is cached)."""
    lines = ["# DMILO's ground-truth-free options (validation-chosen, test-reported)", "",
             "Command: `python benchmarks/dmilo_options.py`", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Options (docs/algorithms.md section 13): `refine K` = K data-fit gradient steps on the output, step "
             "1 / (2 ||A||^2); `warm start: TV` = DMILO started from TV's estimate (the benchmark's frozen TV setting, "
             "its chain made to regenerate it), `warm start: TV, 1 outer` the same with one "
             "outer iteration instead of the frozen setting's, `warm start: RED-diff, 1 outer` the same from the "
             "benchmark's frozen RED-diff setting (its NFE and time included), `budget: ...` the same from RED-diff "
             "run for 250 or 500 of its 999 steps (the latter with half the inner iterations), plus `refine 10`, meant "
             "to fit in RED-diff's own wall time; DMILO-PGD `output X'` = the gradient iterate instead of the "
             "projection, `output by discrepancy` = per image, the projection where it fits y to the noise level, "
             "else X'. Defined but not run in this study, for CPU time (one 16-image validation run each per task): "
             + "; ".join(f"{solver}: {', '.join(names)}" for solver, names in NOT_RUN.items()) + ".", ""]
    summary, budget_rows, preamble = [], [], len(lines)
    for name in task_names:
        bench = TaskBench(name, count)
        results = run_task(bench, ["dmilo_pgd", "dmilo"], run=False)
        tests = bench.test_rows(run=False, solvers=["reddiff", "tv", "dmilo", "dmilo_pgd"])
        lines += [f"## {name}", ""]
        for solver, res in results.items():
            rows = [r for r in res["rows"] if r[2] is not None]
            if not rows:
                continue
            base_val = mean_psnr(rows[0][2])
            table = [[n, f"{mean_psnr(r):.2f}", f"{mean_psnr(r) - base_val:+.2f}", str(r["nfe"]), f"{_s_per_image(r):.1f}"]
                     for n, _, r in rows]
            lines += [f"### {solver}", "", markdown_table(["option", "validation PSNR dB", "- base", "NFE / image",
                                                           "s / image"], table), ""]
            if res["pick"] is not None and res["test"] is not None and {solver, "reddiff", "tv"} <= set(tests):
                lines += [f"Chosen on validation: **{res['pick'][0]}**; test {np.mean(res['test']['psnr']):.2f} dB "
                          f"against the base's {np.mean(tests[solver]['psnr']):.2f} "
                          f"({paired_psnr(res['test'], tests[solver])}).", ""]
                summary.append(summary_row(bench, solver, res, tests))
        budget = run_budget(bench, results, run=False)
        if budget is not None and budget["test"] is not None and {"reddiff", "tv"} <= set(tests):
            budget_rows.append(budget_row(bench, budget, tests))
    table = markdown_table(SUMMARY_HEAD, summary) if summary else ""
    if budget_rows:
        table += ("\n\nWithin RED-diff's wall time (of the two budget options for the two solvers, the one with the best "
                  "validation PSNR):\n\n"
                  + markdown_table(BUDGET_HEAD, budget_rows))
    if summary:
        lines[preamble:preamble] = ["## Summary (test split)", "", "Differences are per-image means on the same test images (16; 12 on head CT) "
                        "(negative: the chosen DMILO loses). The last column times each chosen setting and RED-diff's back to back "
                        "on one thread in one process (`python benchmarks/dmilo_options.py --timing 4`, on 4 test images, "
                        f"{TIMING.name}; each setting beside its own RED-diff run): a warm start from RED-diff's full run costs "
                        "RED-diff's time plus DMILO's, so only the budget options can be faster.", "", table, ""]
    return "\n".join(lines) + "\n", table


def update_readme(table: str, path=REPO / "README.md") -> None:
    """Replace the text between README's :data:`README_MARKERS` with the summary table."""
    replace_between_markers(path, README_MARKERS, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--solvers", nargs="+", default=["dmilo_pgd", "dmilo"], choices=["dmilo_pgd", "dmilo"])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--report_only", action="store_true")
    parser.add_argument("--readme", action="store_true", help="also rewrite README's options table")
    parser.add_argument("--timing", type=int, default=None, metavar="IMAGES",
                        help="time the chosen settings and RED-diff's together on this many test images, then report")
    parser.add_argument("--time_only", nargs="+", default=["dmilo_pgd", "dmilo", "budget"],
                        choices=["dmilo_pgd", "dmilo", "budget"], help="with --timing: the settings to time (beside RED-diff)")
    parser.add_argument("--only", nargs="+", default=None, metavar="OPTION",
                        help="run just these options now (e.g. \"output X'\"); the test run waits for all of them")
    args = parser.parse_args()
    if args.timing:
        time_picks(args.tasks, args.count, args.timing, tuple(args.time_only))
    elif not args.report_only:
        for name in args.tasks:
            bench = TaskBench(name, args.count)
            results = run_task(bench, args.solvers, run=True, only=args.only)
            for solver, res in results.items():
                test = "-" if res["test"] is None else f"{np.mean(res['test']['psnr']):.2f} dB"
                print(f"{name} {solver}: chosen {res['pick'] and res['pick'][0]}; test {test}", flush=True)
            if set(args.solvers) == {"dmilo", "dmilo_pgd"} and (budget := run_budget(bench, results, run=True)):
                print(f"{name} within RED-diff's time: {budget['solver']}; test {mean_psnr(budget['test']):.2f} dB", flush=True)
    text, table = report(TASKS, args.count)
    REPORT.write_text(text)
    print(f"wrote {REPORT}")
    if args.readme:
        update_readme(table)
        print("rewrote README's options table")


if __name__ == "__main__":
    main()
