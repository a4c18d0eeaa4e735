"""The checks extraction runs on a plugin's values beyond their shape: determinism and row independence.

After a plugin extractor has computed its fingerprint, :func:`plugin_warnings` runs it twice more on
the zoo's first :data:`DETERMINISM_MODELS` models and, when the two runs agree and the plugin is
declared streaming, once more on a subset of them (:func:`subset_rows`). A plugin whose two runs differ
(:func:`determinism_warning`), or whose rows change with the other models in the call
(:func:`row_independence_warning`: a z-score across models, a similarity matrix returned as
features, a row that reads its position), gets a one-line warning that extraction keeps in the
entry's ``meta["warnings"]``. The checks are advice: a plugin that cannot run on so few models is not
checked, and nothing here fails an extraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fingerprint.batch import ModelBatch
from fingerprint.extractor_spec import ExtractorSpec, hidden_order
from training.core.store import Zoo

DETERMINISM_MODELS = 3  # models a plugin is run on twice more (cheap; one model cannot show a shuffled row)
DETERMINISM_RTOL, DETERMINISM_ATOL = 1e-4, 1e-6  # atol relative to the largest |value|; measured: docs/extractors.md


def plugin_warnings(zoo: Zoo, spec: ExtractorSpec, params: dict[str, Any], ids: Sequence[str], step: int | None,
                    device: str, labels: Sequence[Any] | None = None, groups: Any = None) -> list[str]:
    """The warnings to keep with a plugin's fingerprint: not deterministic (two runs on the first
    models differ), else, for a streaming feature plugin, rows that depend on the other models in the
    call; ``[]`` when it passes (or cannot run on so few models)."""
    runs = _first_runs(zoo, spec, params, ids, step, device, labels, groups)
    if runs is None:
        return []
    mb, a, b = runs
    found = _nondeterminism(spec.name, a, b)
    if found is None and row_checked(spec):
        found = _row_dependence(spec, params, mb, a)
    return [found] if found else []


def determinism_warning(zoo: Zoo, spec: ExtractorSpec, params: dict[str, Any], ids: Sequence[str], step: int | None,
                        device: str, labels: Sequence[Any] | None = None, groups: Any = None) -> str | None:
    """One line when a plugin gives different values on two runs over the same few models (its first
    :data:`DETERMINISM_MODELS`), else ``None``. Extractors must be deterministic: a fingerprint that
    is partly a fresh random draw clusters noise, and its cache entry cannot be reproduced. A plugin
    that cannot run on so few models (population-level statistics, a probe trained on labels) is not
    checked: whatever it raises here is ignored."""
    runs = _first_runs(zoo, spec, params, ids, step, device, labels, groups)
    return None if runs is None else _nondeterminism(spec.name, runs[1], runs[2])


def row_checked(spec: ExtractorSpec) -> bool:
    """Whether extraction checks ``spec``'s rows for independence: an unsupervised feature plugin
    declared streaming (computed in chunks of models). ``streaming=False``, supervised and distance
    extractors get the whole population in one call: their rows may depend on it."""
    return spec.streaming and not spec.supervised and spec.output == "features" and spec.source != "builtin"


def row_independence_warning(zoo: Zoo, spec: ExtractorSpec, params: dict[str, Any], ids: Sequence[str],
                             step: int | None, device: str) -> str | None:
    """One line when a streaming plugin's rows depend on the other models in the call: run on
    :func:`subset_rows` of the first :data:`DETERMINISM_MODELS` models, a model's row differs from
    its row in the run on all of them; else ``None``. Not checked (``None``):
    a plugin :func:`row_checked` leaves out, one that is not deterministic (that is
    :func:`determinism_warning`'s to say), or one that cannot run on so few models."""
    if not row_checked(spec):
        return None
    runs = _first_runs(zoo, spec, params, ids, step, device, None, None)
    if runs is None or _nondeterminism(spec.name, runs[1], runs[2]) is not None:
        return None
    return _row_dependence(spec, params, runs[0], runs[1])


def subset_rows(ids: Sequence[str]) -> list[int]:
    """The rows (of ``ids``, the first models) the row-independence run takes: every one but the
    row the plugin saw first in the run on all of them (its hidden order,
    :func:`fingerprint.extractor_spec.hidden_order`), last seen first. So whatever its own hidden
    order, the subset lacks the model a plugin aligned to its first row would align to, and the
    model it saw last can no longer be in that position: a plugin that reads the row order is always
    caught, not by luck of the order. Of 3 models 2; of 2 the one seen second; of 1 none."""
    return [int(i) for i in hidden_order(list(ids))[1:][::-1]]


def _first_runs(zoo: Zoo, spec: ExtractorSpec, params: dict[str, Any], ids: Sequence[str], step: int | None, device: str,
                labels: Sequence[Any] | None, groups: Any) -> tuple[ModelBatch, np.ndarray, np.ndarray] | None:
    """The batch of the first models and two runs of ``spec`` on it (``[k, d]`` each), or ``None``
    when there is no model or the plugin raises on so few."""
    k = min(DETERMINISM_MODELS, len(ids))
    if k < 1:
        return None
    lab = None if labels is None else list(labels[:k])
    grp = None if groups is None else groups[:k]
    try:
        mb = ModelBatch.from_zoo(zoo, list(ids[:k]), step, device)
        a, _ = spec.compute(mb, params, lab, grp)
        b, _ = spec.compute(mb, params, lab, grp)
    except Exception:  # noqa: BLE001 - the check is advice: it never fails an extraction that succeeded
        return None
    return mb, a, b


def _apart(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """``(largest |a - b|, largest |value|)`` when ``a`` and ``b`` differ beyond the tolerance
    (:data:`DETERMINISM_RTOL`, :data:`DETERMINISM_ATOL` of the largest |value|), else ``None``;
    shapes that differ are ``(inf, 1)``."""
    if a.shape != b.shape:
        return float("inf"), 1.0
    if not a.size:
        return None
    scale = float(max(np.abs(a).max(), np.abs(b).max()))
    if np.allclose(a, b, rtol=DETERMINISM_RTOL, atol=DETERMINISM_ATOL * max(scale, 1e-30)):
        return None
    return float(np.abs(a.astype(np.float64) - b).max()), scale


def _nondeterminism(name: str, a: np.ndarray, b: np.ndarray) -> str | None:
    apart = _apart(a, b)
    if apart is None:
        return None
    k = len(a)
    what = f"shapes {list(a.shape)} and {list(b.shape)}" if apart[0] == float("inf") else _values_apart(*apart)
    return (f"extractor '{name}' is not deterministic: two runs on the same {k} model{'s' if k > 1 else ''} gave "
            f"{what}, so its basins are partly noise. An unseeded random draw? take a seed parameter and use "
            "torch.Generator().manual_seed(seed)")


def _row_dependence(spec: ExtractorSpec, params: dict[str, Any], mb: ModelBatch, a: np.ndarray) -> str | None:
    """The row-independence line for a deterministic plugin whose run on all of ``mb`` gave ``a``."""
    k = len(mb)
    rows = subset_rows(mb.model_ids)
    if not rows:
        return None
    try:
        c, _ = spec.compute(mb.subset(rows), params)
    except Exception:  # noqa: BLE001 - advice, as above: a plugin that needs more models is not checked
        return None
    apart = _apart(a[rows], c)
    if apart is None:
        return None
    what = (f"shape {list(c.shape)} (on all {k}: {list(a.shape)})" if apart[0] == float("inf") else
            _values_apart(*apart) + " from their rows on all of them")
    return (f"extractor '{spec.name}' gives rows that depend on the other models in the call: run on {len(rows)} of the "
            f"same {k} models, it gave {what}. Extraction "
            "runs in chunks of models, so its values depend on the chunking: compute each row from its own model only, "
            "or declare streaming=False to get the whole population in one call")


def _values_apart(diff: float, scale: float) -> str:
    return f"values up to {diff:.3g} apart (largest |value| {scale:.3g})"
