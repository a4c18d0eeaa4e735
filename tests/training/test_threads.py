"""Training threads (``training.trainer.training_threads``): shares of a population trained at once in
several threads, each at one intra-op thread, end at the same bits as one program, and a failure or
an interrupt in one stops the others."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from exact import assert_bitwise_equal, assert_conv_equal

from training.config import TrainConfig
from training.families import get_family
from training.tasks import get_task
from training.trainer import train_population, training_threads

CASES = {
    "mlp": ("xor-cues", {"n_train": 64}, {"width": 16, "depth": 2}, 13),
    "cnn": ("digits-backdoor", {}, {"channels": [4, 8], "fc": [6]}, 8),
    "transformer": ("modadd", {"p": 7}, {"vocab": 7, "d_model": 16, "n_heads": 4, "d_mlp": 32, "attention_rate": 0.5}, 13),
    "tiny-lm": ("tiny-lm", {}, {"vocab": 64, "d_model": 16, "n_heads": 4, "d_mlp": 24, "n_layers": 2, "layernorm": True,
                                "readout": "all"}, 5),
}


def _setup(case: str):
    task_name, task_hp, hp, batch = CASES[case]
    task = get_task(task_name, task_hp)
    fam = get_family(case if case in ("mlp", "cnn") else "transformer", task.input_shape, task.n_out, hp)
    return task, fam, batch


def _train(case: str, threads: int | None, seeds=(11, 3, 7, 5, 2), steps: int = 6, **kw):
    task, fam, batch = _setup(case)
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=0.01, optimizer="adamw", weight_decay=0.1, checkpoints=[])
    seeds = list(seeds)
    return train_population(fam, task, cfg, fam.init(seeds), seeds, torch.zeros(len(seeds), dtype=torch.long),
                            checkpoint_steps=[3], save_optimizer_state=True, threads=threads, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shares_trained_in_threads_end_at_the_bits_of_one_program(case):
    """5 models as one program, in 2 threads (2 + 3 models) and in 3 (1 + 2 + 2): every checkpoint
    and the optimiser's moments are bit for bit the same, in the population's order."""
    one = _train(case, 1)
    same = assert_conv_equal if case == "cnn" else assert_bitwise_equal  # a CNN's bits: where its convolution is measured
    for k in (2, 3):
        split = _train(case, k)
        same(split.checkpoints, one.checkpoints, f"{case}, {k} threads")
        same(split.optimizer_states, one.optimizer_states, f"{case}, {k} threads, optimiser")
        assert torch.equal(split.diverged, one.diverged) and torch.equal(split.diverged_step, one.diverged_step)


def test_a_population_trains_in_as_many_threads_as_torch_would_use(monkeypatch):
    """On the CPU one thread per intra-op thread torch would use (at most one per model), and torch's
    own setting is back afterwards; a GPU, or a family wrapping one shared module, trains as one program
    at torch's threads."""
    from training import trainer

    _, fam, batch = _setup("transformer")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert training_threads(fam, 5, "cpu") == 2 and training_threads(fam, 1, "cpu") == 1
        assert training_threads(fam, 5, "cuda") == 0
        # a small step trains as one program (threads only slowed the quick configs' shards)
        assert 0 < 5 * fam.step_flops(batch) < trainer.THREADS_MIN_FLOPS and training_threads(fam, 5, "cpu", batch) == 0
        big = get_family("transformer", fam.input_shape, fam.n_out, {"vocab": 7, "d_model": 64, "n_heads": 4, "d_mlp": 256})
        assert training_threads(big, 32, "cpu", 256) == 2  # modadd's full config
        monkeypatch.setattr(trainer, "THREADS_MIN_FLOPS", 0.0)
        seen = []
        task, fam, batch = _setup("transformer")
        cfg = TrainConfig(steps=3, batch_size=batch, lr=0.01, checkpoints=[])
        train_population(fam, task, cfg, fam.init([1, 2, 3]), [1, 2, 3], torch.zeros(3, dtype=torch.long), checkpoint_steps=[],
                         on_step=lambda step, m: seen.append((step, m, torch.get_num_threads())))
        assert sorted(seen) == [(s, m, 1) for s in range(3) for m in (1, 2)]  # shares of 1 and 2, one intra-op thread each
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    from training.families import ModuleFamily

    assert not ModuleFamily.trains_in_threads and training_threads(ModuleFamily(factory=lambda: torch.nn.Linear(2, 2)), 5, "cpu") == 0


def test_the_first_error_is_raised_and_stops_the_other_threads():
    """A failure in one share's thread (here its progress callback, at step 2) is the error raised;
    the other share stops at its next step instead of training to the end."""
    seen: dict[int, int] = {}

    def on_step(step: int, m: int) -> None:
        seen[m] = step
        if m == 3 and step == 2:
            raise ValueError("share of 3 failed")

    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="share of 3 failed"):
        _train("mlp", 2, steps=2000, on_step=on_step)
    assert seen.get(2, -1) < 1999, "the other share trained to the end"
    assert torch.get_num_threads() == before


def test_an_interrupt_stops_every_thread_and_restores_torch_threads():
    """Ctrl-C (SIGINT to the process) while shares train: KeyboardInterrupt in the caller within a
    moment, no share trains on, and torch's thread count is restored."""
    code = textwrap.dedent("""
        import os, signal, time, torch
        import training
        signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (a shell's & job)
        from training.config import TrainConfig
        from training.families import get_family
        from training.tasks import get_task
        from training.trainer import train_population
        torch.set_num_threads(2)
        task = get_task("xor-cues", {"n_train": 64})
        fam = get_family("mlp", task.input_shape, task.n_out, {"width": 16, "depth": 2})
        last = {}
        def on_step(step, m):
            last[m] = step
            if step == 3 and m == 2:  # once: the share of 2 models (the other has 3)
                os.kill(os.getpid(), signal.SIGINT)
        seeds = [1, 2, 3, 4, 5]
        try:
            train_population(fam, task, TrainConfig(steps=100000, batch_size=8, lr=0.01, checkpoints=[]), fam.init(seeds),
                             seeds, torch.zeros(5, dtype=torch.long), checkpoint_steps=[], on_step=on_step, threads=2)
            print("finished")
        except KeyboardInterrupt:
            seen = dict(last)
            time.sleep(0.5)
            print("interrupted", max(seen.values()), seen == last, torch.get_num_threads())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    words = out.stdout.split()
    assert words and words[0] == "interrupted", out.stdout + out.stderr
    assert int(words[1]) < 5000 and words[2] == "True" and words[3] == "2", out.stdout


def test_a_penalty_is_called_from_one_thread_and_kernels_load_once():
    """Found by review: goodhart's penalty replays a fingerprint through one shared object, so two shares
    calling it at once computed each other's penalties (8 of 8 models wrong); a population with a
    penalty trains as one program. And the MLP kernels, first loaded by two shares at once, gave one of
    them the torch path for a step (5 of 9 fresh processes): loading is locked and published once."""
    import threading

    from training.families import kernels
    from training.trainer import Penalty

    task, fam, batch = _setup("mlp")
    callers = set()

    def fn(out):
        callers.add(threading.get_ident())
        return out.pow(2).mean((1, 2))

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = TrainConfig(steps=3, batch_size=batch, lr=0.01, checkpoints=[])
        seeds = [1, 2, 3, 4]
        penalty = Penalty(torch.randn(5, *task.input_shape), fn, torch.ones(4))
        train_population(fam, task, cfg, fam.init(seeds), seeds, torch.zeros(4, dtype=torch.long), checkpoint_steps=[],
                         penalty=penalty, threads=2)  # asked for threads: a penalty still trains as one program
        assert callers == {threading.get_ident()}
        saved = kernels._state.pop("ops", None)
        start, got = threading.Barrier(4), []

        def load():
            start.wait()
            got.append(kernels.ops())

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(got) == 4 and all(g is got[0] for g in got)  # all the kernels, or all None where they cannot build
        kernels._state["ops"] = saved if saved is not None else got[0]
    finally:
        torch.set_num_threads(before)


def test_concurrent_calls_restore_torch_threads():
    """Two train_population calls at once in two threads (found by review: each saved and restored the
    process-wide setting, and one left the process at 1 intra-op thread)."""
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = []
        calls = [threading.Thread(target=lambda: out.append(_train("transformer", 2, steps=30))) for _ in range(2)]
        for c in calls:
            c.start()
        for c in calls:
            c.join()
        assert len(out) == 2 and torch.get_num_threads() == 2
        assert_bitwise_equal(out[0].checkpoints, out[1].checkpoints)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_training_threads_share_the_main_arena():
    """``retain_freed_memory`` (called when training starts on the CPU) gives every thread glibc's main
    arena, whose freed blocks it keeps: a thread's own arena gave its heap back and faulted it in
    again every step. glibc's ``malloc_stats`` lists one arena after threads allocated, several without."""
    script = textwrap.dedent("""
        import ctypes, sys, threading
        import torch
        if sys.argv[1] == "retain":
            from training.core.numerics import retain_freed_memory
            assert retain_freed_memory()
        def work():
            for _ in range(20):
                torch.randn(512, 512).sum()
        threads = [threading.Thread(target=work) for _ in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        ctypes.CDLL(None).malloc_stats()
    """)

    # glibc's own defaults, whatever this environment sets (a container's MALLOC_ARENA_MAX=1, a
    # preloaded allocator: found by review)
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD")}

    def arenas(arg: str) -> int:
        res = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, check=True, env=env)
        return sum(line.startswith("Arena ") for line in res.stderr.splitlines())

    assert arenas("retain") == 1
    assert arenas("default") > 1
