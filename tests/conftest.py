"""Shared fixtures: tiny real configs and zoos (real HDF5 files in tmp dirs)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest

# Tests share 2 CPU cores; one intra-op thread per process keeps parallel work predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A suite started in the background of a non-interactive shell (`bash .ci/run &`, nohup) inherits SIGINT ignored,
# and so would every command a test starts: the CLI rightly leaves an ignored SIGINT ignored, and the Ctrl-C tests
# then saw their command run on (exit 0, not 130). Python's own handler here makes the commands' SIGINT the default
# again (a handler is reset to the default across exec; an ignored signal stays ignored).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# fixtures kept in their own modules beside this one (tests/<name>.py)
pytest_plugins = ["modadd_zoo"]

_EXIT: dict[str, int] = {}

# The longest test files, longest first (a run's per-test durations summed by file, 2026-12-03):
# `--dist loadfile` hands each file whole to one worker, in collection order (`--no-loadscope-reorder`
# in pyproject.toml; xdist's default orders by number of tests, which put ~60 s of Ray, kill and
# benchmark tests on one worker while the other sat idle). Starting the long files first leaves the
# short ones to fill in at the end. Only the order changes; a file missing here runs after these.
LONGEST_FILES_FIRST = (
    "training/test_ray.py", "fingerprint/test_zoo_cli.py", "training/test_harness.py", "fingerprint/test_import.py",
    "training/test_kernels.py", "training/test_integrity.py", "fingerprint/test_report.py",
    "fingerprint/test_extractors.py", "analysis/test_scale.py", "fingerprint/test_pipeline.py",
    "training/test_tasks.py", "analysis/test_labelfree.py", "fingerprint/test_trust.py", "training/test_exactness.py",
    "analysis/test_rounding_draws_script.py", "training/test_icl.py",
)


def pytest_collection_modifyitems(session, config, items):
    """The files of ``LONGEST_FILES_FIRST`` first, in its order; the other files after, in
    collection order; each file's tests in their own order (the sort is stable)."""
    here = Path(__file__).parent
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}

    def key(item) -> int:
        try:
            return rank.get(Path(item.path).relative_to(here).as_posix(), len(rank))
        except ValueError:  # a test outside tests/ (named on the command line)
            return len(rank)

    items.sort(key=key)


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own exit status once everything is reported, without the interpreter's
    teardown: with the whole suite in one process (torch, Ray, transformers' tokenizers, matplotlib),
    a CI run whose 537 tests all passed was killed by a segmentation fault in that teardown (exit 139,
    not reproduced on a subset). ``FINGERPRINT_TEST_NORMAL_EXIT=1`` keeps the normal exit to chase it."""
    if "status" not in _EXIT or os.environ.get("FINGERPRINT_TEST_NORMAL_EXIT") == "1":
        return
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT["status"])


def saved_models(tmp_path: Path, monkeypatch, module: str, source: str, n: int) -> Path:
    """``n`` untrained models of ``module.make()`` (its code: ``source``, written to ``tmp_path``)
    saved as plain state dicts ``tmp_path/ckpts/m{i}.pt`` (seed ``i``), the module importable."""
    import importlib

    import torch

    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.reload(importlib.import_module(module))
    (tmp_path / "ckpts").mkdir()
    for i in range(n):
        torch.manual_seed(i)
        torch.save(mod.make().state_dict(), tmp_path / "ckpts" / f"m{i}.pt")
    return tmp_path


def run_cli(*args: object, cwd: Path | str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``fingerprint ARGS`` through the installed entry point (``fingerprint.cli:main``) in this
    process, returned as a finished process: exit status, stdout, stderr.

    A fresh interpreter spends 3-5 s of CPU importing torch, scikit-learn and matplotlib before the
    command starts, which this process has already paid, and the suite runs ~150 commands. The entry
    point is the same code (argv parsing, one-line errors, exit statuses); the command's output is
    not a terminal here either. ``env`` is set for the call only (``COLUMNS`` for rich's width). An
    exception that escapes ``main`` is what a process would print: a traceback and exit 1. Tests
    where a real process is the point (signals, kill -9, start-up, plugins on ``PYTHONPATH``, Ray)
    keep ``subprocess``."""
    # deferred: a test module that never runs a command need not import the CLI
    from fingerprint import cli

    consoles = {c: (c._color_system, c._width) for c in (cli.console, cli.err_console)}
    for c in consoles:  # colours (and a COLUMNS width) are fixed when a console is made: as a fresh process sees them
        c._color_system, c._width = None, None
    out, err = io.StringIO(), io.StringIO()
    argv, here, show = sys.argv, os.getcwd(), warnings.showwarning
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    sys.argv = ["fingerprint", *map(str, args)]
    code: int | str | None = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            try:
                cli.main()
            except SystemExit as e:
                code = e.code
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv, warnings.showwarning = argv, show
        for c, (colours, width) in consoles.items():
            c._color_system, c._width = colours, width
        os.chdir(here)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    if not isinstance(code, int):  # sys.exit("message") or sys.exit(None), as the interpreter reads them
        code = 0 if code is None else 1
    return subprocess.CompletedProcess(["fingerprint", *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Each test starts at one torch thread, whatever ran before it in this process: bit-exactness
    is promised at one thread per process (README, "How it is built"), and a library that raised the
    count (seen once after the suite was reordered by package) must not decide a later test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

TINY = """
name = "tiny"
models_per_batch = {mpb}

[task]
name = "xor-cues"
n_train = 128
n_test = 64
n_probes = 32

[model]
arch = "mlp"
width = 8
depth = 1

[train]
steps = 40
batch_size = 32
lr = 0.02
checkpoints = [0, 10, 20]

[seeds]
init = 4
data = 2

[[spawn]]
at_step = 10
children = 1

[[finetune]]
task = {{ cue_b_strength = 0.5 }}
children = 1
train = {{ steps = 10, checkpoints = [5] }}
"""


@pytest.fixture
def tiny_config(tmp_path: Path):
    def make(mpb: int = 256, body: str | None = None) -> Path:
        p = tmp_path / f"tiny-{mpb}.toml"
        p.write_text(body if body is not None else TINY.format(mpb=mpb))
        return p

    return make


@pytest.fixture(scope="session")
def _tiny_zoo_once(tmp_path_factory) -> Path:
    """The tiny sweep, trained once per test session (each test gets its own copy)."""
    from training.config import load_config
    from training.sweep import run_sweep

    root = tmp_path_factory.mktemp("tiny-zoo-once")
    config = root / "tiny-4.toml"
    config.write_text(TINY.format(mpb=4))
    run_sweep(load_config(config), root / "zoo")
    return root / "zoo"


@pytest.fixture
def tiny_zoo(tmp_path: Path, _tiny_zoo_once: Path) -> Path:
    """A fresh copy of the tiny sweep's zoo (24 models: 4 inits x 2 data orders, a spawned and a
    fine-tuned child each), for a test to read, extend or break."""
    import shutil

    out = tmp_path / "zoo"
    shutil.copytree(_tiny_zoo_once, out)
    return out
