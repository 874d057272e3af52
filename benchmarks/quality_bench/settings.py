"""The quality benchmark's tasks, priors, solver order, budgets and rule constants."""
from __future__ import annotations

from common import REPO

from monai_dmilo.solvers import SOLVERS as SOLVER_CLASSES  # noqa: E402

FASHION = REPO / "configs" / "models" / "fashion_mnist_32.yaml"
BRAIN = REPO / "configs" / "models" / "brain_mri_32.yaml"
BRAIN_HELDOUT = REPO / "data_cache" / "brain_mri" / "heldout"
BRAIN_SAMPLES = REPO / "bundle" / "sample_images" / "brain_mri"
CT_HEAD = REPO / "configs" / "models" / "ct_head_32.yaml"
CT_HELDOUT = REPO / "data_cache" / "ct_head"   # validation/ and test/: the held-out slab's slices, in HU
OUT_DIR = REPO / "docs" / "benchmarks" / "quality"
REPORT = REPO / "docs" / "benchmarks" / "quality.md"

#: benchmark task -> the prior it runs on. ``ct`` (brain MRI slices, brain prior) is the record from
#: before the CT prior existed; ``ct_head`` is the same task preset on held-out head CT slices with the
#: CT prior, ``ct_head_brain_prior`` the same CT slices with the brain prior (what the prior buys)
TASKS = {"inpainting": FASHION, "sr4": FASHION, "gaussian_blur": FASHION, "motion_blur": FASHION,
         "mri": BRAIN, "ct": BRAIN, "ct_head": CT_HEAD, "ct_head_brain_prior": BRAIN}
#: benchmark task -> its ``configs/tasks`` preset, where the names differ
TASK_PRESETS = {"ct_head": "ct", "ct_head_brain_prior": "ct"}
#: the benchmark tasks whose frozen settings become the bundle's validated presets (one per prior and
#: task preset: not ``ct_head_brain_prior``, the brain prior on CT slices, which ``ct`` covers)
PRESET_TASKS = ["inpainting", "sr4", "gaussian_blur", "motion_blur", "mri", "ct", "ct_head"]
#: the tasks on the held-out head CT slices (12 validation and 12 test slices: their most per split)
CT_TASKS = {"ct_head": 12, "ct_head_brain_prior": 12}
#: solver -> (knob, multiplicative factors around its preset value), from the solver classes
#: (``Solver.tuning_knob`` / ``tuning_factors``); no knob or no factors: nothing to tune on a grid
GRIDS: dict[str, tuple[str | None, tuple[float, ...]]] = {
    name: (cls.tuning_knob, tuple(cls.tuning_factors)) for name, cls in SOLVER_CLASSES.items()}
#: solvers whose grid grows past a winning edge (not DDRM's eta, bounded by 1: ``tuning_extendable``)
EXTENDABLE = {name for name, cls in SOLVER_CLASSES.items() if cls.tuning_knob and cls.tuning_extendable}
EDGE_STEPS = 2
#: solvers whose results changed with the code since runs were cached: their cache keys carry the
#: revision (``ddrm#2``), so older runs are never reused. ddrm 2: noise drawn in image space, then
#: rotated (the sample no longer depends on the SVD's basis, i.e. on the thread count), 2026-12-07
REVISIONS = {"ddrm": 2}
#: the order of the runs: cheap solvers first, so that an interrupted benchmark has the most rows
SOLVERS = ["pseudo_inverse", "tv", "ddrm", "diffpir", "pigdm", "dmilo", "dmilo_pgd", "reddiff", "daps", "dmplug", "dps"]
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
