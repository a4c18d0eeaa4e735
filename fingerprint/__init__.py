"""basin-fingerprint: fingerprint seed-varied model populations and test what the fingerprints track.

The public API (imported lazily, so ``import fingerprint`` is cheap)::

    import fingerprint
    zoo = fingerprint.Zoo.open("zoo/")           # a trained population
    zoo.params()                                 # {name: [n_models, ...]} stacked weights
"""

from __future__ import annotations

from typing import Any

from training.core.numerics import (
    request_passive_threads as _request_passive_threads,
)
from training.core.numerics import (
    request_reproducible_blas as _request_reproducible_blas,
)

_request_reproducible_blas()  # before torch's first matrix product: see training.core.numerics
_request_passive_threads()  # before torch's OpenMP runtime starts: see training.core.numerics

__version__ = "0.1.0"

_LAZY = {
    "Zoo": ("fingerprint.zoo", "Zoo"),
    "UserError": ("training.core.errors", "UserError"),
    "load_config": ("training.config", "load_config"),
    "run_sweep": ("training.sweep", "run_sweep"),
    "get_task": ("training.tasks", "get_task"),
    "register_task": ("training.tasks", "register_task"),
    "Task": ("training.tasks", "Task"),
    "get_family": ("training.families", "get_family"),
    # filled in by the extractor and analysis layers
    "extractor": ("fingerprint.registry", "extractor"),
    "ModelBatch": ("fingerprint.batch", "ModelBatch"),
    "extract": ("fingerprint.extraction", "extract"),
    # the pipeline (README, "Run it from a notebook")
    "pipeline": ("fingerprint.pipeline", None),
    "run": ("fingerprint.pipeline", "run"),
    "RunConfig": ("fingerprint.pipeline", "RunConfig"),
    "sweep": ("fingerprint.pipeline", "sweep"),
    "fingerprints": ("fingerprint.pipeline", "fingerprints"),
    "cluster": ("fingerprint.pipeline", "cluster"),
    "scorecard": ("fingerprint.pipeline", "scorecard"),
    "report": ("fingerprint.pipeline", "report"),
    "AnalysisOptions": ("analysis.options", "AnalysisOptions"),
    "AnalysisResult": ("analysis.results", "AnalysisResult"),
    "BasinClusterer": ("analysis.clustering", "BasinClusterer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        module = importlib.import_module(mod)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'fingerprint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
