"""Fingerprints analysed in parallel processes, for large populations.

Each fingerprint's analysis is independent of the others' and single-threaded (one BLAS and one OpenMP thread:
``analysis.scorecard.BLAS_THREADS``), so above :data:`MIN_ROWS` models x fingerprints they go to a
pool of processes, one fingerprint a task, results back in input order. Workers fork from a
``forkserver`` that has imported the analysis once (forking the caller itself would copy its
BLAS / numba threads' state). Inputs and results travel between our own processes by pickle;
nothing is written to disk. ``BASIN_FINGERPRINT_JOBS`` sets the number of workers (default
``os.cpu_count()``; ``1``: no pool). A script without an ``if __name__ == "__main__":`` guard gets no
pool (:func:`main_reruns`): its workers would run it again.
"""

from __future__ import annotations

import ast
import collections
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from analysis.errors import AnalysisError

MIN_ROWS = 5000  # models x fingerprints below which a pool's start-up (~2-5 s) costs more than it saves
ENV = "BASIN_FINGERPRINT_JOBS"


def jobs() -> int:
    """Worker processes: ``BASIN_FINGERPRINT_JOBS``, else the machine's CPU count; ``1`` when the
    caller is a script that a worker would run again (:func:`main_reruns`)."""
    if main_reruns():
        _warn_unguarded()
        return 1
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return os.cpu_count() or 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise AnalysisError(f"{ENV} must be a positive integer, got {raw!r}")
    return n


def main_reruns() -> bool:
    """Whether a worker process would run the caller's script again: ``forkserver`` (and ``spawn``)
    workers import the main module before they work, and a script without an ``if __name__ ==
    "__main__":`` guard at its top level would redo everything it does there (an outside audit's
    notebook-style script trained, extracted and reported twice). Not for a notebook, ``python -c`` or
    standard input (no main file), nor a ``-m`` package's ``__main__`` (never imported again)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if not path or (spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__"))):
        return False
    return not _has_main_guard(os.path.abspath(path))


@functools.lru_cache(maxsize=1)
def _warn_unguarded() -> None:
    """Once a process: why this script gets no worker processes, and the fix."""
    warnings.warn("this script has no `if __name__ == \"__main__\":` guard, so the analysis and the report's figures run "
                  "in its own process (a worker process would run the script again): put the calls under that guard "
                  "to use worker processes", RuntimeWarning, stacklevel=3)


@functools.lru_cache(maxsize=8)
def _has_main_guard(path: str) -> bool:
    """Whether the Python file at ``path`` has an ``if __name__ == "__main__":`` at its top level (a
    file that cannot be read or parsed counts as guarded: a worker could not run it either)."""
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return True
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and len(test.comparators) == 1:
            sides = [test.left, test.comparators[0]]
            if any(isinstance(a, ast.Name) and a.id == "__name__" for a in sides) and \
                    any(isinstance(a, ast.Constant) and a.value == "__main__" for a in sides):
                return True
    return False


FORKSERVER_START = "analysis.forkserver_start"  # preloaded first: the forkserver's own Ctrl-C, quiet


def quiet_interrupt() -> None:
    """A worker's start: Ctrl-C (a terminal sends it to the whole process group) ends the worker at
    once and without a traceback; the caller, which gets it too, says what was interrupted. Left to
    Python, each worker printed its own ``KeyboardInterrupt`` traceback (an outside audit, 70). A worker
    whose Ctrl-C is ignored (its command was started so) keeps ignoring it."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, _frame: os._exit(128 + signum))


def _background_start() -> None:
    """The figure worker's start: :func:`quiet_interrupt`, then ``gc.freeze`` (below)."""
    quiet_interrupt()
    gc.freeze()


def map_ordered(fn: Callable[..., Any], items: Sequence[tuple], rows: int, n_jobs: int | None = None,
                min_rows: int | None = None, preload: Sequence[str] = (),
                on_each: Callable[[Any], None] | None = None) -> list[Any]:
    """``[fn(*args) for args in items]``, in a process pool when ``rows`` (models x fingerprints)
    reaches ``min_rows`` (default :data:`MIN_ROWS`) and there are several workers and items. ``fn`` must be a module-level
    function; ``preload`` names the modules the forkserver imports once for every worker. ``on_each``
    is called with each result, in input order, as soon as it and those before it are done."""
    n_jobs = min(jobs() if n_jobs is None else n_jobs, len(items))
    each = on_each or (lambda _r: None)
    if n_jobs <= 1 or rows < (MIN_ROWS if min_rows is None else min_rows):
        out = []
        for args in items:
            out.append(fn(*args))
            each(out[-1])
        return out
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([FORKSERVER_START, *preload])
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=quiet_interrupt) as pool:
        futures = [pool.submit(fn, *args) for args in items]
        out = []
        for f in futures:
            out.append(f.result())
            each(out[-1])
        return out


def background_pool(preload: Sequence[str] = ()) -> "Background":
    """One worker process (from the ``forkserver``, which imports ``preload`` once) for work that
    overlaps the caller's own: the report's figures while the analysis runs (:class:`Background`).
    Its start-up begins now, in a thread: the caller goes on at once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([FORKSERVER_START, *preload])
    # gc.freeze: the imported modules' objects left out of the cyclic collector's passes (matplotlib makes
    # many short-lived cycles: its collections took 0.5-0.6 s of a 100 x 10 page's CPU, 0.3-0.4 s frozen)
    return Background(ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_background_start))


class Background:
    """A one-worker pool that is given its calls one at a time, in the order submitted, by a thread of
    the caller's process. :meth:`submit` never waits and returns a ``Future``; one the worker has not
    been given yet can still be cancelled, so the caller can take work back from the end of the
    queue and do it itself meanwhile (``ProcessPoolExecutor`` hands its worker up to three calls at
    once, and those can no longer be cancelled). The worker is started by the same thread: from a
    ``forkserver``, ``ProcessPoolExecutor.submit`` waits until the forkserver has imported its
    preloaded modules, and the report's analysis stood still that long (1.5-2 s)."""

    def __init__(self, pool: ProcessPoolExecutor):
        self._pool = pool
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._feed, name="background-feed", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` in the worker, after every call submitted before it (a module-level ``fn``)."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("submit after shutdown")
            self._queue.append((future, fn, args))
            self._cond.notify()
        return future

    def _feed(self) -> None:
        broken: BaseException | None = None
        try:
            self._pool.submit(int)  # starts the worker: returns once its process exists
        except Exception as e:  # noqa: BLE001 - no second process here: every call fails, the caller does it
            broken = e
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                future, fn, args = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # taken back by the caller
            try:
                if broken is not None:
                    raise broken
                future.set_result(self._pool.submit(fn, *args).result())
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits for it
                future.set_exception(e)

    def shutdown(self) -> None:
        """Cancel what the worker has not been given, wait for the rest, end the worker."""
        with self._cond:
            self._closed = True
            for future, _, _ in self._queue:
                future.cancel()
            self._cond.notify()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)


def process_cpu() -> float:
    """CPU seconds (user + system) of the calling process itself (for a worker: ask it by ``submit``)."""
    t = os.times()
    return t.user + t.system

