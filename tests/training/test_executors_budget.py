"""The process executor's share of the cores (outside audit 120's F5)."""

from training.executors import ProcessExecutor, core_budget


def test_the_process_executor_divides_the_users_omp_num_threads(monkeypatch):
    """With OMP_NUM_THREADS=1, the README's advice for two jobs on one machine, the process executor ran two workers
    on two cores anyway. It divides the threads the user gave, else every core."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert core_budget() == 1 and ProcessExecutor().workers == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert core_budget() == 3 and ProcessExecutor().workers == 3
    for bad in ("", "zero", "0"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert core_budget() >= 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    import os

    assert core_budget() == (os.cpu_count() or 1)


def test_a_ray_chunks_refusal_comes_back_as_its_own_error_class():
    """Review 122: a chunk's PluginError or DiskFullError came back from the worker as a plain UserError."""
    from fingerprint.parallel import Refusal
    from training.core import errors

    for kind in ("CorruptFileError", "PluginError", "DiskFullError", "UserError"):
        assert type(Refusal(kind, "m").error()) is getattr(errors, kind)
    assert type(Refusal("ValueError", "m").error()) is errors.UserError  # not one of ours: a UserError
