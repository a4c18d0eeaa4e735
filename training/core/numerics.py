"""Reproducible floating point: what keeps a model's weights independent of the batch it trained in.

torch's CPU matrix products on x86 are MKL's, and MKL picks its code path by the CPU *and by the
address of each operand*: on an AMD EPYC host (AVX-512), a ``[2, 8] @ [8, 32]`` product whose first
operand starts 8 bytes past a 16-byte boundary sums in another order than the same product on an
aligned operand (a 5e-7 difference). A model's weights are views into its population's stacked
buffer, so their address depends on how many models share the buffer: the same seed trained alone
and among 7 others drifted apart by 6e-8 after 20 steps on that host, while an Intel host happened
to be insensitive. MKL's *conditional numerical reproducibility* mode (``MKL_CBWR``) fixes the code
path per run and, with ``STRICT``, makes it independent of alignment; it is read when MKL first
runs, so :func:`request_reproducible_blas` sets it when our packages are imported (a value the user
set wins). :func:`blas_reproducible` says whether it took effect in this process.

What it guarantees, measured on that host (``tests/training/test_exactness.py``): for a fixed
number of threads per process, a model trained alone or at any position of a larger population
ends bit-identical (with ``OMP_NUM_THREADS=1``, as the tests and the process executor's workers run,
at every population size; with more threads a population of exactly one model takes MKL's
multi-threaded single-product path, which can differ in the last bit). A shard trained in threads
(``training.trainer.training_threads``: MLP, CNN and transformer shards with a large step) trains each
model at one intra-op thread, so that caveat is left to one-program training (small steps, imported
modules, a penalty, ``threads=0``). Different hosts still give different bits: nothing here makes an
Intel and an AMD host agree.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

MKL_MODE = "AUTO,STRICT"  # the CPU's best code path, independent of operand alignment
_OFF = 1  # mkl_serv_cbwr_get(MKL_CBWR_BRANCH) when the mode is off


def request_reproducible_blas() -> None:
    """Ask MKL for its reproducible mode (``MKL_CBWR``), unless the user chose a mode. Effective only
    before the process's first MKL call; our package ``__init__`` modules call this."""
    os.environ.setdefault("MKL_CBWR", MKL_MODE)


def request_passive_threads() -> None:
    """Ask OpenMP to let a thread that waits for work sleep instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``), unless the user chose a policy. Read when torch's OpenMP runtime
    starts; our package ``__init__`` modules call this before torch is imported.

    Why: a population of small models is thousands of tiny parallel regions. With the default
    (spinning) policy, on a host whose cores are shared with other processes, a thread spins at a
    barrier while its partner is descheduled. Measured on the project's 2-core machine at load ~12
    (``docs/benchmarks.md``): ``OMP_NUM_THREADS=2`` spent 4x the CPU of one thread on tiny-lm's
    training steps and evaluation (31.8 s against 8.4 s) and took 2.1x the wall time; with this
    policy, 7.8 s of CPU and 0.75x the one-thread wall time."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _mkl():
    try:
        import torch

        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        return lib if hasattr(lib, "mkl_serv_cbwr_get") else None
    except (OSError, ImportError):
        return None


def blas_reproducible() -> bool | None:
    """Is MKL's reproducible mode on in this process? ``None`` when torch has no MKL (other BLAS
    libraries, e.g. OpenBLAS on ARM builds, have no such mode and are not alignment-checked here)."""
    lib = _mkl()
    if lib is None:
        return None
    return int(lib.mkl_serv_cbwr_get(1)) != _OFF


def cpuinfo_line(field: str) -> str | None:
    """The first ``/proc/cpuinfo`` line starting with ``field`` (e.g. ``"flags"``), or ``None``."""
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(field)), None)
    except OSError:
        return None


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    line = cpuinfo_line("model name")
    return line.split(":", 1)[1].strip() if line else platform.processor() or platform.machine()


def host_features() -> str:
    """One line naming what decides float results here: CPU, torch's SIMD level, BLAS mode, threads."""
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "?"
    return (f"cpu={cpu_name()!r} torch={torch.__version__} simd={capability} "
            f"MKL_CBWR={os.environ.get('MKL_CBWR', '(unset)')} reproducible_blas={blas_reproducible()} "
            f"threads={torch.get_num_threads()}")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
RETAIN_BYTES = 256 << 20


@functools.cache  # process-wide: once is enough, however many populations a process trains
def retain_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed blocks of up to :data:`RETAIN_BYTES` for reuse instead of
    returning them to the system (``mallopt``: no ``mmap`` below that size, no trimming of the heap
    below it). Returns whether it took effect (glibc only; elsewhere nothing happens).

    Why: torch's CPU tensors come from ``malloc``. A training step allocates and frees the same
    megabyte-sized activations every step; glibc serves blocks that large with ``mmap`` (or trims
    them off the heap when freed), so every step page-faults its activations in afresh, which
    measured ~10% of a transformer population's step as kernel time (``docs/benchmarks.md``).
    And one arena (``M_ARENA_MAX``): the training threads (``training.trainer.training_threads``)
    otherwise each got an arena of their own, whose heap glibc shrank and grew again every step
    (130-1,700 page faults a modadd step in threads, against 7-60 in the main arena: modadd's 32
    models trained 6-23% faster in 7 of 7 interleaved runs on the Intel host; tiny-lm unchanged).
    Process-wide and permanent: the process keeps up to that much freed memory, and its threads share
    one arena from then on, those it starts later too (training's few allocations a step do not contend
    for its lock; a process forked from it inherits the setting, one spawned does not)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    kept = bool(mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES))
    mallopt(_M_ARENA_MAX, 1)  # the threads' share of it; the thresholds are what the return value reports
    return kept
