"""Every solver on every task, tuned on a validation split and reported on a disjoint test split
(the protocol: :mod:`quality_bench`).

    python benchmarks/quality.py                                    # everything (hours on CPU)
    python benchmarks/quality.py --tasks inpainting mri             # some tasks
    python benchmarks/quality.py --report_only                      # tables and plots from the cache
    python benchmarks/quality.py --plan                             # the runs still missing, estimated
    python benchmarks/quality.py --report_only --readme             # and README's tables
    python benchmarks/quality.py --write_presets                    # the frozen settings as the bundle's presets
    python benchmarks/quality.py --protocol --solvers dmilo_pgd reddiff   # the paper's protocol: oracle
                                                                    # and paper-default runs, in this order
"""
from __future__ import annotations

import argparse

import quality_bench
from quality_bench.plan import plan
from quality_bench.presets import write_presets
from quality_bench.report import update_readme, write_report
from quality_bench.rule import TaskBench
from quality_bench.settings import README, SOLVERS, TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=f"{quality_bench.__doc__}\n{__doc__}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--solvers", nargs="+", default=SOLVERS, choices=SOLVERS,
                        help="solvers to run (the report shows every cached one)")
    parser.add_argument("--count", type=int, default=16, help="images per split")
    parser.add_argument("--report_only", action="store_true", help="write the report from the cache, run nothing")
    parser.add_argument("--plan", action="store_true", help="list the runs still missing, run nothing")
    parser.add_argument("--readme", action="store_true", help="also rewrite the tables of README's quality section")
    parser.add_argument("--write_presets", action="store_true",
                        help="write the frozen settings to configs/solvers/validated/<prior>/ (the bundle's defaults)")
    parser.add_argument("--protocol", nargs="*", choices=["tuned", "paper"], default=None,
                        help="run the paper's protocol on the test split instead: the oracle at the validation-frozen "
                             "('tuned') and / or the paper-default ('paper') settings, solvers in the order given")
    args = parser.parse_args()
    if args.write_presets:
        written = write_presets(args.count)
        print(f"wrote {len(written)} validated presets under configs/solvers/validated/")
        return
    if args.protocol is not None:
        benches = [TaskBench(t, args.count) for t in args.tasks]
        for setting in args.protocol or ["tuned", "paper"]:
            for solver in args.solvers:
                for bench in benches:
                    bench.protocol_rows(run=True, solvers=[solver], settings=(setting,))
        return
    if args.plan:
        print(plan([TaskBench(t, args.count) for t in args.tasks], [s for s in SOLVERS if s in args.solvers]))
        return
    if not args.report_only:
        for task in args.tasks:
            TaskBench(task, args.count).test_rows(run=True, solvers=[s for s in SOLVERS if s in args.solvers])
    all_rows = write_report([TaskBench(t, args.count) for t in TASKS], "python benchmarks/quality.py")
    if args.readme:
        update_readme(all_rows, README)
        print(f"updated the tables in {README}")


if __name__ == "__main__":
    main()
