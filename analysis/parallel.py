"""Fingerprints analysed in parallel processes, for large populations.

Each fingerprint's analysis is independent of the others' and single-threaded (one BLAS and one OpenMP thread:
``analysis.scorecard.BLAS_THREADS``), so above :data:`MIN_ROWS` models x fingerprints they go to a
pool of processes, one fingerprint a task, results back in input order. Workers fork from a
``forkserver`` that has imported the analysis once (forking the caller itself would copy its
BLAS / numba threads' state). Inputs and results travel between our own processes by pickle;
nothing is written to disk. ``BASIN_FINGERPRINT_JOBS`` sets the number of workers (default
``os.cpu_count()``; ``1``: no pool).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from analysis.errors import AnalysisError

MIN_ROWS = 5000  # models x fingerprints below which a pool's start-up (~2-5 s) costs more than it saves
ENV = "BASIN_FINGERPRINT_JOBS"


def jobs() -> int:
    """Worker processes: ``BASIN_FINGERPRINT_JOBS``, else the machine's CPU count."""
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
    ctx.set_forkserver_preload(list(preload))
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        futures = [pool.submit(fn, *args) for args in items]
        out = []
        for f in futures:
            out.append(f.result())
            each(out[-1])
        return out


def background_pool(preload: Sequence[str] = ()) -> "Starting":
    """One worker process (from the ``forkserver``, which imports ``preload`` once) for work that
    overlaps the caller's own: the report's figures while the analysis runs. Its start-up begins now,
    in a thread (:class:`Starting`): the caller goes on at once instead of waiting for the
    forkserver's imports."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    # gc.freeze: the imported modules' objects left out of the cyclic collector's passes (matplotlib makes
    # many short-lived cycles: its collections took 0.5-0.6 s of a 100 x 10 page's CPU, 0.3-0.4 s frozen)
    return Starting(ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=gc.freeze))


class Starting:
    """A pool whose worker is being started in a thread. ``ProcessPoolExecutor.submit`` starts the
    worker in the calling thread, and from a ``forkserver`` that waits until the forkserver has
    imported its preloaded modules (1.5-2 s for the report's, matplotlib's included): the report's
    analysis stood still that long. :attr:`ready` says whether the start is over; :meth:`pool` waits
    for it and gives the pool, or ``None`` when the worker could not be started."""

    def __init__(self, pool: ProcessPoolExecutor):
        self._pool: ProcessPoolExecutor | None = pool
        self._thread = threading.Thread(target=self._start, name="background-pool-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._pool.submit(int)  # returns once the worker process exists
        except Exception:  # noqa: BLE001 - no second process here (OSError, a broken pool): the caller works alone
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def ready(self) -> bool:
        """Whether the start is over (then :meth:`pool` does not wait)."""
        return not self._thread.is_alive()

    def pool(self) -> ProcessPoolExecutor | None:
        """The pool once its worker is started (waited for), or ``None`` when it could not be."""
        self._thread.join()
        return self._pool


def process_cpu() -> float:
    """CPU seconds (user + system) of the calling process itself (for a worker: ask it by ``submit``)."""
    t = os.times()
    return t.user + t.system

