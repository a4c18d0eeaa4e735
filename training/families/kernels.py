"""Fused C++ kernels for the CPU training step of ReLU MLPs, compiled once per machine.

The thin layers of a small MLP (a first layer with a handful of inputs, an output layer with a
handful of classes) are matmuls MKL runs far below peak, and each is surrounded by bias, activation
and activation-backward passes over a ``[n_models, batch, width]`` activation. The kernels in
``csrc/mlp_cpu.cpp`` do each thin layer and its neighbouring passes in one pass over memory (see
:meth:`training.families.mlp.MLPFamily.value_and_grad`). They are optional: :func:`ops` compiles
them with ``torch.utils.cpp_extension`` (a C++ compiler and ninja; ~6 s, once per machine, into
``$XDG_CACHE_HOME/basin-fingerprint/kernels``) and returns ``None`` when that is impossible or
``BASIN_FINGERPRINT_KERNELS=0`` is set; the trainer then uses its pure-torch path, which computes
the same gradients up to float rounding (tested), not bit for bit: each shard records which path
trained it (``Family.training_path``) and ``--resume`` refuses the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import threading
import time
from pathlib import Path

import torch

from training.core.numerics import cpuinfo_line

ENV = "BASIN_FINGERPRINT_KERNELS"
_SOURCE = Path(__file__).with_name("csrc") / "mlp_cpu.cpp"
_FLAGS = ["-O3", "-march=native", "-fopenmp"]  # -fopenmp: at::parallel_for runs on torch's own OpenMP pool
_state: dict[str, object] = {}
_LOADING = threading.Lock()  # one thread loads the kernels; the others wait for it


def _cpu_flags() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags (a build is only reused on a like CPU)."""
    return cpuinfo_line("flags") or platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "basin-fingerprint" / "kernels"


def _name() -> str:
    key = "\n".join([_SOURCE.read_text(), torch.__version__, " ".join(_FLAGS), _cpu_flags()])
    return "basin_mlp_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _built() -> Path:
    name = _name()
    return _cache_dir() / name / f"{name}.so"


def _clear_stale_lock(lock: Path, age: float = 300.0) -> None:
    """torch waits for as long as a build directory's lock file exists; one left by a build that was
    killed (a build takes ~6 s) would make every later process wait forever."""
    try:
        if time.time() - lock.stat().st_mtime > age:
            lock.unlink(missing_ok=True)
    except OSError:
        pass


@contextlib.contextmanager
def _ninja_on_path():
    """torch runs ``ninja`` from PATH; the ninja package (a dependency) installs it beside the
    interpreter, which is not on PATH when a virtualenv's ``fingerprint`` runs unactivated."""
    saved = os.environ.get("PATH", "")
    try:
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, saved]) if saved else ninja.BIN_DIR
    except (ImportError, AttributeError):
        pass
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def _disabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}


def ops():
    """The kernels' ``torch.ops`` namespace, or ``None`` if they are disabled or cannot be built
    (:func:`status` says why). Built on first use, then loaded from the cache. Thread-safe: a
    population's shares train in threads (``training.trainer.training_threads``), and a share that
    asked while another was loading them got ``None`` (the torch path) for its first step."""
    if "ops" in _state:
        return _state["ops"]
    with _LOADING:
        if "ops" not in _state:  # published only once loaded (or known unloadable)
            _state["ops"] = _load()
    return _state["ops"]


def _load():
    """Load (building first if needed) the kernels: their namespace, or ``None``; sets the reason."""
    if _disabled():
        _state["reason"] = f"disabled by {ENV}=0"
        return None
    try:
        lib = _built()
        name = lib.stem
        try:  # built before (by this or another process)
            torch.ops.load_library(str(lib))
            _state["reason"] = f"loaded from {lib.parent}"
        except OSError:  # not built yet, or still being written: build under torch's lock on the directory
            from torch.utils.cpp_extension import load

            lib.parent.mkdir(parents=True, exist_ok=True)
            _clear_stale_lock(lib.parent / "lock")
            with _ninja_on_path():
                load(name, sources=[str(_SOURCE)], extra_cflags=[*_FLAGS, f"-DBASIN_KERNELS={name}"],
                     extra_ldflags=["-fopenmp"], build_directory=str(lib.parent), is_python_module=False, verbose=False)
            _state["reason"] = f"built in {lib.parent}"
        return getattr(torch.ops, name)
    except Exception as e:  # no compiler, no ninja, read-only cache, ...: the torch path still works
        first = (str(e).strip().splitlines() or [""])[0]
        _state["reason"] = f"cannot be built ({type(e).__name__}: {first[:200]}); training uses the torch path"
        return None


@contextlib.contextmanager
def disabled():
    """Train on the pure-torch path for the duration (benchmarks and tests compare the two)."""
    saved = _state.get("ops", _UNSET)
    _state["ops"] = None
    try:
        yield
    finally:
        if saved is _UNSET:
            _state.pop("ops", None)
        else:
            _state["ops"] = saved


_UNSET = object()


def status(build: bool = True) -> str:
    """One line: are the kernels in use, and if not, why. With ``build=False`` nothing is compiled:
    kernels not built yet are reported as such."""
    if not build and "ops" not in _state:
        if _disabled():
            return f"disabled by {ENV}=0"
        try:
            lib = _built()
        except OSError:  # the source is unreadable: ops() would say so
            lib = None
        if lib is not None and lib.is_file():
            return f"built in {lib.parent}"
        return "not built yet (compiled on the first CPU training step, ~6 s)"
    ops()
    return ("in use: " if _state.get("ops") is not None else "not in use: ") + str(_state.get("reason", ""))
