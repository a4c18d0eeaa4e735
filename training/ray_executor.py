"""Ray executor: each shard is a Ray task writing its own file into the shared zoo directory.

The driver only submits shards, tracks their completion, and reports progress; workers read the
plan from ``ZOO/manifest.json`` and write ``ZOO/shards/<shard>.h5`` atomically, exactly as the local
executor does, so resume works the same way. A task that fails or whose worker is killed is
retried (bounded); a shard that keeps failing ends the sweep with its name, and every finished
shard is kept. Without an address, a local Ray instance sized to this machine is started.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from fingerprint.errors import UserError


def _train_shard_task(zoo_dir: str, shard: str, device: str, threads: int) -> str:
    import torch

    from training.sweep import train_shard

    torch.set_num_threads(max(1, threads))
    return str(train_shard(Path(zoo_dir), shard, device))


class RayExecutor:
    """Run shards as Ray tasks with ``num_cpus`` (and ``num_gpus`` for CUDA) declared per task."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int = 1, max_retries: int = 2, num_gpus: float = 1.0):
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.num_gpus = num_gpus

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = self.address or "a local instance"
            raise UserError(f"cannot start or reach Ray at {where}: {e}") from None

    def run(self, zoo_dir, shards: Sequence, device: str, on_done: Callable, on_steps: Callable) -> None:
        import ray

        from training.sweep import SweepConfig, read_manifest_config, shard_steps

        if not shards:
            return
        self._init()
        config: SweepConfig = read_manifest_config(Path(zoo_dir))
        gpus = self.num_gpus if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus, max_retries=self.max_retries,
                          retry_exceptions=True)(_train_shard_task)
        zoo_abs = str(Path(zoo_dir).resolve())
        pending = {task.remote(zoo_abs, sp.name, device, self.num_cpus): sp for sp in shards}
        failed: list[tuple[str, str]] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                sp = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as e:  # noqa: BLE001 - reported by shard name below
                    cause = getattr(e, "cause", None) or e
                    msg = str(cause).strip().splitlines()
                    failed.append((sp.name, (msg[-1] if msg else type(cause).__name__)[:300]))
                    continue
                on_steps(sp.n_models * shard_steps(config, sp))
                on_done(sp)
        if failed:
            names = ", ".join(sorted(n for n, _ in failed))
            raise UserError(f"shard(s) {names} failed after {self.max_retries} retries "
                            f"(finished shards are kept; fix and rerun with --resume): {failed[0][1]}")
