"""Files of a run directory: written whole or not at all, and listed so an overwrite deletes only them.

* :func:`atomic_path`: write to a temporary name in the same folder, then rename over the target,
  so an interrupt (even a second Ctrl-C during shutdown) leaves the old file or the new one, never
  half a file.
* :func:`save_run_file`: :func:`atomic_path` plus a line in the run's manifest
  (``.written.rank<r>.txt``, one relative path per line), so that ``--overwrite true`` deletes what
  the run wrote and leaves files a user put in its folders alone (:func:`remove_run_files`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_path", "save_run_file", "run_files", "remove_run_files"]

MANIFEST_GLOB = ".written.rank*.txt"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it to ``path`` when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _manifest(output_dir: Path) -> Path:
    from monai_dmilo.workflow.distributed import rank_and_world_size

    return output_dir / f".written.rank{rank_and_world_size()[0]}.txt"


def save_run_file(output_dir: str | os.PathLike, path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write ``path`` (inside ``output_dir``) with ``write(tmp_path)`` atomically and list it in the manifest."""
    output_dir, path = Path(output_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(tmp)
    relative = path.resolve().relative_to(output_dir.resolve())
    with _manifest(output_dir).open("a") as f:
        f.write(f"{relative.as_posix()}\n")
    return path


def run_files(output_dir: str | os.PathLike) -> list[Path]:
    """The files the manifests of ``output_dir`` list (existing ones, inside the folder, in order)."""
    output_dir = Path(output_dir).resolve()
    seen: dict[Path, None] = {}
    for manifest in sorted(output_dir.glob(MANIFEST_GLOB)):
        for line in manifest.read_text().splitlines():
            target = (output_dir / line).resolve()
            if line and output_dir in target.parents and target.is_file():
                seen[target] = None
    return list(seen)


def remove_run_files(output_dir: str | os.PathLike, folders: tuple[str, ...] = ()) -> int:
    """Delete the files the manifests list, the manifests, then those of ``folders`` left empty.

    Returns:
        the number of files deleted.
    """
    output_dir = Path(output_dir)
    files = run_files(output_dir)
    for f in files:
        f.unlink()
    for manifest in output_dir.glob(MANIFEST_GLOB):
        manifest.unlink()
    for name in folders:
        folder = output_dir / name
        if folder.is_dir():
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                if not any(sub.iterdir()):
                    sub.rmdir()
            if not any(folder.iterdir()):
                folder.rmdir()
    return len(files)
