"""Ray executor: each shard is a Ray task writing its own file into the shared zoo directory.

The driver only submits shards, tracks their completion, and reports progress; workers read the
plan from ``ZOO/manifest.json`` and write ``ZOO/shards/<shard>.h5`` atomically, exactly as the local
executor does, so resume works the same way. A task that fails or whose worker is killed is
retried (bounded), also when its node is lost; a shard that keeps failing ends the sweep with its
name, and every finished shard is kept. Without an address, a fresh local Ray instance sized to this
machine is started, whatever ``RAY_ADDRESS`` or a session record left by an earlier cluster says.
With one, the address is checked first: Ray itself retries a dead cluster for minutes.
"""

from __future__ import annotations

import os
import socket
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

    def check(self) -> None:
        """Fail fast when ``address`` points at nothing (before a sweep writes its zoo)."""
        if self.address:
            check_reachable(self.address)

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if not self.address:
            # "local", not None: with None Ray joins whatever RAY_ADDRESS or its session record
            # (TEMP/ray/ray_current_cluster) names, and a killed cluster leaves that record behind.
            try:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
            except (ConnectionError, RuntimeError, ValueError, OSError) as e:
                raise UserError(f"cannot start a local Ray instance: {_one_line(e)}") from None
            return
        self.check()
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot reach Ray at {self.address}: {_one_line(e)}") from None

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


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def _resolve(address: str) -> tuple[str, str]:
    """``(HOST:PORT, where it came from)`` for a user's ``--address``; ``auto`` is resolved as Ray does it."""
    if address.startswith("ray://"):
        return address[len("ray://"):].split("/")[0], ""
    if address != "auto":
        return address, ""
    from ray._private.services import get_ray_address_from_environment  # Ray's own order of lookups

    if os.environ.get("RAY_ADDRESS"):
        source = "from RAY_ADDRESS"
    else:
        from ray._common.utils import get_ray_address_file

        source = f"from Ray's session record {get_ray_address_file(None)}"
    try:
        return get_ray_address_from_environment("auto", None), source
    except ConnectionError:
        raise UserError("cannot reach Ray at auto: no running Ray cluster found (no RAY_ADDRESS, no session "
                        "record); start one with 'ray start --head' or pass --address HOST:PORT") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the address tried, when nothing answers where ``address`` points."""
    try:
        target, source = _resolve(address)
    except (ImportError, AttributeError):  # another Ray layout: leave the check to ray.init
        return
    host, _, port = target.rpartition(":")
    tried = target if address == target else f"{address} ({target}{', ' + source if source else ''})"
    if not host or not port.isdigit():
        raise UserError(f"cannot reach Ray at {tried}: not a HOST:PORT address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = (e.strerror or type(e).__name__).lower()
        if "session record" in source:
            why += "; the record was probably left by a cluster that has stopped"
        raise UserError(f"cannot reach Ray at {tried}: {why}; start the cluster ('ray start --head') "
                        f"or pass the address of a running one") from None
