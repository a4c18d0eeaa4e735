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
import re
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from training.core.errors import UserError


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

    def check(self) -> str | None:
        """The address to dial; fails fast when ``address`` points at nothing (before a sweep writes its zoo)."""
        return check_reachable(self.address) if self.address else None

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
        target = self.check()
        try:
            ray.init(address=target, **kwargs)
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
                    failed.append((sp.name, failure_reason(e)))
                    continue
                on_steps(sp.n_models * shard_steps(config, sp))
                on_done(sp)
        if failed:
            names = ", ".join(sorted(n for n, _ in failed))
            raise UserError(f"shard(s) {names} failed after {self.max_retries} retries "
                            f"(finished shards are kept; fix and rerun with --resume): {failed[0][1]}")


def failure_reason(e: BaseException) -> str:
    """One line for a Ray task that failed: the exception it raised, or what Ray lost under it."""
    from ray.exceptions import RayError

    cause = getattr(e, "cause", None)
    if cause is not None or not isinstance(e, RayError):  # the task's own exception: its last line
        lines = str(cause or e).strip().splitlines()
        return (lines[-1] if lines else type(cause or e).__name__)[:300]
    # a lost node, worker or object: Ray's message is a paragraph of advice; keep its first sentence
    text = " ".join(str(e).split())
    node = re.search(r"Node IP: ([^,\s]+)", text)
    return (f"{type(e).__name__}: {text.split('. ')[0].rstrip('.')}"
            + (f" (node {node.group(1)})" if node else ""))[:300]


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def resolve_address(address: str) -> tuple[str, str]:
    """``(the address to dial, where it came from)`` for a user's ``--address``.

    ``auto`` is RAY_ADDRESS, else the session record of the last cluster started on this machine. Only
    without either does Ray's own search for any running instance apply: Ray would otherwise pass
    over a stale record to join whichever single instance it finds (another user's, say).
    """
    if address != "auto":
        return address, ""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "from RAY_ADDRESS"
    from ray._common.utils import get_ray_address_file
    from ray._private import services

    recorded = services.find_bootstrap_address(None)
    if recorded:
        return recorded, f"from Ray's session record {get_ray_address_file(None)}"
    try:
        return services.get_ray_address_from_environment("auto", None), "found running on this machine"
    except ConnectionError:
        raise UserError("cannot reach Ray at auto: no running Ray cluster found (no RAY_ADDRESS, no session "
                        "record); start one with 'ray start --head' or pass --address HOST:PORT") from None


def check_reachable(address: str, timeout: float = 5.0) -> str:
    """The address to dial for ``address``; a one-line error naming it when nothing answers there.

    Ray itself retries a dead address for minutes before it gives up.
    """
    try:
        target, source = resolve_address(address)
    except (ImportError, AttributeError):  # another Ray layout: leave "auto" and the check to ray.init
        return address
    host, _, port = target.removeprefix("ray://").split("/")[0].rpartition(":")
    tried = target if address == target else f"{address} ({target}, {source})"
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
    return target
