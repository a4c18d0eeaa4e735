"""The vectorised trainer: one program trains a whole population.

Each model's loss is computed in one batched forward pass over stacked parameters; the summed loss
gives each model exactly its own gradient. Data order comes from per-model counter-based RNG
(the task's sampler), so a model trained alone or among 255 others ends at the same weights.
A model whose loss goes NaN/inf is marked diverged and frozen; the others keep training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from training.config import TrainConfig
from training.core import numerics
from training.core import seeds as rng
from training.families.base import Family
from training.optim import Optimizer, lr_at
from training.tasks.base import Task


@dataclass(frozen=True)
class Penalty:
    """An extra per-model term of the training objective, read off the models' outputs on fixed inputs.

    ``inputs [P, *input_shape]`` are shared by every model and appended to each model's batch (so a
    family's own backward, hand-written or autograd, carries the term's gradient); ``fn(outputs [n, P,
    n_out]) -> [n]`` must be row-wise (model ``j``'s value from its own row: the population may be
    trained in groups); ``weight [n]`` multiplies each model's value (``0``: the plain objective).
    """

    inputs: torch.Tensor
    fn: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor

    def rows(self, rows: slice) -> "Penalty":
        return Penalty(self.inputs, self.fn, self.weight[rows])


@dataclass
class TrainResult:
    """Checkpoints ``{step: {name: [n, ...]}}`` plus per-model divergence info ``[n]``."""

    checkpoints: dict[int, dict[str, torch.Tensor]]
    diverged: torch.Tensor
    diverged_step: torch.Tensor
    metrics: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    optimizer_states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


GROUP_BYTES = 96 << 20  # on the CPU, models are trained in groups whose training step touches about this much


def group_size(family: Family, n: int, batch_size: int, device: str | torch.device) -> int:
    """Models trained together in one vectorized program. On the CPU a population whose step would
    touch more than :data:`GROUP_BYTES` (parameters, gradients, Adam moments, activations) is trained
    as equal groups one after another: a step whose working set stays in the shared cache runs
    faster, most on a busy host (``docs/benchmarks.md``). Models are independent (batch invariance),
    so grouping changes no model. Families that give no estimate, and GPUs, train all at once."""
    per_model = 4 * family.step_floats(batch_size)
    if per_model <= 0 or torch.device(device).type != "cpu" or n * per_model <= GROUP_BYTES:
        return n
    groups = -(-n * per_model // GROUP_BYTES)
    return -(-n // groups)


def train_population(
    family: Family,
    task: Task,
    cfg: TrainConfig,
    params: dict[str, torch.Tensor],
    data_seeds: list[int],
    variant: torch.Tensor,
    start_step: int = 0,
    end_step: int | None = None,
    checkpoint_steps: list[int] | None = None,
    step_offset: int = 0,
    device: str = "cpu",
    on_step: Callable[[int, int], None] | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    save_optimizer_state: bool = False,
    penalty: Penalty | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train stacked ``params`` ``[n, ...]`` from ``start_step`` to ``end_step``.

    ``checkpoint_steps`` (in this run's own step numbering) are recorded, plus the final step; they
    are stored under ``step + step_offset`` (fine-tunes continue their parent's step count).
    ``on_step(step, m)`` is called after ``m`` models took ``step`` (the population is trained in
    threads and groups: :func:`training_threads`, :func:`group_size`; calls may come from several
    threads, one at a time). ``penalty`` adds its weighted term to each model's loss; with one, the
    population trains as one program (its function may keep state between calls, as goodhart's replay
    of a fingerprint does). ``threads``: how many threads train shares of the models, each at one
    intra-op thread (``None``: :func:`training_threads`; ``0``: one program at torch's own intra-op
    threads).
    """
    _check_reproducible_blas(device)
    if torch.device(device).type == "cpu":
        numerics.retain_freed_memory()
    part = _Part(params, list(data_seeds), variant, optimizer_state, penalty)
    run = _Run(family, task, cfg, start_step, end_step, checkpoint_steps, step_offset, device, on_step, save_optimizer_state)
    n = len(part.data_seeds)
    if penalty is not None:  # its function may keep state between calls (goodhart's replay does): one caller at a time
        k = 0
    else:
        k = training_threads(family, n, device, cfg.batch_size) if threads is None else max(0, min(threads, n))
    return _train_groups(run, part) if k == 0 else _train_in_threads(run, part, k)


THREADS_MIN_FLOPS = 1e9  # a population's step below this many FLOPs (Family.step_flops) trains as one program


def training_threads(family: Family, n: int, device: str | torch.device, batch_size: int | None = None) -> int:
    """Threads a population of ``n`` trains in at once: on the CPU, as many as torch would use for
    one op (``torch.get_num_threads()``, at most ``n``), when the family allows it
    (``Family.trains_in_threads``) and, given ``batch_size``, the population's step is large enough
    (:data:`THREADS_MIN_FLOPS`, ``Family.step_flops``); 0 otherwise (one program at torch's own
    intra-op threads: GPUs, families that keep one shared module, small steps).

    Each thread trains its share of the models at one intra-op thread: a large step's many ops split
    badly over threads (both wait for each other at every op), whole models split well. A small
    step's ops are mostly Python and dispatch, which threads take turns at: the quick configs' shards
    (up to 0.5 GFLOP a step) trained 0.6-0.99x as fast in threads as one program, those of 1 GFLOP and
    more 1.1-1.34x (docs/benchmarks.md, "Training threads"). Every model in threads trains at one
    thread's arithmetic, and models are independent, so a model's bits do not depend on how many
    threads trained it (``tests/training/test_threads.py``)."""
    if torch.device(device).type != "cpu" or not family.trains_in_threads:
        return 0
    if batch_size is not None and n * family.step_flops(batch_size) < THREADS_MIN_FLOPS:
        return 0
    return max(1, min(torch.get_num_threads(), n))


@dataclass(frozen=True)
class _Run:
    """What every thread and group of one :func:`train_population` call shares."""

    family: Family
    task: Task
    cfg: TrainConfig
    start_step: int
    end_step: int | None
    checkpoint_steps: list[int] | None
    step_offset: int
    device: str
    on_step: Callable[[int, int], None] | None
    save_optimizer_state: bool
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Part:
    """The per-model inputs of a share of the population (rows of the model axis)."""

    params: dict[str, torch.Tensor]
    data_seeds: list[int]
    variant: torch.Tensor
    optimizer_state: dict[str, torch.Tensor] | None
    penalty: Penalty | None

    def rows(self, rows: slice) -> "_Part":
        state = self.optimizer_state
        return _Part({k: v[rows] for k, v in self.params.items()}, self.data_seeds[rows], self.variant[rows],
                     {k: v if k == "step" else v[rows] for k, v in state.items()} if state else None,
                     None if self.penalty is None else self.penalty.rows(rows))


def _shares(n: int, k: int) -> list[slice]:
    """``k`` consecutive, nearly equal shares of ``n`` rows."""
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def _train_in_threads(run: _Run, part: _Part, k: int) -> TrainResult:
    """:func:`_train_groups` on ``k`` shares of the models, each in its own thread at one intra-op
    thread (one share: in this thread); the first error (or an interrupt) stops the other threads at
    their next step."""
    lock = threading.Lock()
    if run.on_step is not None:
        outer = run.on_step

        def on_step(step: int, m: int) -> None:
            with lock:
                outer(step, m)

        run = dataclasses.replace(run, on_step=on_step)
    with _one_intra_op_thread():
        if k == 1:
            return _train_groups(run, part)
        with ThreadPoolExecutor(k, thread_name_prefix="train") as pool:
            futures = [pool.submit(_train_groups, dataclasses.replace(run, family=dataclasses.replace(run.family)), part.rows(rows))
                       for rows in _shares(len(part.data_seeds), k)]  # each its own family: buffers it keeps are its own
            try:  # woken often: a signal (Ctrl-C) is handled in this thread between waits
                while not _settled(futures):
                    wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            finally:  # an error or an interrupt: the other threads stop at their next step
                if not all(f.done() and f.exception() is None for f in futures):
                    run.cancel.set()
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
            parts = [f.result() for f in futures]
    return _concat(parts)


_INTRA_OP = threading.Lock()
_intra_op: dict[str, int] = {"depth": 0, "saved": 0}  # callers inside _one_intra_op_thread, and the setting before the first


@contextlib.contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    """torch at one intra-op thread (a process-wide setting) while any caller is inside; the first to
    enter saves the setting and the last to leave restores it, so concurrent ``train_population`` calls
    do not leave each other's setting behind."""
    with _INTRA_OP:
        if _intra_op["depth"] == 0:
            _intra_op["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _intra_op["depth"] += 1
    try:
        yield
    finally:
        with _INTRA_OP:
            _intra_op["depth"] -= 1
            if _intra_op["depth"] == 0:
                torch.set_num_threads(_intra_op["saved"])


def _settled(futures: list[Future]) -> bool:
    """Have all finished, or has one failed?"""
    return all(f.done() for f in futures) or any(f.done() and f.exception() is not None for f in futures)


def _train_groups(run: _Run, part: _Part) -> TrainResult:
    """Train ``part`` in groups of :func:`group_size` models, one after another."""
    n = len(part.data_seeds)
    m = group_size(run.family, n, run.cfg.batch_size, run.device)
    if m >= n:
        return _train(run, part)
    return _concat([_train(run, part.rows(slice(a, min(n, a + m)))) for a in range(0, n, m)])


def _train(run: _Run, part: _Part) -> TrainResult:
    """One vectorized program trains every model of ``part``."""
    family, task, cfg, device = run.family, run.task, run.cfg, run.device
    params, data_seeds, variant, penalty = part.params, part.data_seeds, part.variant, part.penalty
    start_step, end_step, checkpoint_steps, step_offset = run.start_step, run.end_step, run.checkpoint_steps, run.step_offset
    on_step, optimizer_state, save_optimizer_state = run.on_step, part.optimizer_state, run.save_optimizer_state
    n = len(data_seeds)
    end_step = cfg.steps if end_step is None else end_step
    ckpt_set = {s for s in (checkpoint_steps or []) if start_step <= s <= end_step} | {end_step}
    opt = Optimizer({k: v.detach() for k, v in params.items()}, cfg, device)
    p = opt.params
    if optimizer_state:
        opt.load_state(optimizer_state)
    states = rng.seed_lanes(data_seeds, rng.DATA)
    sample = task.sampler(states, cfg.batch_size, variant)
    diverged = torch.zeros(n, dtype=torch.bool, device=device)
    diverged_step = torch.full((n,), -1, dtype=torch.int64)
    ckpts: dict[int, dict[str, torch.Tensor]] = {}
    opt_states: dict[int, dict[str, torch.Tensor]] = {}
    if penalty is not None:
        extra, weight = penalty.inputs.to(device), penalty.weight.to(device)

    def snapshot(step: int) -> None:
        ckpts[step + step_offset] = {k: v.detach().to("cpu", copy=True) for k, v in p.items()}
        if save_optimizer_state:
            opt_states[step + step_offset] = opt.state()

    for step in range(start_step, end_step):
        if run.cancel.is_set():
            raise _Cancelled
        if step in ckpt_set:
            snapshot(step)
        x, y = sample(step)
        x, y = x.to(device), y.to(device)
        if penalty is not None:
            x = torch.cat([x, extra.expand(n, *extra.shape)], 1)

        def objective(out: torch.Tensor) -> torch.Tensor:
            losses = task.loss(out, y) if penalty is None else (
                task.loss(out[:, : y.shape[1]], y) + weight * penalty.fn(out[:, y.shape[1]:]))
            bad = ~torch.isfinite(losses.detach())
            if bad.any():
                new = bad & ~diverged
                diverged_step[new.cpu()] = step
                diverged.logical_or_(bad)
            return torch.where(diverged, torch.zeros_like(losses), losses).sum()

        family.value_and_grad(p, x, objective, opt.grads)
        opt.step(lr_at(cfg, step), ~diverged)
        if on_step is not None:
            on_step(step, n)
    # a model whose weights blew up without a non-finite loss is diverged too
    with torch.no_grad():
        finite = finite_models(p)
        newly = ~finite & ~diverged
        diverged_step[newly.cpu()] = end_step
        diverged |= ~finite
    snapshot(end_step)
    return TrainResult(checkpoints=dict(sorted(ckpts.items())), diverged=diverged.cpu(), diverged_step=diverged_step,
                       optimizer_states=opt_states)


class _Cancelled(Exception):
    """Another thread failed or was interrupted; this one stops (its error is not the one raised)."""


_warned: list[bool] = []


def _check_reproducible_blas(device: str | torch.device) -> None:
    """Warn once per process when MKL's reproducible mode did not take effect (torch ran a matrix
    product before our packages were imported): a model's last bits may then depend on its batch."""
    if _warned or torch.device(device).type != "cpu" or numerics.blas_reproducible() is not False:
        return
    _warned.append(True)
    warnings.warn("MKL's reproducible mode is off in this process (a matrix product ran before basin-fingerprint was "
                  "imported): a model's last bits may depend on the batch it trains in. Import fingerprint or training "
                  f"first, or set MKL_CBWR={numerics.MKL_MODE} in the environment.", RuntimeWarning, stacklevel=3)


def _concat(parts: list[TrainResult]) -> TrainResult:
    """One result from the results of consecutive groups of models (rows in group order)."""
    def rows(dicts: list[dict[int, dict[str, torch.Tensor]]]) -> dict[int, dict[str, torch.Tensor]]:
        return {s: {k: v if k == "step" else torch.cat([d[s][k] for d in dicts]) for k, v in dicts[0][s].items()}
                for s in dicts[0]}

    return TrainResult(checkpoints=rows([p.checkpoints for p in parts]), diverged=torch.cat([p.diverged for p in parts]),
                       diverged_step=torch.cat([p.diverged_step for p in parts]), metrics=rows([p.metrics for p in parts]),
                       optimizer_states=rows([p.optimizer_states for p in parts]))


def finite_models(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per model ``[n]``: are all its entries (every tensor's row ``j``) finite? A NaN or inf makes
    a model's sum non-finite, so one reduction pass clears every model whose sums are finite; only
    the rest (diverged, or sums past float32's range) are checked element by element."""
    sums = torch.stack([v.detach().flatten(1).sum(1) for v in tensors.values()]).sum(0)
    finite = torch.isfinite(sums)
    if not bool(finite.all()):
        check = ~finite
        finite[check] = torch.stack([torch.isfinite(v.detach()[check]).flatten(1).all(1) for v in tensors.values()]).all(0)
    return finite

