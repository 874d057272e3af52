"""The report: per-task tables, the overview and verdict, README's tables, the plot and panels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common import markdown_table, paired, paired_psnr, replace_between_markers, save_plot

from . import __doc__ as PROTOCOL  # the protocol paragraph of the report
from .rule import TaskBench, mean_psnr
from .settings import CHEAP_NFE, GRIDS, OUT_DIR, PANEL_IMAGES, README_MARKERS, REPORT, SOLVERS, TASKS


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


#: the rows of DMILO's / DMILO-PGD's validation-chosen option (benchmarks/dmilo_options.py)
OPTION_LABELS = {"dmilo": "dmilo (chosen option)", "dmilo_pgd": "dmilo_pgd (chosen option)"}


def option_rows(bench: TaskBench) -> dict[str, dict]:
    """Test rows of DMILO's and DMILO-PGD's option chosen on validation, where it is not the base setting."""
    from .presets import options_pick

    rows = {}
    for solver, label in OPTION_LABELS.items():
        picked = options_pick(bench, solver)
        if picked is not None and picked[1] != bench.chosen(solver, run=False):
            rows[label] = {**picked[2], "params": picked[1], "option": picked[0]}
    return rows


def overview(all_rows: dict[str, dict[str, dict]]) -> str:
    """One table: per task, every solver's test PSNR (NFE), the best in bold."""
    tasks = [t for t in TASKS if all_rows.get(t)]
    labels = [*SOLVERS, "dmilo + inner discrepancy", "dmilo_pgd + discrepancy", "dmplug + discrepancy",
              *OPTION_LABELS.values()]
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
    and where DMILO-PGD and DMILO as shipped stand (paired difference to the winner, rank among the solvers)."""
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

        def standing(solver: str) -> str:
            """The solver's shipped default (its chosen option where one exists), paired to the winner,
            ranked among the solvers (each solver's base setting; the option row replaces its own)."""
            label = OPTION_LABELS[solver] if OPTION_LABELS[solver] in rows else solver
            if label not in rows:
                return "-"
            field = [label, *(other for other in rows if other in SOLVERS and other != solver)]
            rank = sorted(field, key=lambda other: -mean_psnr(rows[other])).index(label) + 1
            text = f"{np.mean(rows[label]['psnr']):.2f}"
            if label == ranked[0]:
                text += ", wins"
            else:
                text += f": {paired_psnr(rows[label], winner)}, {rank} of {len(field)}"
            return text + (f" ({rows[label]['option']})" if label != solver else "")

        complete = all(s in rows for s in SOLVERS)
        lines.append([t if complete else f"{t} (partial)", f"**{cost(ranked[0])}**",
                      best_where(lambda r: 0 < r["nfe"] <= CHEAP_NFE), best_where(lambda r: r["nfe"] == 0),
                      standing("dmilo_pgd"), standing("dmilo")])
    return markdown_table(["task", "winner: test PSNR dB (NFE, s / image)", f"best at <= {CHEAP_NFE} NFE",
                           "best without a network", "DMILO-PGD as shipped: PSNR, - winner (± s.e.), rank",
                           "DMILO as shipped: PSNR, - winner (± s.e.), rank"], lines)


#: the baselines of the paper's comparison (diffusion solvers other than DMILO)
BASELINES = ["ddrm", "diffpir", "pigdm", "reddiff", "daps", "dps", "dmplug"]


def _oracle_cells(r: dict | None) -> tuple[str, str]:
    if r is None:
        return "-", "-"
    return f"{np.mean(r['psnr']):.2f}", f"{np.mean(r['oracle_psnr']):.2f}"


def _protocol_paragraph(gaps: np.ndarray, pgd_validated: int = 0) -> str:
    """How much of the paper's DMILO-PGD lead the two protocol differences explain, from ``gaps``
    (tasks x [PGD oracle gain, best baseline's tuning gain, paper-protocol gap, honest gap], dB);
    ``pgd_validated``: tasks where DMILO-PGD's paper-setting row is missing (its validated one stands in)."""
    oracle, tuning, paper_gap, honest = gaps.T

    def span(v):
        return f"{v.mean():+.2f} dB on average ({v.min():+.2f} to {v.max():+.2f})"

    ahead = int((paper_gap > 0).sum())
    return (f"How the gap splits: the honest gap (PGD final - best validated baseline) is {span(honest)}. It equals "
            f"the paper-protocol gap minus two terms: the oracle's gain to DMILO-PGD, {span(oracle)}, and the "
            f"validation tuning's gain to the best baseline, {span(tuning)}. Under the paper's protocol the gap "
            f"is {span(paper_gap)}: DMILO-PGD leads on {ahead} of {len(paper_gap)} tasks. The protocol thus "
            f"explains {oracle.mean() + tuning.mean():.2f} dB of the honest gap on average, but not the paper's "
            "1-8 dB lead, which must come from other differences (the paper's 256 x 256 ADM priors against this "
            "project's 32 x 32 priors above all"
            + (f"; on {pgd_validated} task(s) DMILO-PGD's paper setting, whose row is missing)." if pgd_validated else ")."))


def protocol_section(benches: list[TaskBench]) -> str:
    """The paper's protocol measured on the test split: per task, every solver's final iterate and the
    oracle (best-PSNR recorded iterate, per image) at the validated and at the paper-default setting,
    then how much of the paper's DMILO-vs-baselines gap each part explains."""
    out, summary, gaps = [], [], []
    stand_ins = 0  # tasks where DMILO-PGD's validated row stands in for its missing paper row
    for bench in benches:
        rows = bench.protocol_rows(run=False)
        if not rows:
            continue
        table = []
        for solver in SOLVERS:
            tuned, paper = rows.get(solver), rows.get(f"{solver} paper")
            if tuned is None and paper is None:
                continue
            setting = "-" if paper is None else (_settings(solver, paper["params"], bench.base(solver))
                                                 if GRIDS[solver][0] else "preset")
            table.append([solver, *_oracle_cells(tuned), setting, *_oracle_cells(paper)])
        out.append(f"### {bench.name}\n\n" + markdown_table(
            ["solver", "validated: final", "validated: oracle", "paper default: setting", "paper default: final",
             "paper default: oracle"], table))
        pgd = rows.get("dmilo_pgd paper") or rows.get("dmilo_pgd")
        base_paper = [(b, rows[f"{b} paper"]) for b in BASELINES if f"{b} paper" in rows]
        base_tuned = [(b, rows[b]) for b in BASELINES if b in rows]
        if pgd is None or not base_paper or not base_tuned:
            continue
        best_paper = max(base_paper, key=lambda br: np.mean(br[1]["psnr"]))
        best_tuned = max(base_tuned, key=lambda br: np.mean(br[1]["psnr"]))
        pgd_final, pgd_oracle = np.mean(pgd["psnr"]), np.mean(pgd["oracle_psnr"])
        paper_best, tuned_best = np.mean(best_paper[1]["psnr"]), np.mean(best_tuned[1]["psnr"])
        stand_in = "dmilo_pgd paper" not in rows
        stand_ins += stand_in
        gaps.append((pgd_oracle - pgd_final, tuned_best - paper_best, pgd_oracle - paper_best, pgd_final - tuned_best))
        summary.append([
            bench.name + (" (PGD validated)" if stand_in else ""),
            f"{pgd_final:.2f}", f"{pgd_oracle:.2f}", f"{gaps[-1][0]:+.2f}",
            f"{best_paper[0]} {paper_best:.2f}", f"{best_tuned[0]} {tuned_best:.2f}", f"{gaps[-1][1]:+.2f}",
            f"{gaps[-1][2]:+.2f}", f"{gaps[-1][3]:+.2f}", f"{len(base_paper)} / {len(BASELINES)}"])
    if not out:
        return ""
    head = ("## The paper's protocol, measured\n\n"
            "`python benchmarks/quality.py --protocol` reruns each solver on the test split at its validated "
            "setting and at its paper default (the shipped family preset as it stands: the baselines' papers' "
            "values, DMILO's own inner budget) with every recorded iterate scored against the ground truth. "
            "*final* is the returned image; *oracle* is, per image, the best PSNR over every iterate the solver "
            "records (each step's estimate for the stepwise solvers; DMILO-PGD's projections and gradient "
            "iterates X'), the number the reference code reports (`argmax(psnrs)`). The oracle reads the ground "
            "truth: it is a column of its own and never chooses a setting, a preset or a winner. The validated "
            "finals reproduce the tables above (same seeds).\n\n")
    if summary:
        head += ("Per task: DMILO-PGD (paper setting where run, else validated) final and oracle, the best baseline "
                 "at its paper default and at its validated setting (final iterates), and the gaps: the paper's "
                 "protocol (PGD oracle - best paper-default baseline) against the honest one (PGD final - best "
                 "validated baseline).\n\n" + markdown_table(
                     ["task", "PGD final", "PGD oracle", "oracle gain", "best baseline, paper default",
                      "best baseline, validated", "tuning gain", "gap: paper protocol", "gap: honest",
                      "baselines run"], summary)
                 + "\n\n" + _protocol_paragraph(np.array(gaps), stand_ins)
                 + "\n\n")
    return head + "\n\n".join(out) + "\n"


def update_readme(all_rows: dict[str, dict[str, dict]], path: Path) -> None:
    """Replace the text between README's :data:`README_MARKERS` with the verdict and the overview tables."""
    body = ("Who wins at what cost (test split; seconds per image on one CPU thread, each from its own cached run, "
            "made at whatever load the machine had then; the options table below times the chosen DMILO settings "
            "and RED-diff together):\n\n" + verdict(all_rows)
            + "\n\nEvery solver (test PSNR dB, NFE per image in brackets; the best per task in bold):\n\n"
            + overview(all_rows))
    replace_between_markers(path, README_MARKERS, body)


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
        all_rows[bench.name] = {**rows, **option_rows(bench)}
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
            f"Machine: {machine()}\n\n{PROTOCOL.split('Every run is cached')[0].strip()}\n\n"
            f"{ssim_note} {lpips} Wall seconds are one CPU thread, batches of {benches[0].count if benches else 16} images, "
            "with another benchmark process on the second core; compare them within a task.\n\n"
            "## All tasks (test split)\n\n" + verdict(all_rows) + "\n\n" + overview(all_rows) + f"\n\n![test PSNR against NFE]({REPORT.with_suffix('.png').name})\n\n"
            + (f"Tasks not finished yet: {', '.join(missing)}.\n\n" if missing else "")
            + protocol_section(benches) + "\n"
            + "## Per task\n\n" + "\n\n".join(sections) + "\n")
    REPORT.write_text(text)
    print(f"wrote {REPORT}")
    return all_rows
