"""The run cache of one task: ``docs/benchmarks/quality/<task>.json``, shared by processes."""
from __future__ import annotations

import json
from pathlib import Path

from monai_dmilo.workflow.run_files import atomic_path  # noqa: E402


class Cache:
    """Run results of one task, on disk after every run (atomic replace, merged with the file's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str):
        if key not in self.data and self.path.is_file():
            # another process may have finished this run since (two processes can share a task)
            self.data = {**json.loads(self.path.read_text()), **self.data}
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        # merge with what other processes wrote since (several may run one task, e.g. --solvers dps)
        if self.path.is_file():
            self.data = {**json.loads(self.path.read_text()), **self.data}
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=1) + "\n")
