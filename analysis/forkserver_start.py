"""The forkserver's first preloaded module (:func:`analysis.parallel.map_ordered`, :func:`analysis.parallel.background_pool`).

The forkserver imports its preloaded modules (matplotlib, numba: a second or two) before it starts ignoring Ctrl-C,
and a Ctrl-C in that window printed a ``KeyboardInterrupt`` traceback from it after the command's own
``interrupted`` line (found in the forty-first session beside outside audit 117's F2). Imported first there, this
module gives that process :func:`analysis.parallel.quiet_interrupt`'s handler: it ends at once and says nothing, and
the workers it forks keep the handler. Imported anywhere else, it does nothing."""

from __future__ import annotations

import sys

from analysis.parallel import quiet_interrupt


def _in_forkserver_preload() -> bool:
    """Whether this import runs inside ``multiprocessing.forkserver.main`` (its preloading)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back
    return False


if _in_forkserver_preload():
    quiet_interrupt()
