"""One line instead of a traceback for errors in what the user gave (files, keys, values).

The bundle workflows call :func:`install_one_line_errors` first in ``initialize``: from then on, an
uncaught exception whose chain holds a user-input error (``ValueError``, ``TypeError``,
``FileNotFoundError``, ``KeyError``: what the checks of this package raise, naming the argument,
the value and what was expected) prints ``monai_dmilo error: <message>`` on one line and the
process exits with status 1. MONAI's config parser wraps such errors in ``RuntimeError("Failed to
evaluate ...")``; the hook looks through that chain. Set ``MONAI_DMILO_TRACEBACK=1`` to see the full
traceback instead. Any other exception keeps Python's traceback. An uncaught Ctrl-C
(``KeyboardInterrupt``, e.g. while the workflow loads or checks its inputs) prints one line and
exits with status 130, as an interrupted solve does.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

__all__ = ["USER_ERRORS", "root_cause", "user_error", "one_line_message", "exit_on_error", "install_one_line_errors"]

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, KeyError)
TRACEBACK_ENV = "MONAI_DMILO_TRACEBACK"


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


def exit_on_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a user-input error becomes ``SystemExit`` with one line (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as err:
        raise SystemExit(one_line_message(err)) from None


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
        print(f"{one_line_message(err)} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)

    hook.monai_dmilo_one_line = True  # type: ignore[attr-defined]
    return hook


def install_one_line_errors() -> None:
    """Install the one-line hook as ``sys.excepthook`` (once; other exceptions go to the previous hook)."""
    if not getattr(sys.excepthook, "monai_dmilo_one_line", False):
        sys.excepthook = _hook(sys.excepthook)
