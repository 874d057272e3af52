"""The quality benchmark's selection rule (validation grid, winning edges grow, DMILO's budget stage)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from quality_bench import cache, plan, problems, report, rule, settings

# the benchmark's pieces under the names this file has always used
quality = SimpleNamespace(Cache=cache.Cache, README_MARKERS=settings.README_MARKERS, SOLVERS=settings.SOLVERS,
                          TaskBench=rule.TaskBench, seconds_estimate=plan.seconds_estimate,
                          still_rising=rule.still_rising, task_section=report.task_section,
                          update_readme=report.update_readme, verdict=report.verdict)


class FakeBench(quality.TaskBench):
    """A task bench whose runs are a known function of the setting (no solver, no images)."""

    def __init__(self, score, base: dict) -> None:
        self.score, self._base, self.runs = score, base, []

    def base(self, solver: str) -> dict:
        return dict(self._base)

    def cached_or_run(self, split, solver, params, *, rule="final", run=True, **kwargs):
        self.runs.append(dict(params))
        return {"psnr": [self.score(params)]}


def _dmilo_score(best_short: float, best_long: float, long_gain: float):
    """PSNR-like score peaking at ``best_short`` (20 inner) or ``best_long`` (100 inner) in lr_z."""
    def score(p):
        peak, gain = (best_short, 0.0) if p["num_inner"] == 20 else (best_long, long_gain)
        return -abs(math.log(p["lr_z"] / peak)) + gain
    return score


def test_grid_grows_past_a_winning_edge_at_most_two_points():
    # peak at lr_z = 0.16, far above the grid 0.01, 0.02, 0.04: two more points (0.08, 0.16), no more;
    # the long budget loses there, so nothing is re-tuned at it
    bench = FakeBench(_dmilo_score(0.16, 0.16, -0.5), {"lr_z": 0.02, "num_inner": 20, "num_outer": 5})
    chosen = bench.chosen("dmilo", run=True)
    tried = [(p["lr_z"], p["num_inner"]) for p in bench.runs]
    assert tried == [(0.02, 20), (0.01, 20), (0.04, 20), (0.08, 20), (0.16, 20), (0.16, 100)]
    assert chosen == {"lr_z": 0.16, "num_inner": 20, "num_outer": 5}


def test_a_winning_long_budget_has_its_step_re_tuned():
    # 20 inner iterations peak at 0.04 (grid edge: grows to 0.08, which loses); 100 inner ones at 0.01
    bench = FakeBench(_dmilo_score(0.04, 0.01, 2.0), {"lr_z": 0.02, "num_inner": 20, "num_outer": 5})
    chosen = bench.chosen("dmilo", run=True)
    tried = [(p["lr_z"], p["num_inner"]) for p in bench.runs]
    assert tried == [(0.02, 20), (0.01, 20), (0.04, 20), (0.08, 20),
                     (0.04, 100), (0.02, 100), (0.08, 100), (0.01, 100), (0.005, 100)]
    assert chosen == {"lr_z": 0.01, "num_inner": 100, "num_outer": 5}


def test_interior_best_adds_nothing_and_the_short_budget_can_win():
    bench = FakeBench(lambda p: -abs(math.log(p["lr_z"] / 0.02)) - 0.01 * p["num_inner"],
                      {"lr_z": 0.02, "num_inner": 20, "num_outer": 5})
    assert bench.chosen("dmilo", run=True) == {"lr_z": 0.02, "num_inner": 20, "num_outer": 5}
    assert [p["lr_z"] for p in bench.runs] == [0.02, 0.01, 0.04, 0.02]     # grid, then M = 100 at the best


def test_low_edge_grows_down_and_a_diverged_point_never_wins():
    # best at the lowest value; the point below diverges (NaN), so growth stops there
    bench = FakeBench(lambda p: math.nan if p["lam"] < 0.2 else -p["lam"], {"lam": 1.0})
    assert bench.chosen("reddiff", run=True) == {"lam": 0.3}
    assert [p["lam"] for p in bench.runs] == [1.0, 0.3, 3.0, pytest.approx(0.09)]


def test_bounded_knob_does_not_grow():
    bench = FakeBench(lambda p: p["eta"], {"eta": 0.85})
    assert bench.chosen("ddrm", run=True) == {"eta": pytest.approx(0.9775)}
    assert len(bench.runs) == 3


def test_cache_keeps_what_another_process_wrote(tmp_path):
    path = tmp_path / "task.json"
    first, second = quality.Cache(path), quality.Cache(path)     # two processes, both started empty
    first.put("a", {"psnr": [1.0]})
    second.put("b", {"psnr": [2.0]})
    assert set(quality.Cache(path).data) == {"a", "b"}
    assert first.get("b") == {"psnr": [2.0]}                  # a run the other finished is not redone
    assert first.get("c") is None


def test_a_dry_pass_lists_exactly_the_uncached_runs_of_the_next_stage(tmp_path):
    bench = quality.TaskBench.__new__(quality.TaskBench)
    bench.digest, bench.count, bench.pending = "abc", 16, []
    bench.base = lambda solver: {"lr_z": 0.02, "num_inner": 20, "num_outer": 5}
    bench.cache = quality.Cache(tmp_path / "task.json")
    bench.cache.put(bench.key("validation", "dmilo", bench.base("dmilo")), {"psnr": [20.0], "seconds": 7.0})
    assert bench.chosen("dmilo", run=False) is None
    # the preset is cached; its two grid neighbours are what the next stage runs (nothing at 100 inner yet)
    assert [(s, p["lr_z"], p["num_inner"]) for s, _, _, p in bench.pending] == [
        ("validation", 0.01, 20), ("validation", 0.04, 20)]
    assert quality.TaskBench.solver_and_params(bench.key("test", "dmilo", {"lr_z": 0.5}, "discrepancy")) == (
        "dmilo", {"lr_z": 0.5})
    assert quality.seconds_estimate([bench.cache], "dmilo", {"num_inner": 20}) == 7.0
    assert quality.seconds_estimate([bench.cache], "dmilo", {"num_inner": 100}) is None


def _row(psnr: list[float], nfe: int, seconds: float = 4.0) -> dict:
    return {"psnr": psnr, "nfe": nfe, "seconds": seconds}


def _all_rows() -> dict:
    complete = {s: _row([20.0, 20.0], 10 ** 4) for s in quality.SOLVERS}
    complete.update(reddiff=_row([24.0, 26.0], 999), pigdm=_row([23.0, 23.0], 100), tv=_row([21.0, 22.0], 0),
                    dmilo_pgd=_row([22.0, 23.0], 1518, seconds=80.0))
    return {"mri": complete, "ct": {"tv": _row([30.0, 31.0], 0), "dmilo": _row([29.0, 29.0], 318)}}


def test_verdict_names_the_winner_the_cheap_tier_and_dmilo_pgd_paired_to_the_winner():
    lines = quality.verdict(_all_rows()).splitlines()[2:]
    mri = [c.strip() for c in lines[0].strip("|").split("|")]
    assert mri[0] == "mri"
    assert mri[1] == "**reddiff 25.00 (999 NFE, 2.0 s)**"
    assert mri[2] == "pigdm 23.00 (100 NFE, 2.0 s)"            # best at <= 100 NFE, not the network-free TV
    assert mri[3] == "tv 21.50 (0 NFE, 2.0 s)"
    assert mri[4] == "22.50: -2.50 ± 0.50, 3 of 11"            # differences 2 and 3 to the winner
    assert mri[5].endswith(f"of {len(quality.SOLVERS)}")
    ct = [c.strip() for c in lines[1].strip("|").split("|")]
    assert ct[0] == "ct (partial)" and ct[1].startswith("**tv 30.50") and ct[2] == "-"
    assert ct[4] == "-" and ct[5] == "29.00: -1.50 ± 0.50, 2 of 2"


def test_verdict_ranks_dmilo_as_shipped_with_its_chosen_option_in_place_of_its_base_setting():
    rows = _all_rows()
    rows["mri"][report.OPTION_LABELS["dmilo_pgd"]] = {**_row([24.0, 25.0], 1518), "option": "output X'"}
    mri = [c.strip() for c in quality.verdict(rows).splitlines()[2].strip("|").split("|")]
    # 24.5 dB: behind RED-diff (25.0) only; the base dmilo_pgd row (22.5) is not a competitor
    assert mri[4] == f"24.50: -0.50 ± 0.50, 2 of {len(quality.SOLVERS)} (output X')"


def test_update_readme_rewrites_only_between_the_markers(tmp_path):
    start, end = quality.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{start}\nold table\n{end}\nafter\n")
    quality.update_readme(_all_rows(), readme)
    text = readme.read_text()
    assert text.startswith(f"intro\n{start}\n") and text.endswith(f"{end}\nafter\n")
    assert "old table" not in text and "**reddiff 25.00 (999 NFE, 2.0 s)**" in text and "| dmilo_pgd |" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="must hold"):
        quality.update_readme(_all_rows(), readme)


class SectionBench:
    """What :func:`quality.task_section` reads of a task bench: two test rows, no validation runs."""

    name, task, config = "mri", {"description": "MRI 4x"}, {"name": "brain_mri_32"}

    def __init__(self, lpips: bool) -> None:
        self.rows = {"dmilo_pgd": {**_row([22.0, 23.0], 1518), "ssim": [0.5, 0.6], "images": ["a", "b"],
                                   "params": {"lr_x": 0.5}},
                     "tv": {**_row([21.0, 22.0], 0), "ssim": [0.4, 0.5], "images": ["a", "b"], "params": {"lam": 0.01}}}
        if lpips:
            self.rows["tv"]["lpips"] = [0.25, 0.35]

    def test_rows(self, run: bool) -> dict:
        return self.rows

    def base(self, solver: str) -> dict:
        return {"lr_x": 0.5, "lam": 0.001}

    def validation(self, solver: str, run: bool) -> list:
        return []

    def caveat(self, solver: str) -> None:
        return None


def test_the_lpips_column_appears_only_when_a_run_measured_it():
    without, _ = quality.task_section(SectionBench(lpips=False))
    assert "LPIPS" not in without
    with_lpips, _ = quality.task_section(SectionBench(lpips=True))
    header = next(line for line in with_lpips.splitlines() if line.startswith("| solver"))
    assert "| LPIPS |" in header
    tv = next(line for line in with_lpips.splitlines() if line.startswith("| tv"))
    pgd = next(line for line in with_lpips.splitlines() if line.startswith("| dmilo_pgd"))
    assert "0.300 ± 0.071" in tv and "| - |" in pgd      # a row without LPIPS shows a dash, not a made-up value


def test_lpips_is_none_without_a_model_and_per_image_with_one(monkeypatch):
    x = torch.zeros(2, 1, 8, 8)
    monkeypatch.setattr(problems, "_lpips_model", lambda device: None)
    assert problems.lpips(x, x) is None
    monkeypatch.setattr(problems, "_lpips_model", lambda device: lambda a, b: (a - b).abs().mean((1, 2, 3), keepdim=True))
    reference = torch.stack([torch.zeros(1, 8, 8), torch.full((1, 8, 8), 0.5)])
    assert torch.allclose(problems.lpips(x, reference), torch.tensor([0.0, 0.5]))


def test_caveat_flags_a_flat_grid_a_diverged_grid_and_a_best_at_the_grown_edge():
    flat = FakeBench(lambda p: 20.0 - 0.01 * abs(math.log(p["lam"])), {"lam": 1.0})     # best inside, 0.01 dB
    assert "the knob did not matter" in flat.caveat("reddiff")
    diverged = FakeBench(lambda p: math.nan, {"lam": 1.0})
    assert "every validation point diverged (lam 0.3 to 3)" in diverged.caveat("reddiff")
    rising = FakeBench(lambda p: math.log(p["lam"]), {"lam": 1.0})          # best beyond 3 * 3 * 3
    assert rising.chosen("reddiff", run=True) == {"lam": 27.0}
    assert "the best lam (27) is at the edge of the grid" in rising.caveat("reddiff")
    interior = FakeBench(lambda p: -abs(math.log(p["lam"])), {"lam": 1.0})
    assert interior.caveat("reddiff") is None
    assert FakeBench(lambda p: 1.0, {}).caveat("pseudo_inverse") is None           # nothing to tune, nothing to flag


def test_dmplug_caveat_only_while_its_curve_still_rises():
    rising = {"799": [20.0], "899": [20.5], "999": [21.0], "1000": [21.0]}
    flat = {"799": [20.0], "899": [20.95], "999": [21.0], "1000": [21.0]}
    assert "0.50 dB per 100 iterations" in quality.still_rising(rising)
    assert quality.still_rising(flat) is None
    assert quality.still_rising({"49": [10.0]}) is None          # too short a run to say


def test_the_oracle_is_the_best_recorded_iterate_projections_and_gradient_iterates_included():
    from helpers import mask_problem

    from monai_dmilo.solvers import DMILOPGD

    y, op, generator = mask_problem(batch=3)
    truth = y.clone()  # any reference will do: the oracle is scored against problem["truth"]
    truth[op.mask == 0] = 0.3
    problem = {"truth": truth, "y": y, "operator": op, "generator": generator, "seeds": [1, 2, 3],
               "names": ["a", "b", "c"], "split": "validation"}
    params = {"num_outer": 3, "num_inner": 4, "lr_x": 0.3}
    result = rule.run_once("dmilo_pgd", params, problem, oracle=True)
    scores = []

    def collect(record):
        for key in ("x", "x_prime"):
            scores.append(rule.psnr(record[key].clamp(-1, 1), truth))

    out = DMILOPGD(**params, callback=collect).solve(y, op, generator, seed=[1, 2, 3])
    expected = torch.stack(scores + [rule.psnr(out.x.clamp(-1, 1), truth)]).max(0).values
    assert result["oracle_psnr"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert all(o >= f for o, f in zip(result["oracle_psnr"], result["psnr"]))
    assert len(result["oracle_record"]) == 3


def test_the_options_study_combines_the_two_best_options_that_change_different_settings(monkeypatch):
    import dmilo_options

    base = {"lr_z": 0.02, "num_inner": 20}
    monkeypatch.setattr(dmilo_options, "options", lambda bench, solver: {
        "a": {"output": "gradient"}, "b": {"lr_z": 0.04}, "c": {"refine": {"steps": 1, "lr": "auto"}},
        "d": {"output": "discrepancy"}})
    gains = {"output": {"gradient": 1.0, "discrepancy": 0.9}, "lr_z": {0.04: 0.2}}

    def score(p):
        return sum(gains.get(k, {}).get(v, 0.0) for k, v in p.items() if isinstance(v, (str, float))) \
            - (0.5 if "refine" in p else 0.0)

    bench = FakeBench(score, base)
    bench.chosen = lambda solver, run: dict(base)
    rows = dmilo_options.validation_rows(bench, "dmilo_pgd", run=True)
    names = [name for name, _, _ in rows]
    # a and d both change the output: the pair is a (best) with b, the next option on another setting
    assert names == ["base (frozen setting)", "a", "b", "c", "d", "a + b"]
    assert rows[-1][1] == {"lr_z": 0.04, "num_inner": 20, "output": "gradient"}
    assert dmilo_options.chosen(rows)[0] == "a + b"


def test_protocol_paragraph_splits_the_honest_gap_into_oracle_and_tuning():
    # per task: PGD oracle gain, best baseline's tuning gain, paper-protocol gap, honest gap (= paper - oracle - tuning)
    gaps = torch.tensor([[1.0, 0.5, 0.5, -1.0], [3.0, 1.0, -1.5, -5.5]]).numpy()
    text = report._protocol_paragraph(gaps)
    assert "is -3.25 dB on average (-5.50 to -1.00)" in text  # honest gap
    assert "+2.00 dB on average (+1.00 to +3.00)" in text  # oracle gain
    assert "leads on 1 of 2 tasks" in text
    assert "explains 2.75 dB" in text
    assert "paper setting, whose row is missing" not in text
    assert "on 1 task(s) DMILO-PGD's paper setting, whose row is missing" in report._protocol_paragraph(gaps, 1)


def test_the_options_table_goes_between_its_readme_markers_only(tmp_path):
    import dmilo_options

    readme = tmp_path / "README.md"
    start, end = dmilo_options.README_MARKERS
    readme.write_text(f"before\n{start}\nold table\n{end}\nafter\n")
    dmilo_options.update_readme("| new |", readme)
    assert readme.read_text() == f"before\n{start}\n| new |\n{end}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="options-table-start"):
        dmilo_options.update_readme("| new |", readme)


def test_the_options_timing_is_shown_only_for_the_setting_it_timed_beside_the_reddiff_it_ran_with(tmp_path, monkeypatch):
    import json

    import dmilo_options

    monkeypatch.setattr(dmilo_options, "TIMING", tmp_path / "timing.json")
    red = {"lam": 0.02}
    assert dmilo_options.timed("sr4", "dmilo", {"num_outer": 1}, red) is None  # nothing timed yet
    (tmp_path / "timing.json").write_text(json.dumps({"sr4": {"dmilo": {
        "params": {"num_outer": 1}, "seconds_per_image": 2.5, "reddiff_params": red, "reddiff_seconds_per_image": 4.0}}}))
    assert dmilo_options.timed("sr4", "dmilo", {"num_outer": 1}, red) == (2.5, 4.0)
    assert dmilo_options.timed("sr4", "dmilo", {"num_outer": 5}, red) is None  # the pick changed since: stale
    assert dmilo_options.timed("sr4", "dmilo", {"num_outer": 1}, {"lam": 0.2}) is None  # so did RED-diff's setting
    assert dmilo_options.timed("sr4", "dmilo_pgd", {"num_outer": 1}, red) is None
    assert dmilo_options.timed("mri", "dmilo", {"num_outer": 1}, red) is None


def test_the_budget_pick_is_the_best_validated_budget_option_of_either_solver_and_waits_for_all():
    import dmilo_options

    cheap, half = dmilo_options.BUDGETS

    def results(scores):
        """scores: (solver, option) -> validation PSNR of that budget row (absent: not run yet)."""
        return {solver: {"rows": [("base (frozen setting)", {"num_outer": 5}, {"psnr": [30.0]})] + [
            (name, {"num_outer": 1, "tag": (solver, name)}, {"psnr": [scores[solver, name], scores[solver, name] + 1]}
             if (solver, name) in scores else None) for name in (cheap, half)]} for solver in ("dmilo_pgd", "dmilo")}

    bench = FakeBench(lambda p: 20.0 + p["num_outer"], {})
    scores = {("dmilo_pgd", cheap): 31.0, ("dmilo_pgd", half): 30.0, ("dmilo", cheap): 32.0}
    assert dmilo_options.run_budget(bench, results(scores), run=True) is None  # one row not run yet
    assert bench.runs == []
    budget = dmilo_options.run_budget(bench, results({**scores, ("dmilo", half): 32.5}), run=True)
    assert (budget["solver"], budget["option"]) == ("dmilo", half)
    assert budget["params"] == {"num_outer": 1, "tag": ("dmilo", half)}
    assert budget["validation"]["psnr"] == [32.5, 33.5] and budget["test"] == {"psnr": [21.0]}
    budget = dmilo_options.run_budget(bench, results({**scores, ("dmilo", half): 29.0, ("dmilo_pgd", cheap): 33.0}), run=False)
    assert (budget["solver"], budget["option"]) == ("dmilo_pgd", cheap)


def test_the_budget_options_are_the_reddiff_refiner_on_fewer_reddiff_steps_and_inner_iterations():
    import dmilo_options

    frozen = {"reddiff": {"lam": 0.02, "lr": 0.1, "num_steps": 999}, "tv": None,
              "dmilo": {"num_inner": 100}, "dmilo_pgd": {"num_inner": 20}}
    bench = SimpleNamespace(task={"noise_sigma": 0.01}, chosen=lambda solver, run: frozen[solver])
    for solver in ("dmilo", "dmilo_pgd"):
        found = dmilo_options.options(bench, solver)
        full = found["warm start: RED-diff, 1 outer"]
        for name, (steps, fraction) in dmilo_options.BUDGETS.items():
            budget = found[name]
            assert budget["warm_start"]["params"] == {**full["warm_start"]["params"], "num_steps": steps}
            assert steps < 999 and budget["num_outer"] == full["num_outer"] == 1 and budget["refine"]["steps"] == 10
            assert budget["num_inner"] == round(fraction * frozen[solver]["num_inner"])
        assert [found[name]["num_inner"] for name in dmilo_options.BUDGETS] == (
            [100, 50] if solver == "dmilo" else [20, 10])
