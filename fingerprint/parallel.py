"""Where chunks of an extraction run: in this process, or as Ray tasks on a cluster.

Feature extractors whose rows depend only on their own model are computed chunk by chunk (a chunk
is ``chunk_size`` models). Locally, ``extract`` loops over them in this process, one chunk of
weights in memory at a time. :class:`RayChunks` submits every chunk
as a Ray task (declared ``num_cpus``, ``num_gpus`` for CUDA). Each task opens the zoo from its
path, which every node must share, and returns only the chunk's fingerprint rows ``[chunk, d]``.
The driver never holds the weights. Failed tasks are retried (bounded). A chunk that keeps failing
is named in a one-line error, and nothing is cached.

Workers look extractors up by spec: built-ins, entry-point plugins and ``module:function`` names
resolve anywhere the package is installed, and a function registered with ``@extractor`` in an
importable module is found by importing that module. One defined in ``__main__`` (a script or a
notebook) is unknown to workers and runs on the local runner instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fingerprint.batch import PROBE_READS, ModelBatch
from fingerprint.registry import get_extractor, parse_spec
from training.core import errors
from training.core.errors import UserError
from training.core.store import Zoo
from training.executors import RayExecutor, failure_reason

ChunkResult = tuple[np.ndarray, dict[str, Any]]


def worker_module(spec: Any) -> str | None | bool:
    """The module a worker must import to find ``spec`` (None: nothing), or False if workers cannot find it."""
    mod = getattr(spec.fn, "__module__", None) or ""
    if spec.source == "builtin" or mod.startswith("fingerprint.extractors"):
        return None
    if mod in ("__main__", "") or mod.startswith("<"):
        return False
    return mod


def compute_chunk(zoo_dir: str, spec_text: str, ids: Sequence[str], step: int | None, device: str,
                  threads: int = 0, module: str | None = None, code: tuple[bool, Any] = (False, None)) -> ChunkResult:
    """Open the zoo at ``zoo_dir`` and compute one streaming extractor on ``ids``: ``([len(ids), d], extras)``.

    ``module`` is imported first, so extractors registered by decorator in an importable module resolve.
    ``code`` carries the driver's consent to the zoo's code and its own factory, if any:
    ``(zoo.trust_code, zoo.module_factory)``.
    """
    if threads:
        torch.set_num_threads(threads)
    if module:
        importlib.import_module(module)
    name, overrides = parse_spec(spec_text)
    spec = get_extractor(name)
    params = spec.resolve_params(overrides)
    zoo = Zoo.open(zoo_dir, trust_code=code[0])
    if code[1] is not None:
        zoo.module_factory = code[1]
    mb = ModelBatch.from_zoo(zoo, list(ids), step, device)
    values, extras = spec.compute(mb, params)
    out = {k: v for k, v in extras.items() if not isinstance(v, np.ndarray)}
    return np.asarray(values), {**out, PROBE_READS: sorted(mb.task.read)}


@dataclass(frozen=True)
class Refusal:
    """A chunk's :class:`UserError` (a corrupt shard, a layer that is not a tensor), returned by a Ray task as a value
    instead of raised: no retry can mend it, and Ray printed each raised one's traceback in the driver's output
    (outside audit 120: a corrupt shard's chunks were retried twice each, a traceback block per try)."""

    kind: str
    message: str

    def error(self) -> UserError:
        """The refusal as the driver raises it: its own class of ``training.core.errors`` (review 122: a PluginError or
        a DiskFullError came back as a plain UserError), else a UserError."""
        cls = getattr(errors, self.kind, None)
        return (cls if isinstance(cls, type) and issubclass(cls, UserError) else UserError)(self.message)


def chunk_or_refusal(*args: Any) -> ChunkResult | Refusal:
    """:func:`compute_chunk` as a Ray task: its :class:`UserError` comes back as a :class:`Refusal`."""
    try:
        return compute_chunk(*args)
    except UserError as e:
        return Refusal(type(e).__name__, str(e))


class RayChunks:
    """Chunks as Ray tasks; the zoo directory must be on a path every node shares."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int = 1, num_gpus: float = 1.0, max_retries: int = 2):
        self._ray = RayExecutor(address=address, num_cpus=num_cpus, max_retries=max_retries, num_gpus=num_gpus)
        self.num_cpus, self.num_gpus, self.max_retries = num_cpus, num_gpus, max_retries

    def map(self, chunks, zoo_dir, spec_text, step, device, on_chunk, module=None, code=(False, None)) -> list[ChunkResult]:
        import ray  # deferred: an optional extra, and slow to import

        self._ray.start()
        gpus = self.num_gpus if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus, max_retries=self.max_retries,
                          retry_exceptions=True)(chunk_or_refusal)
        refs = [task.remote(zoo_dir, spec_text, list(c), step, device, self.num_cpus, module, code) for c in chunks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[ChunkResult | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                try:
                    results[i] = ray.get(ref)
                    if isinstance(results[i], Refusal):  # the user's to fix (a corrupt shard): said as it is
                        for r in pending:
                            ray.cancel(r)
                        raise results[i].error()
                except UserError:
                    raise
                except Exception as e:  # noqa: BLE001 - reported with the chunk below
                    for r in pending:
                        ray.cancel(r)
                    cause = getattr(e, "cause", None) or e
                    if isinstance(cause, UserError):
                        raise UserError(str(cause)) from None
                    raise UserError(f"chunk {i} (models {chunks[i][0]}..{chunks[i][-1]}) of '{spec_text}' failed after "
                                    f"{self.max_retries} retries: {failure_reason(e)}") from None
                on_chunk(len(chunks[i]))
        return [r for r in results if r is not None]


def get_runner(name: str = "local", address: str | None = None):
    """A chunk runner by name (``local`` or ``ray``); ``address`` only for Ray."""
    if address and name != "ray":
        raise UserError(f"--address is for --executor ray, not '{name}'")
    if name == "local":
        return None  # extract's own loop: one chunk of weights in memory at a time
    if name == "ray":
        try:
            import ray  # noqa: F401 - deferred: an optional extra, and slow to import
        except ImportError:
            raise UserError("--executor ray needs the 'ray' extra: pip install 'basin-fingerprint[ray]'") from None
        return RayChunks(address)
    raise UserError(f"unknown executor '{name}' for extraction (valid: local, ray)")
