"""DMILO's inner iterations M on the brain MRI validation split of ``benchmarks/quality.py``.

Compares ``num_inner`` values with the cached M = 20 run of the quality benchmark (the same 16
held-out ITK slices, masks, noise and seeds; DMILO's MRI preset at the 5-outer budget), paired
per image. Validation split only: the test split is never touched. Runs share the quality
benchmark's cache, so what either has run is not run again.

    python benchmarks/validation_mri_num_inner.py 100
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_bench.rule import TaskBench  # noqa: E402


def main(values: list[int]) -> None:
    bench = TaskBench("mri", 16)
    base = bench.base("dmilo")
    reference = bench.cache.get(bench.key("validation", "dmilo", base))
    if reference is None:
        raise SystemExit("the M = 20 validation run is not cached; run python benchmarks/quality.py --tasks mri first.")
    for m in values:
        result = bench.cached_or_run("validation", "dmilo", {**base, "num_inner": m})   # shares quality's cache
        diff = np.array(result["psnr"]) - np.array(reference["psnr"])
        print(f"M={m}: {np.mean(result['psnr']):.2f} dB (M=20: {np.mean(reference['psnr']):.2f}); paired "
              f"{diff.mean():+.2f} ± {diff.std(ddof=1) / len(diff) ** 0.5:.2f}, {int((diff > 0).sum())}/{len(diff)} better, "
              f"{result['nfe']} NFE, {result['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("num_inner", nargs="*", type=int, default=[100], help="values of M to run (default 100)")
    main(parser.parse_args().num_inner)
