"""Each imported model run once over a few probe inputs, and measured against its population.

A run that blew up can hold finite weights (every tensor x1e15) that pass the checkpoint checks and
then overflow in every output fingerprint. The import runs the first :data:`PROBE_ROWS` inputs of
each probe set through every model (:func:`run_probes`): a model whose outputs are NaN/inf is
refused by name (``--skip-bad`` leaves it out), and a model whose largest weight or output is an
extreme outlier against the population (:func:`outliers`: robust, in log10 and MADs) is named in a
warning, since a real population can hold a legitimate one. docs/import.md, "Diverged models".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.families.module import call_with

PROBE_ROWS = 64  # inputs of each probe set run through every model at import
# A model is an extreme outlier when log10 of its largest |weight| (or |output|) exceeds the
# population's median by more than OUTLIER_DECADES (x10 per decade) AND by more than OUTLIER_MADS
# robust standard deviations (1.4826 MAD) of the others. Measured on 100+ healthy zoos
# (scripts/outlier_false_alarms.py, docs/benchmarks.md "Diverged-model check"): never fires there.
OUTLIER_DECADES = 1.0
OUTLIER_MADS = 10.0
MIN_MODELS = 5  # below this, a median says little about "the population"


@dataclass(frozen=True)
class Health:
    """Per-model magnitudes ``[n]``: the largest |weight| (float tensors) and the largest finite
    |output| over the inputs run (NaN where none ran, or where the outputs are not finite), and
    ``nonfinite``: model index -> why its outputs cannot be used (``outputs on probe set 'x' are
    inf/NaN``, or the forward pass's exception)."""

    weight_max: np.ndarray
    output_max: np.ndarray
    nonfinite: dict[int, str]


def joined(parts: Sequence[Health]) -> Health:
    """One :class:`Health` of the models of ``parts``, in their order (each run on some models)."""
    nonfinite, start = {}, 0
    for h in parts:
        nonfinite.update({start + i: why for i, why in h.nonfinite.items()})
        start += len(h.weight_max)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return Health(cat([h.weight_max for h in parts]), cat([h.output_max for h in parts]), nonfinite)


def _max_abs(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def run_probes(template: nn.Module, state_dicts: Sequence[dict[str, torch.Tensor]], inputs: dict[str, torch.Tensor],
               rows: int = PROBE_ROWS) -> Health:
    """Run the first ``rows`` inputs of each set in ``inputs`` through every model (``template``
    with each state dict, cast to the template's dtypes as the zoo will hold them)."""
    expected = template.state_dict()
    template = template.eval()
    n = len(state_dicts)
    wmax = np.zeros(n)
    omax = np.full(n, np.nan)
    nonfinite: dict[int, str] = {}
    for i, sd in enumerate(state_dicts):
        floats = [v for v in sd.values() if v.is_floating_point()]
        wmax[i] = max((_max_abs(v.float()) for v in floats), default=0.0)
        if not inputs:
            continue
        params = {k: v.to(expected[k].dtype) if k in expected else v for k, v in sd.items()}
        top = 0.0
        for name, x in inputs.items():
            try:
                with torch.no_grad():
                    out = call_with(template, params, (x[:rows],))
            except Exception as e:  # noqa: BLE001 - the template ran these inputs: this model's weights broke it
                nonfinite[i] = f"its forward pass on probe set '{name}' raised {type(e).__name__}: {str(e).strip()[:120]}"
                break
            if not isinstance(out, torch.Tensor):  # the template's forward was checked: not for this model to differ
                continue
            out = out.detach().float()
            if not bool(torch.isfinite(out).all()):
                nonfinite[i] = f"outputs on probe set '{name}' are inf/NaN"
                break
            top = max(top, _max_abs(out))
        else:
            omax[i] = top
    return Health(wmax, omax, nonfinite)


def _log(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.log10(np.where(np.isfinite(v), np.maximum(np.abs(v), 1e-30), np.nan))


def excess(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(decades, mads)`` ``[n]``: how far log10 of each value lies above the population's median,
    in decades and in robust standard deviations (1.4826 MAD, floored at 0.01 decades so that a
    population of near-identical models does not make every small difference infinite). NaN where
    the value is missing or there are fewer than :data:`MIN_MODELS` values."""
    x = _log(values)
    ok = np.isfinite(x)
    if ok.sum() < MIN_MODELS:
        return np.full(len(x), np.nan), np.full(len(x), np.nan)
    med = float(np.median(x[ok]))
    mad = max(1.4826 * float(np.median(np.abs(x[ok] - med))), 0.01)
    return x - med, (x - med) / mad


def outliers(values: np.ndarray) -> np.ndarray:
    """Models ``[n]`` (bool) whose value (a largest |weight| or |output|) is an extreme outlier
    above the population: more than :data:`OUTLIER_DECADES` decades and :data:`OUTLIER_MADS` robust
    standard deviations above the median (the rule measured never to fire on healthy zoos)."""
    dec, mads = excess(values)
    return (np.nan_to_num(dec) > OUTLIER_DECADES) & (np.nan_to_num(mads) > OUTLIER_MADS)


def times_median(values: np.ndarray, i: int) -> str:
    """``1e13x`` / ``40x``: model ``i``'s value against the population's median."""
    dec, _ = excess(values)
    if not np.isfinite(dec[i]):
        return ""
    return f"1e{round(dec[i])}x" if dec[i] >= 2 else f"{10 ** dec[i]:.0f}x"


def _magnitude(what: str, values: np.ndarray, i: int) -> str:
    rel = times_median(values, i)
    return f"{what} up to {values[i]:.1e}" + (f", {rel} the population's median" if rel else "")


def refusal(model_id: str, health: Health, i: int) -> str:
    """The one line for a model whose outputs cannot be used."""
    return (f"model '{model_id}': {health.nonfinite[i]} ({_magnitude('weights', health.weight_max, i)}): a diverged run? "
            "remove it (and its CSV row)")


def outlier_note(model_ids: Sequence[str], health: Health) -> str:
    """One line naming the models (among those with usable outputs) whose largest weight or output
    is an extreme outlier against the population, else ``""``: a warning, not a refusal."""
    keep = [i for i in range(len(model_ids)) if i not in health.nonfinite]
    w = health.weight_max[keep]
    o = health.output_max[keep]
    by_w, by_o = outliers(w), outliers(o)
    if not (by_w | by_o).any():
        return ""
    parts = []
    for j in np.flatnonzero(by_w | by_o):
        what = [_magnitude("weights", w, j)] if by_w[j] else []
        what += [_magnitude("outputs", o, j)] if by_o[j] else []
        parts.append(f"'{model_ids[keep[j]]}' ({'; '.join(what)})")
    shown = ", ".join(parts[:3]) + (f", and {len(parts) - 3} more" if len(parts) > 3 else "")
    one = len(parts) == 1
    return (f"{'model' if one else f'{len(parts)} models'} {shown} {'is an extreme outlier' if one else 'are extreme outliers'} "
            f"against the population: {'a diverged run' if one else 'diverged runs'}? Imported all the same (a population "
            f"can hold a real outlier); check {'it' if one else 'them'}, and remove any run that blew up")
