"""One line instead of a traceback for errors in what the user gave (files, keys, values).

The bundle workflows call :func:`install_one_line_errors` first in ``initialize``: from then on, an
uncaught exception whose chain holds a user-input error (``ValueError``, ``TypeError``,
``FileNotFoundError``, ``KeyError``: what the checks of this package raise, naming the argument,
the value and what was expected) prints ``monai_dmilo error: <message>`` on one line and the
process exits with status 1. MONAI's config parser wraps such errors in ``RuntimeError("Failed to
evaluate ...")``; the hook looks through that chain. Set ``MONAI_DMILO_TRACEBACK=1`` to see the full
traceback instead. Any other exception keeps Python's traceback. A workflow file run without the
files it is layered on (``common.yaml`` first) gets one line saying which to list. An uncaught Ctrl-C
(``KeyboardInterrupt``, e.g. while the workflow loads or checks its inputs) prints one line and
exits with status 130, as an interrupted solve does.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

__all__ = ["USER_ERRORS", "root_cause", "user_error", "one_line_message", "install_one_line_errors", "not_a_workflow",
           "layering_hint"]

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, KeyError)
TRACEBACK_ENV = "MONAI_DMILO_TRACEBACK"
CONFIG_DIR = "bundle/configs"
#: what MONAI says when a config lacks a key another file defines
_MISSING = ("is not defined in the config content", "doesn't exist in the config file")
#: the running workflow file and the files it is layered on (install_one_line_errors)
_LAYERING: dict[str, object] = {"workflow": None, "layered_on": ()}


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first."""
    chain, seen = [exc], {id(exc)}
    while True:
        inner = chain[-1].__cause__ or (None if chain[-1].__suppress_context__ else chain[-1].__context__)
        if inner is None or id(inner) in seen:
            return chain
        chain.append(inner)
        seen.add(id(inner))


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of ``exc``'s cause/context chain (MONAI wraps errors in RuntimeError)."""
    return _chain(exc)[-1]


def user_error(exc: BaseException) -> BaseException | None:
    """The outermost user-input error in ``exc``'s chain (the one with the most context), else None.

    MONAI's ``RuntimeError("Failed to evaluate ...")`` wrappers are looked through; an error this
    package raised ``from`` a lower-level one (naming the file or key) wins over that one.
    """
    return next((e for e in _chain(exc) if isinstance(e, USER_ERRORS)), None)


def one_line_message(err: BaseException) -> str:
    """``monai_dmilo error: <message>`` on one line (a ``KeyError``'s own text, not its repr)."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    return "monai_dmilo error: " + " ".join(str(message).split())


def config_files_argument(files: list[str]) -> str:
    """``--config_file "['bundle/configs/a.yaml','bundle/configs/b.yaml']"`` for these file names."""
    listed = ",".join(f"'{CONFIG_DIR}/{f}'" for f in files)
    return f'--config_file "[{listed}]"'


def layering_hint(message: str) -> str:
    """What to add to a missing-key message of MONAI when the running workflow file is layered on
    others (set by :func:`install_one_line_errors`), else ``""``."""
    workflow, layered_on = _LAYERING["workflow"], list(_LAYERING["layered_on"])
    if not workflow or not layered_on or not any(m in message for m in _MISSING):
        return ""
    return (f"; {workflow} is layered on {' and '.join(layered_on)}: list them first, "
            f"{config_files_argument([*layered_on, workflow])}")


def not_a_workflow(name: str) -> None:
    """Raise the one-line error of a shared config file run on its own (``common.yaml``)."""
    install_one_line_errors()
    raise ValueError(f"{name} holds what the workflows share and is not a workflow itself: list it first, then a "
                     f"workflow, e.g. {config_files_argument([name, 'evaluate.yaml'])}")


def _hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if any(isinstance(e, KeyboardInterrupt) for e in _chain(exc)) and os.environ.get(TRACEBACK_ENV, "") in ("", "0"):
            # Ctrl-C outside a solve (while loading, checking, writing): one line and status 130,
            # as inside one; files are written whole or not at all, so a rerun continues
            print("monai_dmilo: interrupted; run the same command again to continue.", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        err = user_error(exc)
        if err is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            previous(exc_type, exc, tb)
            return
        line, hint = one_line_message(err), layering_hint(str(err))
        line = line.rstrip(".") + hint if hint else line
        print(f"{line} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)

    hook.monai_dmilo_one_line = True  # type: ignore[attr-defined]
    return hook


def install_one_line_errors(workflow: str | None = None, layered_on: list[str] | tuple[str, ...] = ()) -> None:
    """Install the one-line hook as ``sys.excepthook`` (once; other exceptions go to the previous hook).

    Args:
        workflow: the workflow file calling it (``"evaluate.yaml"``), named in the hint of
            :func:`layering_hint`.
        layered_on: the files it must be listed after (``["common.yaml"]``).
    """
    if workflow is not None:
        _LAYERING.update(workflow=workflow, layered_on=tuple(layered_on))
    if not getattr(sys.excepthook, "monai_dmilo_one_line", False):
        sys.excepthook = _hook(sys.excepthook)
