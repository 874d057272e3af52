"""Every solver on every task, tuned on a validation split and reported on a disjoint test split.

Tasks (measurements exactly as the bundle simulates them, from ``configs/tasks/<task>.yaml``):
``inpainting``, ``sr4``, ``gaussian_blur``, ``motion_blur`` on the shipped Fashion-MNIST prior and
``mri``, ``ct`` on the shipped brain prior (``ct`` on brain MRI slices: the record from before the CT
prior); ``ct_head``: the ``ct`` task on held-out head CT slices with the shipped CT prior, and
``ct_head_brain_prior``: the same slices with the brain prior (what the CT prior buys).

Images (never the shipped sample images; ``--count`` per split, default 16):

* Fashion-MNIST: the test split of ``scripts/prepare_data.py``, every 311th PNG, validation from
  index 7, test from index 8 (disjoint: the starts differ modulo the stride).
* Brain: slices of the held-out ITK subject (``data_cache/brain_mri/heldout``, never trained on),
  validation the slices ``k % 4 == 0``, test ``k % 4 == 2``, each ``--count`` spread evenly over
  the three orientations' stacks.
* Head CT: the held-out axial slab of ``Cranium.inv3`` (``data_cache/ct_head``, never trained on;
  ``scripts/prepare_data.py``): its 12 validation and 12 test slices (``--count`` at most 12 there),
  windowed [-1000, 1000] HU -> [-1, 1] as the CT prior's training data was.

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

The package, one job a module: :mod:`.settings` (tasks, priors, budgets, the rule's constants),
:mod:`.problems` (image splits, simulated measurements, the benchmark's SSIM and LPIPS),
:mod:`.cache` (the cross-process run cache), :mod:`.rule` (runs and the validation rule:
:class:`~.rule.TaskBench`), :mod:`.report` (tables, README, plots, panels) and :mod:`.plan` (what is
still missing). ``benchmarks/quality.py`` is the command line.
"""
