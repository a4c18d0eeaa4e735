"""Training: tasks, batched model families, the vectorized trainer, sweeps and executors.

A population is always stacked parameters ``[n_models, ...]``; nothing here loops over models on
a hot path. A model's identity is its seeds: init comes from ``init_seed``, data order from
``data_seed`` (and its parent, for spawned and fine-tuned models), never from batch position.
"""

from training.core.numerics import (
    request_passive_threads as _request_passive_threads,
)
from training.core.numerics import (
    request_reproducible_blas as _request_reproducible_blas,
)

_request_reproducible_blas()  # before torch's first matrix product: see training.core.numerics
_request_passive_threads()  # before torch's OpenMP runtime starts: see training.core.numerics
