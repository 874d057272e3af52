"""Follow one image through the bundle's evaluate workflow and count what it touches.

Runs ``python -m monai.bundle run`` on one shipped sample (a 1 x 1 DMILO budget, so it takes
seconds) under a profiler and prints the ``monai_dmilo`` files whose functions run (imports
excluded) and the call sites between them: distinct (caller function -> callee function) pairs
across files, and across units (a package such as ``handlers/`` counts as one unit).

    python scripts/workflow_walk.py                         # this checkout
    python scripts/workflow_walk.py --config_file bundle/configs/evaluate.yaml   # an older layout
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
from collections import Counter
from pathlib import Path

DEFAULT_CONFIG = "['bundle/configs/common.yaml','bundle/configs/evaluate.yaml']"


def unit(relative: str) -> str:
    """``handlers/savers.py`` -> ``handlers``; ``engines.py`` -> ``engines``."""
    return relative.split("/")[0].removesuffix(".py")


def trace(argv: list[str], root: Path) -> tuple[set[str], set[tuple[str, str, str, str]]]:
    """Run the bundle with ``argv``; return the files that ran and the cross-file call sites."""
    prefix = str(root) + os.sep
    files: set[str] = set()
    sites: set[tuple[str, str, str, str]] = set()

    def profile(frame, event, arg) -> None:
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(prefix):
            return
        if code.co_name.startswith("<") and code.co_name != "<lambda>":
            return  # module bodies, comprehensions
        if frame.f_back is not None and frame.f_back.f_code.co_name == "<module>":
            return  # definitions and decorators run at import time
        files.add(code.co_filename)
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(prefix):
            caller = caller.f_back
        if caller is not None and caller.f_code.co_filename != code.co_filename and caller.f_code.co_name != "<module>":
            sites.add((os.path.relpath(caller.f_code.co_filename, root), caller.f_code.co_name,
                       os.path.relpath(code.co_filename, root), code.co_name))

    sys.argv = ["monai.bundle", *argv]
    sys.setprofile(profile)
    try:
        runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
    except SystemExit as err:
        if err.code not in (0, None):
            raise
    finally:
        sys.setprofile(None)
    return {os.path.relpath(f, root) for f in files}, sites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", default=DEFAULT_CONFIG)
    parser.add_argument("--verbose", action="store_true", help="list every file and call site")
    args = parser.parse_args()
    root = Path("monai_dmilo").resolve()
    with tempfile.TemporaryDirectory() as out:
        files, sites = trace(["run", "--config_file", args.config_file, "--output_dir", out, "--overwrite", "true",
                              "--max_images", "1", "--progress", "false",
                              "--solver_overrides", "{num_outer: 1, num_inner: 1}"], root)
    cross_unit = {s for s in sites if unit(s[0]) != unit(s[2])}
    per_pair = Counter((unit(a), unit(c)) for a, _, c, _ in cross_unit)
    print(f"files whose functions ran: {len(files)} ({len({unit(f) for f in files})} units)")
    print(f"call sites across files: {len(sites)}; across units: {len(cross_unit)}")
    for (a, c), n in per_pair.most_common():
        print(f"  {n:3d}  {a} -> {c}")
    if args.verbose:
        print("\n".join(sorted(files)))
        print("\n".join(f"{a}:{b} -> {c}:{d}" for a, b, c, d in sorted(sites)))


if __name__ == "__main__":
    main()
