"""Executors: run the shards of a planned zoo here, in worker processes, or as Ray tasks.

Every executor runs :func:`training.shard.train_shard` on each shard it is given and reports
``on_done(shard)`` after each and ``on_steps(n)`` for model-steps of progress. Shards are a pure
function of ``ZOO/manifest.json`` and their name, and each is written atomically as
``ZOO/shards/<shard>.h5``, so resume works the same way whatever ran them.

- ``local``: one after another in this process.
- ``process``: ``python -m training.worker`` subprocesses, ``workers`` at a time.
- ``ray``: each shard a Ray task writing its own file into the shared zoo directory; the driver only
  submits shards, tracks their completion and reports progress. A task that fails or whose worker
  is killed is retried (bounded), also when its node is lost; a shard that keeps failing ends the
  sweep with its name, and every finished shard is kept. Without an address, a fresh local Ray
  instance sized to this machine is started, whatever ``RAY_ADDRESS`` or a session record left by
  an earlier cluster says. With one, the address is checked first: Ray itself retries a dead
  cluster for minutes. Ray is an optional extra, imported only where it is used.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from training.config import SweepConfig
from training.core import store as zoo_io
from training.core.errors import DiskFullError, UserError, choices
from training.plan import ShardPlan, shard_steps
from training.shard import train_shard


class Executor(Protocol):
    """Runs shards of a planned zoo. ``on_done(shard)`` after each; ``on_steps(n)`` for model-steps progress."""

    name: str

    def run(self, zoo_dir: Path, shards: Sequence[ShardPlan], device: str,
            on_done: Callable[[ShardPlan], None], on_steps: Callable[[int], None]) -> None: ...


class LocalExecutor:
    """Train shards one after another in this process."""

    name = "local"

    def run(self, zoo_dir, shards, device, on_done, on_steps):
        for sp in shards:
            train_shard(zoo_dir, sp.name, device, on_step=lambda _step, n: on_steps(n))
            on_done(sp)


DISK_FULL_EXIT = 28  # a worker's exit status when its disk is full (ENOSPC's number)


def core_budget() -> int:
    """The cores the process executor's workers share: the user's ``OMP_NUM_THREADS`` when set (the README's advice for
    two jobs on one machine: outside audit 120 found the workers took every core regardless), else every core."""
    try:
        given = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        given = 0
    return given if given > 0 else os.cpu_count() or 1


class ProcessExecutor:
    """Train shards in worker subprocesses (``python -m training.worker``), ``workers`` at a time.

    Workers get only the zoo path and shard name on their command line (nothing is pickled) and
    split the machine's cores between them.
    """

    name = "process"

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, min(core_budget(), 4))

    def run(self, zoo_dir, shards, device, on_done, on_steps):
        if not shards:
            return
        config = _manifest_config(zoo_dir)
        threads = max(1, core_budget() // self.workers)
        pending = list(shards)
        running: dict[subprocess.Popen, ShardPlan] = {}
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    sp = pending.pop(0)
                    cmd = [sys.executable, "-m", "training.worker", str(zoo_dir), sp.name, "--device", device, "--threads", str(threads),
                           "--parent", str(os.getpid())]  # the worker exits if this process dies
                    running[subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)] = sp
                time.sleep(0.05)
                for proc in [p for p in running if p.poll() is not None]:
                    sp = running.pop(proc)
                    err = proc.stderr.read() if proc.stderr else ""
                    if proc.returncode != 0:
                        last = (err.strip().splitlines() or ["(no output)"])[-1]
                        if proc.returncode == DISK_FULL_EXIT:  # the sweep says what to do about it
                            raise DiskFullError(last.removeprefix("error: "))
                        raise UserError(f"shard '{sp.name}' failed in a worker process (exit {proc.returncode}): {last}")
                    on_steps(sp.n_models * shard_steps(config, sp))
                    on_done(sp)
        finally:
            for proc in running:
                proc.kill()


def _manifest_config(zoo_dir: Path) -> SweepConfig:
    return SweepConfig.from_dict(zoo_io.read_manifest(Path(zoo_dir))["config"])


# -- Ray -------------------------------------------------------------------------------------------
def _train_shard_task(zoo_dir: str, shard: str, device: str, threads: int) -> str:
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

    def start(self) -> None:
        """Connect to Ray (or start a local instance) unless already connected; a one-line
        :class:`UserError` when that fails. :meth:`run` calls it; so may a caller that submits its own tasks."""
        import ray  # deferred: the optional extra, and seconds of start-up

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
        import ray  # deferred: the optional extra, and seconds of start-up

        if not shards:
            return
        self.start()
        config = _manifest_config(zoo_dir)
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
    from ray.exceptions import RayError  # deferred: the optional extra

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
    from ray._common.utils import get_ray_address_file  # deferred: the optional extra
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
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as e:
        why = (e.strerror or type(e).__name__).lower()
        if "session record" in source:
            why += "; the record was probably left by a cluster that has stopped"
        raise UserError(f"cannot reach Ray at {tried}: {why}; start the cluster ('ray start --head') "
                        f"or pass the address of a running one") from None
    tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true")  # TLS first: the preface is not read
    with conn:
        if not tls and not speaks_grpc(conn, timeout):  # outside audit 120: a web server's port hung ray.init
            raise UserError(f"cannot reach Ray at {tried}: something answers there, but not Ray (no gRPC server: a "
                            "cluster's address is its head's GCS port, 6379 by default, or ray://HOST:10001)")
    return target


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def speaks_grpc(conn: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server on ``conn`` answers HTTP/2's connection preface with a frame of its own, as a gRPC server
    (Ray's GCS, or its client server) does: a SETTINGS frame (type 4) first. An HTTP/1 server answers otherwise or
    closes the connection."""
    try:
        conn.settimeout(timeout)
        conn.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            part = conn.recv(9 - len(head))
            if not part:
                return False
            head += part
    except OSError:
        return False
    return head[3] == 0x04


# -- by name ---------------------------------------------------------------------------------------
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "process": ProcessExecutor, "ray": RayExecutor}


def get_executor(name: str, **kwargs: Any) -> Executor:
    """The executor called ``name`` (``local``, ``process`` or ``ray``), built with ``kwargs``."""
    if name == "ray":
        try:
            import ray  # noqa: F401 - the optional extra: checked here, imported where used (start-up time)
        except ImportError as e:
            raise UserError(f"executor 'ray' needs the ray extra: pip install 'basin-fingerprint[ray]' ({e})") from None
        return RayExecutor(**kwargs)
    if name not in EXECUTORS:
        raise UserError(f"unknown executor '{name}' (valid: {choices(EXECUTORS)})")
    return EXECUTORS[name](**kwargs)
