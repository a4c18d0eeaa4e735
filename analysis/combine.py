"""Several fingerprints of the same models analysed as one (``--combine A+B``, the ``[analysis] combine`` key):
:func:`combined_input` concatenates their coordinates, each block scaled alike (:func:`analysis.reduce.combine`)."""

from __future__ import annotations

import numpy as np

from analysis import clustering as cl
from analysis.errors import choices
from analysis.options import AnalysisOptions, FingerprintInput

__all__ = ["combined_input"]


def combined_input(group: list[str], by_name: dict[str, FingerprintInput], opts: AnalysisOptions) -> FingerprintInput:
    """Concatenate several fingerprints (per-block scaling) on the models they all cover."""
    name = "+".join(group)
    missing = [g for g in group if g not in by_name]
    if missing:
        return FingerprintInput(name, None, [], {"extractor": "combined", "output": "features"},
                                error=f"cannot combine: no fingerprint '{missing[0]}' (have: {choices(by_name)})")
    parts = [by_name[g] for g in group]
    bad = [p.name for p in parts if p.values is None]
    if bad:
        return FingerprintInput(name, None, [], {"extractor": "combined", "output": "features"},
                                error=f"cannot combine: fingerprint '{bad[0]}' failed")
    others = [set(p.model_ids) for p in parts[1:]]
    shared = [m for m in parts[0].model_ids if all(m in o for o in others)]
    blocks = []
    for p in parts:
        pos = {m: i for i, m in enumerate(p.model_ids)}
        idx = np.asarray([pos[m] for m in shared], int)
        v = np.asarray(p.values)
        d = cl.as_distance(v, p.distances)
        blocks.append((v[np.ix_(idx, idx)] if d else v[idx], d))
    values = cl.combine([b for b, _ in blocks], [d for _, d in blocks], opts.n_components, opts.seed,
                        [bool(p.meta.get("standardize", True)) for p in parts])
    kinds = {p.meta.get("kind") for p in parts}
    meta = {"extractor": "combined", "output": "features", "kind": kinds.pop() if len(kinds) == 1 else "mixed",
            "parts": [p.meta.get("key") for p in parts], "supervised": any(p.meta.get("supervised") for p in parts),
            "step": parts[0].meta.get("step"), "standardize": False}
    privileged = sorted({str(s) for p in parts for s in (p.meta.get("privileged") or [])})
    if privileged:
        meta["privileged"] = privileged
    return FingerprintInput(name, values, shared, meta)
